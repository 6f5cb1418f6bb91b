//! `SimDisk`: an in-memory disk for crash tests. It keeps two images of every file: what a
//! reader sees now (`volatile`) and what survives a crash (`durable`). `sync` copies the dirty
//! 4 KiB sectors to `durable`. `crash` then keeps, drops or tears (512-byte pieces of old and
//! new) every sector written since the last sync, chosen by a seeded generator, and turns
//! every handle opened before the crash into a dead one (its I/O fails).
//! Writes and syncs can be told to fail, and syncs, directory syncs and reads can be held at a
//! gate (test hooks that stall the flusher, catch a new file before its entry is durable, or
//! pause a reader mid-read).
//!
//! Directory entries: a file or directory created since its parent was last synced
//! (`sync_dir`) is volatile: at a crash each such entry survives or disappears, chosen by the
//! seeded generator, and a dropped directory takes everything under it along. Synced entries
//! always survive. Removals and size changes are applied durably at once (not simulated; the
//! engine never renames, so there is no rename). Every read, write and sync yields once to the
//! executor first, so other tasks (producers, a crash) interleave with I/O as on a real disk.
//!
//! Space: `space` counts every file's size, plus removed files that a live handle still holds
//! open (as a real filesystem frees an unlinked inode only at its last close; a crash or a
//! killed process closes them all), plus `set_extra_used_bytes`. Growing a file past the
//! capacity (`preallocate`, or a write past its end) fails with ENOSPC and changes nothing.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use super::{Disk, DiskFile, DiskSpace, LocalBoxFuture, Preallocation};
use crate::clock::Clock;
use crate::config::PAGE_SIZE_BYTES;
use crate::error::IoError;

const SECTOR: usize = PAGE_SIZE_BYTES as usize;
const PIECE: usize = 512;

/// A small seeded generator (SplitMix64) so a crash replays from its seed.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Default)]
struct FileData {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<usize>,
    modified_ms: i64,
}

struct SimState {
    files: HashMap<PathBuf, Rc<RefCell<FileData>>>,
    dirs: BTreeSet<PathBuf>,
    /// Files and directories created since their parent directory was last synced.
    unsynced_entries: BTreeSet<PathBuf>,
    /// Removed files, still taking space while a handle of this generation holds them.
    removed_open: Vec<Weak<RefCell<FileData>>>,
}

struct SimInner {
    state: RefCell<SimState>,
    generation: Cell<u64>,
    capacity_bytes: Cell<u64>,
    extra_used_bytes: Cell<u64>,
    write_failures: Cell<u32>,
    sync_failures: Cell<u32>,
    syncs_done: Cell<u64>,
    dir_syncs_done: Cell<u64>,
    sync_gate: Gate,
    dir_sync_gate: Gate,
    read_gate: Gate,
    clock: Rc<dyn Clock>,
}

/// A test hook: while closed, every operation of one kind waits here.
#[derive(Default)]
struct Gate {
    closed: Cell<bool>,
    waiting: Cell<u32>,
    wakers: RefCell<Vec<Waker>>,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.closed.set(closed);
        if !closed {
            for w in std::mem::take(&mut *self.wakers.borrow_mut()) {
                w.wake();
            }
        }
    }

    async fn pass(&self) {
        if !self.closed.get() {
            return;
        }
        self.waiting.set(self.waiting.get() + 1);
        std::future::poll_fn(|cx| {
            if self.closed.get() {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        self.waiting.set(self.waiting.get() - 1);
    }
}

/// The simulated disk. Cloning gives another handle to the same disk.
#[derive(Clone)]
pub struct SimDisk {
    inner: Rc<SimInner>,
}

/// What a crash did, for the test log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced sectors that survived whole.
    pub sectors_kept: u64,
    /// Unsynced sectors lost.
    pub sectors_dropped: u64,
    /// Unsynced sectors torn (a mix of old and new 512-byte pieces).
    pub sectors_torn: u64,
    /// Unsynced directory entries (new files and directories) that survived.
    pub entries_kept: u64,
    /// Unsynced directory entries dropped (a dropped directory counts once).
    pub entries_dropped: u64,
    /// Files gone with a dropped entry (the file itself or one under a dropped directory).
    pub files_lost: u64,
}

impl SimDisk {
    /// An empty disk of `capacity_bytes`, timestamps from `clock`.
    pub fn new(capacity_bytes: u64, clock: Rc<dyn Clock>) -> Self {
        Self {
            inner: Rc::new(SimInner {
                state: RefCell::new(SimState {
                    files: HashMap::new(),
                    dirs: BTreeSet::new(),
                    unsynced_entries: BTreeSet::new(),
                    removed_open: Vec::new(),
                }),
                generation: Cell::new(0),
                capacity_bytes: Cell::new(capacity_bytes),
                extra_used_bytes: Cell::new(0),
                write_failures: Cell::new(0),
                sync_failures: Cell::new(0),
                syncs_done: Cell::new(0),
                dir_syncs_done: Cell::new(0),
                sync_gate: Gate::default(),
                dir_sync_gate: Gate::default(),
                read_gate: Gate::default(),
                clock,
            }),
        }
    }

    /// The next `n` writes fail with EIO.
    pub fn fail_next_writes(&self, n: u32) {
        self.inner.write_failures.set(n);
    }

    /// The next `n` syncs fail with EIO.
    pub fn fail_next_syncs(&self, n: u32) {
        self.inner.sync_failures.set(n);
    }

    /// Holds every sync (before it makes anything durable) until `release_syncs`.
    pub fn hold_syncs(&self) {
        self.inner.sync_gate.set_closed(true);
    }

    /// Lets held syncs (and later ones) go on.
    pub fn release_syncs(&self) {
        self.inner.sync_gate.set_closed(false);
    }

    /// Syncs waiting at the gate now.
    pub fn syncs_held(&self) -> u32 {
        self.inner.sync_gate.waiting.get()
    }

    /// Syncs that have returned Ok since the disk was made.
    pub fn syncs_done(&self) -> u64 {
        self.inner.syncs_done.get()
    }

    /// Holds every directory sync (before it makes any entry durable) until
    /// `release_dir_syncs`: a crash meanwhile finds the new entries volatile.
    pub fn hold_dir_syncs(&self) {
        self.inner.dir_sync_gate.set_closed(true);
    }

    /// Lets held directory syncs (and later ones) go on.
    pub fn release_dir_syncs(&self) {
        self.inner.dir_sync_gate.set_closed(false);
    }

    /// Directory syncs waiting at the gate now.
    pub fn dir_syncs_held(&self) -> u32 {
        self.inner.dir_sync_gate.waiting.get()
    }

    /// Directory syncs (`sync_dir`) that have returned Ok since the disk was made.
    pub fn dir_syncs_done(&self) -> u64 {
        self.inner.dir_syncs_done.get()
    }

    /// Files and directories whose entry is not durable yet (created since their parent
    /// directory was last synced).
    pub fn unsynced_entries(&self) -> Vec<PathBuf> {
        self.inner
            .state
            .borrow()
            .unsynced_entries
            .iter()
            .cloned()
            .collect()
    }

    /// Holds every read (after its handle is checked, before it copies data) until
    /// `release_reads`.
    pub fn hold_reads(&self) {
        self.inner.read_gate.set_closed(true);
    }

    /// Lets held reads (and later ones) go on.
    pub fn release_reads(&self) {
        self.inner.read_gate.set_closed(false);
    }

    /// Reads waiting at the gate now.
    pub fn reads_held(&self) -> u32 {
        self.inner.read_gate.waiting.get()
    }

    /// Pretends `bytes` more are used on the disk (to drive disk-full tests).
    pub fn set_extra_used_bytes(&self, bytes: u64) {
        self.inner.extra_used_bytes.set(bytes);
    }

    /// Power loss: every unsynced directory entry is kept or dropped, every unsynced sector
    /// is kept, dropped or torn; old handles die.
    pub fn crash(&self, rng: &mut SimRng) -> CrashReport {
        self.inner.generation.set(self.inner.generation.get() + 1);
        self.inner.state.borrow_mut().removed_open.clear();
        let mut report = CrashReport::default();
        self.crash_entries(rng, &mut report);
        let state = self.inner.state.borrow();
        let mut paths: Vec<&PathBuf> = state.files.keys().collect();
        paths.sort();
        for p in paths {
            let Some(f) = state.files.get(p) else {
                continue;
            };
            let mut f = f.borrow_mut();
            let f = &mut *f;
            let dirty = std::mem::take(&mut f.dirty);
            for sector in dirty {
                let start = sector * SECTOR;
                let end = (start + SECTOR).min(f.volatile.len()).min(f.durable.len());
                if start >= end {
                    continue;
                }
                match rng.below(3) {
                    0 => {
                        report.sectors_kept += 1;
                        copy_range(&mut f.durable, &f.volatile, start, end);
                    }
                    1 => report.sectors_dropped += 1,
                    _ => {
                        report.sectors_torn += 1;
                        let mut piece = start;
                        while piece < end {
                            let piece_end = (piece + PIECE).min(end);
                            if rng.below(2) == 0 {
                                copy_range(&mut f.durable, &f.volatile, piece, piece_end);
                            }
                            piece = piece_end;
                        }
                    }
                }
            }
            f.volatile = f.durable.clone();
        }
        report
    }

    /// The process dies, the machine does not (SIGKILL): old handles die and every I/O
    /// held at a gate fails, but nothing written is lost, and what was not durable stays so
    /// (until a later `sync`, `sync_dir` or `crash`).
    pub fn kill_process(&self) {
        self.inner.generation.set(self.inner.generation.get() + 1);
        self.inner.state.borrow_mut().removed_open.clear();
    }

    /// Keeps or drops each unsynced entry, parents before children (sorted paths).
    fn crash_entries(&self, rng: &mut SimRng, report: &mut CrashReport) {
        let mut state = self.inner.state.borrow_mut();
        let state = &mut *state;
        for entry in std::mem::take(&mut state.unsynced_entries) {
            let is_present = state.files.contains_key(&entry) || state.dirs.contains(&entry);
            if !is_present {
                continue; // under a directory dropped just before
            }
            if rng.below(2) == 0 {
                report.entries_kept += 1;
                continue;
            }
            report.entries_dropped += 1;
            let before = state.files.len();
            state.files.retain(|p, _| !p.starts_with(&entry));
            report.files_lost += (before - state.files.len()) as u64;
            state.dirs.retain(|p| !p.starts_with(&entry));
        }
    }

    /// Bytes a reader sees now in `path` (for tests).
    pub fn read_whole(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.inner.state.borrow();
        state.files.get(path).map(|f| f.borrow().volatile.clone())
    }

    /// Overwrites bytes of `path` durably (for corruption tests).
    pub fn corrupt(&self, path: &Path, pos: usize, data: &[u8]) {
        let state = self.inner.state.borrow();
        if let Some(f) = state.files.get(path) {
            let mut f = f.borrow_mut();
            for (i, b) in data.iter().enumerate() {
                if let Some(x) = f.volatile.get_mut(pos + i) {
                    *x = *b;
                }
                if let Some(x) = f.durable.get_mut(pos + i) {
                    *x = *b;
                }
            }
        }
    }
}

impl SimInner {
    /// Bytes taken on the disk: files, removed files still open, and the pretended extra.
    fn used_bytes(&self) -> u64 {
        let state = self.state.borrow();
        let files: u64 = state
            .files
            .values()
            .map(|f| f.borrow().volatile.len() as u64)
            .sum();
        let removed_open: u64 = state
            .removed_open
            .iter()
            .filter_map(Weak::upgrade)
            .map(|f| f.borrow().volatile.len() as u64)
            .sum();
        files + removed_open + self.extra_used_bytes.get()
    }

    /// ENOSPC if growing a file from `len` to `new_len` bytes does not fit.
    fn check_room(
        &self,
        op: &'static str,
        path: &Path,
        len: u64,
        new_len: u64,
    ) -> Result<(), IoError> {
        let growth = new_len.saturating_sub(len);
        if growth > 0 && self.used_bytes() + growth > self.capacity_bytes.get() {
            let e = io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(IoError::new(op, path, len, e));
        }
        Ok(())
    }
}

fn copy_range(dst: &mut [u8], src: &[u8], start: usize, end: usize) {
    if let (Some(d), Some(s)) = (dst.get_mut(start..end), src.get(start..end)) {
        d.copy_from_slice(s);
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated {what}"))
}

struct SimFile {
    disk: Rc<SimInner>,
    data: Rc<RefCell<FileData>>,
    path: PathBuf,
    generation: u64,
}

impl SimFile {
    fn check_alive(&self, op: &'static str, pos: u64) -> Result<(), IoError> {
        if self.disk.generation.get() != self.generation {
            return Err(IoError::new(
                op,
                &self.path,
                pos,
                eio("crash: handle is dead"),
            ));
        }
        Ok(())
    }

    fn resize(f: &mut FileData, len: usize) {
        f.volatile.resize(len, 0);
        f.durable.resize(len, 0);
    }
}

impl DiskFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at<'a>(&'a self, pos: u64, data: &'a [u8]) -> LocalBoxFuture<'a, Result<(), IoError>> {
        Box::pin(async move {
            futures_lite::future::yield_now().await;
            self.check_alive("write", pos)?;
            if !pos.is_multiple_of(PAGE_SIZE_BYTES) {
                let e = io::Error::from_raw_os_error(libc::EINVAL);
                return Err(IoError::new("write", &self.path, pos, e));
            }
            if self.disk.write_failures.get() > 0 {
                self.disk
                    .write_failures
                    .set(self.disk.write_failures.get() - 1);
                return Err(IoError::new("write", &self.path, pos, eio("write failure")));
            }
            let len = data.len().div_ceil(SECTOR) * SECTOR;
            let start = pos as usize;
            let size = self.data.borrow().volatile.len() as u64;
            self.disk
                .check_room("write", &self.path, size, (start + len) as u64)?;
            let mut f = self.data.borrow_mut();
            if f.volatile.len() < start + len {
                Self::resize(&mut f, start + len);
            }
            if let Some(dst) = f.volatile.get_mut(start..start + len) {
                let (head, tail) = dst.split_at_mut(data.len());
                head.copy_from_slice(data);
                tail.fill(0);
            }
            for s in start / SECTOR..(start + len) / SECTOR {
                f.dirty.insert(s);
            }
            f.modified_ms = self.disk.clock.now_ms();
            Ok(())
        })
    }

    fn read_at(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, Result<Vec<u8>, IoError>> {
        Box::pin(async move {
            futures_lite::future::yield_now().await;
            self.check_alive("read", pos)?;
            self.disk.read_gate.pass().await;
            let f = self.data.borrow();
            let start = (pos as usize).min(f.volatile.len());
            let end = (start + len).min(f.volatile.len());
            Ok(f.volatile.get(start..end).unwrap_or_default().to_vec())
        })
    }

    fn sync(&self) -> LocalBoxFuture<'_, Result<(), IoError>> {
        Box::pin(async move {
            futures_lite::future::yield_now().await;
            self.check_alive("fdatasync", 0)?;
            self.disk.sync_gate.pass().await;
            self.check_alive("fdatasync", 0)?;
            if self.disk.sync_failures.get() > 0 {
                self.disk
                    .sync_failures
                    .set(self.disk.sync_failures.get() - 1);
                return Err(IoError::new(
                    "fdatasync",
                    &self.path,
                    0,
                    eio("fdatasync failure"),
                ));
            }
            let mut f = self.data.borrow_mut();
            let f = &mut *f;
            for s in std::mem::take(&mut f.dirty) {
                let end = ((s + 1) * SECTOR).min(f.volatile.len());
                copy_range(&mut f.durable, &f.volatile, s * SECTOR, end);
            }
            self.disk.syncs_done.set(self.disk.syncs_done.get() + 1);
            Ok(())
        })
    }

    fn size(&self) -> LocalBoxFuture<'_, Result<u64, IoError>> {
        Box::pin(async move {
            self.check_alive("stat", 0)?;
            Ok(self.data.borrow().volatile.len() as u64)
        })
    }

    fn preallocate(
        &self,
        size: u64,
        _how: Preallocation,
    ) -> LocalBoxFuture<'_, Result<(), IoError>> {
        Box::pin(async move {
            self.check_alive("fallocate", 0)?;
            let len = self.data.borrow().volatile.len() as u64;
            self.disk.check_room("fallocate", &self.path, len, size)?;
            let mut f = self.data.borrow_mut();
            if (f.volatile.len() as u64) < size {
                Self::resize(&mut f, size as usize);
            }
            Ok(())
        })
    }

    fn truncate(&self, size: u64) -> LocalBoxFuture<'_, Result<(), IoError>> {
        Box::pin(async move {
            self.check_alive("truncate", size)?;
            let len = self.data.borrow().volatile.len() as u64;
            self.disk.check_room("truncate", &self.path, len, size)?;
            let mut f = self.data.borrow_mut();
            Self::resize(&mut f, size as usize);
            let last = (size as usize).div_ceil(SECTOR);
            f.dirty.retain(|s| *s < last);
            Ok(())
        })
    }
}

impl Disk for SimDisk {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, Result<Rc<dyn DiskFile>, IoError>> {
        Box::pin(async move {
            let data = {
                let mut state = self.inner.state.borrow_mut();
                let parent_ok = path.parent().is_none_or(|p| state.dirs.contains(p));
                if !parent_ok {
                    let e = io::Error::from(io::ErrorKind::NotFound);
                    return Err(IoError::new("open", path, 0, e));
                }
                if !state.files.contains_key(path) && path.parent().is_some() {
                    state.unsynced_entries.insert(path.to_path_buf());
                }
                state.files.entry(path.to_path_buf()).or_default().clone()
            };
            Ok(Rc::new(SimFile {
                disk: self.inner.clone(),
                data,
                path: path.to_path_buf(),
                generation: self.inner.generation.get(),
            }) as Rc<dyn DiskFile>)
        })
    }

    fn remove(&self, path: &Path) -> Result<(), IoError> {
        let mut state = self.inner.state.borrow_mut();
        state.unsynced_entries.remove(path);
        match state.files.remove(path) {
            Some(f) => {
                state.removed_open.retain(|w| w.strong_count() > 0);
                state.removed_open.push(Rc::downgrade(&f));
                Ok(())
            }
            None => Err(IoError::new(
                "remove",
                path,
                0,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    fn create_dir_all(&self, path: &Path) -> Result<(), IoError> {
        let mut state = self.inner.state.borrow_mut();
        for a in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            if state.dirs.insert(a.to_path_buf()) && a.parent().is_some() {
                state.unsynced_entries.insert(a.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError> {
        let state = self.inner.state.borrow();
        let mut names: BTreeSet<String> = BTreeSet::new();
        let children = state.files.keys().chain(state.dirs.iter());
        for p in children {
            if p.parent() == Some(path) {
                if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                    names.insert(n.to_string());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn remove_dir_all(&self, path: &Path) -> Result<(), IoError> {
        let mut state = self.inner.state.borrow_mut();
        let state = &mut *state;
        let removed_open = &mut state.removed_open;
        state.files.retain(|p, f| {
            let keep = !p.starts_with(path);
            if !keep {
                removed_open.push(Rc::downgrade(f));
            }
            keep
        });
        state.dirs.retain(|p| !p.starts_with(path));
        state.unsynced_entries.retain(|p| !p.starts_with(path));
        state.removed_open.retain(|w| w.strong_count() > 0);
        Ok(())
    }

    fn space(&self, _path: &Path) -> Result<DiskSpace, IoError> {
        let used = self.inner.used_bytes();
        let total = self.inner.capacity_bytes.get();
        let free = total.saturating_sub(used);
        Ok(DiskSpace {
            total_bytes: total,
            free_bytes: free,
            available_bytes: free,
        })
    }

    fn modified_ms(&self, path: &Path) -> Result<i64, IoError> {
        let state = self.inner.state.borrow();
        state
            .files
            .get(path)
            .map(|f| f.borrow().modified_ms)
            .ok_or_else(|| IoError::new("stat", path, 0, io::Error::from(io::ErrorKind::NotFound)))
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.inner.state.borrow();
        state.files.contains_key(path) || state.dirs.contains(path)
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> LocalBoxFuture<'a, Result<(), IoError>> {
        Box::pin(async move {
            let generation = self.inner.generation.get();
            futures_lite::future::yield_now().await;
            self.inner.dir_sync_gate.pass().await;
            if self.inner.generation.get() != generation {
                // Started before a crash: it made nothing durable.
                return Err(IoError::new("fsync_dir", dir, 0, eio("crash during fsync")));
            }
            let mut state = self.inner.state.borrow_mut();
            if !state.dirs.contains(dir) {
                let e = io::Error::from(io::ErrorKind::NotFound);
                return Err(IoError::new("fsync_dir", dir, 0, e));
            }
            state.unsynced_entries.retain(|p| p.parent() != Some(dir));
            self.inner
                .dir_syncs_done
                .set(self.inner.dir_syncs_done.get() + 1);
            Ok(())
        })
    }
}
