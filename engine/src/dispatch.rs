//! Consume-queue and index entries built from appended records (RocketMQ's "reput").
//! The same function runs for a fresh put and for a record found by recovery, so the two
//! can never disagree.

use crate::consume_queue::{CqEntry, QueueTable};
use crate::index::Index;
use crate::properties;
use crate::record::{
    SYS_FLAG_TRANSACTION_MASK, SYS_FLAG_TRANSACTION_PREPARED, SYS_FLAG_TRANSACTION_ROLLBACK,
};
use crate::tags::tags_hash;

/// What dispatch needs to know about one stored record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DispatchRecord<'a> {
    pub(crate) topic: &'a str,
    pub(crate) queue_id: u32,
    pub(crate) queue_offset: u64,
    pub(crate) commit_log_offset: u64,
    pub(crate) size: u32,
    pub(crate) sys_flag: i32,
    pub(crate) properties: &'a str,
    pub(crate) store_timestamp_ms: i64,
}

/// Whether records with this sysFlag get a consume-queue entry (prepared and rollback
/// transaction records do not).
pub(crate) fn is_queued(sys_flag: i32) -> bool {
    let t = sys_flag & SYS_FLAG_TRANSACTION_MASK;
    t != SYS_FLAG_TRANSACTION_PREPARED && t != SYS_FLAG_TRANSACTION_ROLLBACK
}

/// The consume-queue tags code of a properties string.
pub(crate) fn tags_code(props: &str) -> i64 {
    properties::get(props, properties::TAGS).map_or(0, tags_hash)
}

/// Adds the record's consume-queue entry and index entries.
pub(crate) fn dispatch(
    queues: &mut QueueTable,
    index: &mut Index,
    segment_base: u64,
    r: &DispatchRecord<'_>,
) {
    if is_queued(r.sys_flag) {
        let e = CqEntry {
            commit_log_offset: r.commit_log_offset,
            size: r.size,
            tags_code: tags_code(r.properties),
        };
        queues
            .get_or_create(r.topic, r.queue_id)
            .push_at(r.queue_offset, e);
    }
    if r.sys_flag & SYS_FLAG_TRANSACTION_MASK != SYS_FLAG_TRANSACTION_ROLLBACK {
        index.add_record(
            segment_base,
            r.topic,
            r.properties,
            r.commit_log_offset,
            r.store_timestamp_ms,
        );
    }
}
