//! The checkpoint pass: writes consume-queue and index entries for durable records to their
//! files, fdatasyncs them, then writes the checkpoint. Runs in the background (maintenance
//! task) and at shutdown; never on the put path.
//!
//! Order matters: entries are written and synced before a checkpoint names them, and only
//! entries of records below the commitlog's durable offset are persisted, so a checkpoint
//! never points past durable commitlog data.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::checkpoint::{Checkpoint, CheckpointFile};
use crate::config::PAGE_SIZE_BYTES;
use crate::consume_queue::{CqEntry, QueueTable, CQ_ENTRY_SIZE_BYTES, FILE_SIZE_BYTES};
use crate::disk::{create_dir_all_durable, numbered_path, open_durable, Disk, DiskFile};
use crate::error::IoError;
use crate::index::{Index, INDEX_ENTRY_SIZE_BYTES};

type QueueKey = (String, u32);

/// Open handles of CQ and index files, and the checkpoint file.
pub(crate) struct Persister {
    pub(crate) disk: Rc<dyn Disk>,
    pub(crate) cq_dir: PathBuf,
    pub(crate) index_dir: PathBuf,
    cq_files: RefCell<HashMap<(QueueKey, u64), Rc<dyn DiskFile>>>,
    index_files: RefCell<HashMap<u64, Rc<dyn DiskFile>>>,
    checkpoint: RefCell<Option<CheckpointFile>>,
}

struct CqJob {
    key: QueueKey,
    target: u64,
    start_pos: u64,
    bytes: Vec<u8>,
}

impl Persister {
    pub(crate) fn new(
        disk: Rc<dyn Disk>,
        cq_dir: PathBuf,
        index_dir: PathBuf,
        ckpt: CheckpointFile,
    ) -> Self {
        Self {
            disk,
            cq_dir,
            index_dir,
            cq_files: RefCell::new(HashMap::new()),
            index_files: RefCell::new(HashMap::new()),
            checkpoint: RefCell::new(Some(ckpt)),
        }
    }

    pub(crate) fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
            .borrow()
            .as_ref()
            .and_then(CheckpointFile::last)
    }

    async fn cq_file(&self, key: &QueueKey, file_index: u64) -> Result<Rc<dyn DiskFile>, IoError> {
        let k = (key.clone(), file_index);
        if let Some(f) = self.cq_files.borrow().get(&k) {
            return Ok(f.clone());
        }
        let dir = QueueTable::queue_dir(&self.cq_dir, &key.0, key.1);
        create_dir_all_durable(&*self.disk, &dir, &self.cq_dir).await?;
        let path = numbered_path(&dir, file_index * FILE_SIZE_BYTES);
        let f = open_durable(&*self.disk, &path).await?;
        self.cq_files.borrow_mut().insert(k, f.clone());
        Ok(f)
    }

    async fn index_file(&self, segment_base: u64) -> Result<Rc<dyn DiskFile>, IoError> {
        if let Some(f) = self.index_files.borrow().get(&segment_base) {
            return Ok(f.clone());
        }
        create_dir_all_durable(&*self.disk, &self.index_dir, &self.index_dir).await?;
        let path = numbered_path(&self.index_dir, segment_base);
        let f = open_durable(&*self.disk, &path).await?;
        self.index_files
            .borrow_mut()
            .insert(segment_base, f.clone());
        Ok(f)
    }

    /// Forgets handles of a deleted topic.
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.cq_files
            .borrow_mut()
            .retain(|((t, _), _), _| t != topic);
    }

    /// Forgets handles of consume-queue files below `file_index` for one queue, and removes
    /// those files.
    pub(crate) fn remove_cq_files_below(&self, topic: &str, queue_id: u32, min_offset: u64) {
        let first_kept = min_offset / crate::consume_queue::ENTRIES_PER_FILE;
        let dir = QueueTable::queue_dir(&self.cq_dir, topic, queue_id);
        let Ok(names) = self.disk.list_dir(&dir) else {
            return;
        };
        for n in names {
            let Some(byte_offset) = crate::commitlog::segment::parse_name(&n) else {
                continue;
            };
            let file_index = byte_offset / FILE_SIZE_BYTES;
            if file_index < first_kept {
                let _ = self.disk.remove(&dir.join(&n));
                self.cq_files
                    .borrow_mut()
                    .remove(&((topic.to_string(), queue_id), file_index));
            }
        }
    }

    /// Forgets and removes the index file of a deleted segment.
    pub(crate) fn remove_index_file(&self, segment_base: u64) {
        self.index_files.borrow_mut().remove(&segment_base);
        let _ = self
            .disk
            .remove(&numbered_path(&self.index_dir, segment_base));
    }

    /// Persists every CQ and index entry for records below `durable`, then the checkpoint.
    pub(crate) async fn run(
        &self,
        queues: &RefCell<QueueTable>,
        index: &RefCell<Index>,
        durable: u64,
        is_clean: bool,
    ) -> Result<Checkpoint, IoError> {
        // Consume queues.
        let keys: Vec<QueueKey> = {
            let t = queues.borrow();
            t.topics
                .iter()
                .flat_map(|(topic, qs)| qs.keys().map(|q| (topic.clone(), *q)))
                .collect()
        };
        for key in keys {
            let Some(job) = cq_job(&queues.borrow(), key, durable) else {
                continue;
            };
            let mut touched: Vec<Rc<dyn DiskFile>> = Vec::new();
            let mut pos = job.start_pos;
            let mut rest: &[u8] = &job.bytes;
            while !rest.is_empty() {
                let file_index = pos / FILE_SIZE_BYTES;
                let in_file = pos % FILE_SIZE_BYTES;
                let n = ((FILE_SIZE_BYTES - in_file) as usize).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                let f = self.cq_file(&job.key, file_index).await?;
                f.write_at(in_file, chunk).await?;
                touched.push(f);
                pos += n as u64;
                rest = tail;
            }
            for f in touched {
                f.sync().await?;
            }
            let mut t = queues.borrow_mut();
            if let Some(q) = t
                .topics
                .get_mut(&job.key.0)
                .and_then(|qs| qs.get_mut(&job.key.1))
            {
                q.persisted = q.persisted.max(job.target);
            }
        }
        // Index files.
        let bases: Vec<u64> = index.borrow().files.keys().copied().collect();
        for base in bases {
            let job = {
                let idx = index.borrow();
                let Some(f) = idx.files.get(&base) else {
                    continue;
                };
                let target = f.entries.partition_point(|e| e.commit_log_offset < durable);
                if target <= f.persisted {
                    continue;
                }
                let start_pos = (f.persisted * INDEX_ENTRY_SIZE_BYTES) as u64 / PAGE_SIZE_BYTES
                    * PAGE_SIZE_BYTES;
                let first = start_pos as usize / INDEX_ENTRY_SIZE_BYTES;
                let skip = start_pos as usize - first * INDEX_ENTRY_SIZE_BYTES;
                let mut bytes = Vec::with_capacity((target - first) * INDEX_ENTRY_SIZE_BYTES);
                for e in f.entries.get(first..target).unwrap_or_default() {
                    bytes.extend_from_slice(&e.encode());
                }
                bytes.drain(..skip.min(bytes.len()));
                (target, start_pos, bytes)
            };
            let (target, start_pos, bytes) = job;
            let f = self.index_file(base).await?;
            f.write_at(start_pos, &bytes).await?;
            f.sync().await?;
            if let Some(f) = index.borrow_mut().files.get_mut(&base) {
                f.persisted = f.persisted.max(target);
            }
        }
        // Checkpoint: take the file out so no borrow lives across the awaits.
        let taken = self.checkpoint.borrow_mut().take();
        let Some(mut ckpt) = taken else {
            let e = std::io::Error::other("checkpoint pass already running");
            return Err(IoError::new("checkpoint", &self.cq_dir, 0, e));
        };
        let r = ckpt.write(durable, durable, is_clean).await;
        *self.checkpoint.borrow_mut() = Some(ckpt);
        r
    }
}

fn cq_job(t: &QueueTable, key: QueueKey, durable: u64) -> Option<CqJob> {
    let q = t.get(&key.0, key.1)?;
    let n = q.entries.partition_point(|e| e.commit_log_offset < durable) as u64;
    let target = q.base + n;
    let from = q.persisted.max(q.base);
    if target <= from {
        return None;
    }
    let entry_size = CQ_ENTRY_SIZE_BYTES as u64;
    let start_pos = from * entry_size / PAGE_SIZE_BYTES * PAGE_SIZE_BYTES;
    let first = start_pos / entry_size;
    let skip = (start_pos - first * entry_size) as usize;
    let mut bytes = Vec::with_capacity(((target - first) * entry_size) as usize);
    for o in first..target {
        let e = q.get(o).unwrap_or(CqEntry::BLANK);
        bytes.extend_from_slice(&e.encode());
    }
    bytes.drain(..skip.min(bytes.len()));
    Some(CqJob {
        key,
        target,
        start_pos,
        bytes,
    })
}
