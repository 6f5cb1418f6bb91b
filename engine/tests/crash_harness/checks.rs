//! The invariants checked after every recovery (listed in `crash_recovery.rs`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use engine::disk::sim::SimDisk;
use engine::record::{decode, RecordView, MAGIC_BLANK};
use engine::{
    tags_hash, CommitLogOffset, GetLimit, GetStatus, QueueId, QueueOffset, Store, StoreConfig,
};

use super::workload::{key_of, Acked, Written, QUEUES, TOPICS};

/// Everything a recovery decides, for comparing two recoveries.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    pub min: u64,
    pub end: u64,
    pub queues: BTreeMap<(String, u32), (u64, u64)>,
    pub records: Vec<(u64, u32)>,
}

/// Walks the commitlog from min to end: every record valid and at its own offset, separated
/// only by end-of-segment blanks.
async fn walk(store: &Store, disk: &SimDisk, cfg: &StoreConfig) -> Vec<(u64, Bytes)> {
    let seg = cfg.segment_size_bytes;
    let end = store.max_commit_log_offset().0;
    let mut o = store.min_commit_log_offset().0;
    let mut out = Vec::new();
    while o < end {
        match store.read_message(CommitLogOffset(o)).await {
            Ok(b) => {
                let v = decode(&b).expect("served record decodes");
                assert_eq!(v.commit_log_offset().0, o, "record at its own offset");
                let len = b.len() as u64;
                out.push((o, b));
                o += len;
            }
            Err(_) => {
                // Only an end-of-segment blank may stop a walk before the end.
                let base = o - o % seg;
                let path = cfg.root_dir.join("commitlog").join(format!("{base:020}"));
                let file = disk.read_whole(&path).expect("segment file exists");
                let at = (o - base) as usize;
                let magic = i32::from_be_bytes(file[at + 4..at + 8].try_into().expect("4 bytes"));
                let size = i32::from_be_bytes(file[at..at + 4].try_into().expect("4 bytes"));
                assert_eq!(
                    magic, MAGIC_BLANK,
                    "unreadable record at {o} is not a blank"
                );
                assert_eq!(
                    size as u64,
                    base + seg - o,
                    "blank covers the rest of the segment"
                );
                o = base + seg;
            }
        }
    }
    assert_eq!(o, end, "walk ends exactly at the end");
    out
}

async fn state_and_records(
    store: &Store,
    disk: &SimDisk,
    cfg: &StoreConfig,
) -> (State, Vec<(u64, Bytes)>) {
    let mut queues = BTreeMap::new();
    for t in TOPICS {
        for q in 0..QUEUES {
            let id = QueueId(q);
            queues.insert(
                (t.to_string(), q),
                (store.min_offset(t, id).0, store.max_offset(t, id).0),
            );
        }
    }
    let records = walk(store, disk, cfg).await;
    let state = State {
        min: store.min_commit_log_offset().0,
        end: store.max_commit_log_offset().0,
        queues,
        records: records
            .iter()
            .map(|(o, b)| (*o, crc32fast::hash(b)))
            .collect(),
    };
    (state, records)
}

/// The state of a recovery (for comparing two recoveries).
pub async fn state(store: &Store, disk: &SimDisk, cfg: &StoreConfig) -> State {
    state_and_records(store, disk, cfg).await.0
}

/// KNOWN ENGINE GAP (reported on issue 8): the record's CRC covers only its body, so when a
/// crash loses the sector that held the end of an unacknowledged record's properties,
/// recovery keeps the record with that end zeroed, and serves it. This tells that one shape
/// apart (same length, a prefix of the written properties, then only zero bytes) so the
/// harness can count it while everything else must match exactly.
/// `crash_recovery::recovery_never_serves_a_torn_record` (ignored) fails on it.
pub fn is_torn_properties_tail(v: &RecordView<'_>, w: &Written) -> bool {
    let (got, want) = (v.properties().as_bytes(), w.properties.as_bytes());
    let same_prefix = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    got.len() == want.len() && same_prefix < got.len() && got[same_prefix..].iter().all(|b| *b == 0)
}

/// The message a recovered record came from: by its key, or (for a torn properties tail that
/// cut the key) by the intact part of its properties, its body and its born timestamp.
fn find_written<'w>(
    written: &'w HashMap<String, std::rc::Rc<Written>>,
    v: &RecordView<'_>,
) -> Option<&'w Written> {
    let props = v.properties();
    let key = key_of(props).unwrap_or_default();
    if let Some(w) = written.get(key) {
        return Some(w);
    }
    let intact = props.trim_end_matches('\0');
    let mut found = written.values().filter(|w| {
        w.properties.len() == props.len()
            && w.properties.starts_with(intact)
            && w.body == v.body()
            && w.born_timestamp_ms == v.born_timestamp_ms()
    });
    match (found.next(), found.next()) {
        (Some(w), None) => Some(w),
        _ => None,
    }
}

/// The record as stored equals the message as written: header fields, topic, queue,
/// properties (tags, keys) and body.
fn assert_matches_written(v: &RecordView<'_>, w: &Written, at: u64) {
    let ctx = format!(
        "record at {at} vs written {}/{} {:?}",
        w.topic, w.queue, w.properties
    );
    assert_eq!(v.topic(), w.topic, "topic: {ctx}");
    assert_eq!(v.queue_id(), QueueId(w.queue), "queue: {ctx}");
    assert_eq!(v.body(), &w.body[..], "body: {ctx}");
    assert_eq!(v.properties(), w.properties, "properties: {ctx}");
    assert_eq!(v.flag(), w.flag, "flag: {ctx}");
    assert_eq!(v.sys_flag(), 0, "sys_flag: {ctx}");
    assert_eq!(v.born_timestamp_ms(), w.born_timestamp_ms, "born: {ctx}");
    assert_eq!(v.born_host(), w.born_host, "born host: {ctx}");
    let store_host = crate::common::msg("", 0, b"", "").store_host;
    assert_eq!(v.store_host(), store_host, "store host: {ctx}");
    assert_eq!(v.reconsume_times(), w.reconsume_times, "reconsume: {ctx}");
    assert_eq!(v.prepared_transaction_offset(), 0, "prepared: {ctx}");
    assert_eq!(
        v.body_crc(),
        (crc32fast::hash(&w.body) & 0x7FFF_FFFF) as i32,
        "body crc: {ctx}"
    );
}

/// Runs every invariant; returns the recovered state and how many unacknowledged records
/// were served with a torn properties tail (the known gap; `strict` fails on them instead).
pub async fn check_invariants(
    store: &Store,
    disk: &SimDisk,
    cfg: &StoreConfig,
    written: &HashMap<String, std::rc::Rc<Written>>,
    acked: &[Acked],
    strict: bool,
) -> (State, u64) {
    let (s, records) = state_and_records(store, disk, cfg).await;
    // 2: every recovered record, acknowledged or not, is exactly one message that was written,
    // and none is there twice.
    let acked_at: HashSet<u64> = acked.iter().map(|a| a.offset).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut torn_served = 0;
    for (o, b) in &records {
        let v = decode(b).expect("walked record decodes");
        let w = find_written(written, &v).unwrap_or_else(|| {
            panic!(
                "recovered record at {o} was never written: topic {:?} queue {:?} props {:?}",
                v.topic(),
                v.queue_id(),
                v.properties()
            )
        });
        let key = key_of(&w.properties).unwrap_or_default();
        if is_torn_properties_tail(&v, w) && !acked_at.contains(o) && !strict {
            torn_served += 1;
        } else {
            assert_matches_written(&v, w, *o);
        }
        assert!(seen.insert(key), "message {key} recovered twice (at {o})");
    }
    let valid: HashSet<u64> = s.records.iter().map(|r| r.0).collect();
    // 1 + 5: acked records intact, end past them.
    for a in acked {
        assert!(
            s.end >= a.offset + a.bytes.len() as u64,
            "LOST ACKED RECORD: offsets went back below acked {} (end {})",
            a.offset,
            s.end
        );
        let b = store
            .read_message(CommitLogOffset(a.offset))
            .await
            .unwrap_or_else(|e| panic!("LOST ACKED RECORD at {}: {e}", a.offset));
        assert_eq!(&b[..], &a.bytes[..], "acked record at {} changed", a.offset);
        let w = &written[&a.key];
        assert_matches_written(&decode(&b).expect("acked record decodes"), w, a.offset);
        let codes = RefCell::new(Vec::new());
        let limit = GetLimit {
            count_max: 1,
            bytes_max: 1 << 20,
        };
        let g = store
            .get(
                w.topic,
                QueueId(w.queue),
                QueueOffset(a.queue_offset),
                limit,
                &|c| {
                    codes.borrow_mut().push(c);
                    true
                },
            )
            .await
            .expect("get");
        assert_eq!(
            g.status,
            GetStatus::Found,
            "LOST ACKED RECORD: CQ entry of {a:?}"
        );
        assert_eq!(
            &g.messages[0][..],
            &a.bytes[..],
            "CQ entry points at the acked record"
        );
        assert_eq!(codes.borrow()[0], tags_hash(w.tag), "CQ tags code of {a:?}");
        let by_key = store
            .query_by_key(w.topic, &a.key, 4, 0, i64::MAX)
            .await
            .expect("query by key");
        assert!(
            by_key.iter().any(|b| b[..] == a.bytes[..]),
            "LOST ACKED RECORD: index has no entry for key {} of {a:?}",
            a.key
        );
    }
    // 3: every CQ entry points at a valid record of its queue, with its tags code.
    for ((topic, q), (min, max)) in &s.queues {
        let mut o = *min;
        while o < *max {
            let limit = GetLimit {
                count_max: 32,
                bytes_max: 1 << 20,
            };
            let codes = RefCell::new(Vec::new());
            let filter = |c| {
                codes.borrow_mut().push(c);
                true
            };
            let g = store
                .get(topic, QueueId(*q), QueueOffset(o), limit, &filter)
                .await
                .expect("get");
            assert_eq!(g.status, GetStatus::Found, "{topic}/{q}@{o}");
            for (i, m) in g.messages.iter().enumerate() {
                let v = decode(m).expect("CQ points at a valid record");
                assert_eq!(v.topic(), topic);
                assert_eq!(v.queue_id(), QueueId(*q));
                assert_eq!(v.queue_offset().0, o + i as u64);
                assert!(valid.contains(&v.commit_log_offset().0));
                let w = find_written(written, &v).expect("CQ record was written");
                if strict || !is_torn_properties_tail(&v, w) {
                    assert_eq!(codes.borrow()[i], tags_hash(w.tag), "tags code");
                }
            }
            o = g.next_begin_offset.0;
        }
    }
    (s, torn_served)
}
