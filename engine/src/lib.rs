//! Petrel's storage engine: one `Store` per shard, RocketMQ-compatible formats, direct I/O.
//!
//! # The write path (4 hops, the last two here)
//! 1. `broker::remoting::connection` decodes a SEND frame.
//! 2. `broker::processor::send` turns the header into a [`PutMessage`].
//! 3. [`Store::put`] (`store.rs`): assigns the queue offset and the commitlog offset, encodes
//!    the stored record into the aligned append buffer (`commitlog/mod.rs`), and dispatches its
//!    consume-queue and index entries in memory (`dispatch.rs`). Returns a
//!    [`DurabilityTicket`].
//! 4. The flusher (`commitlog/group_commit.rs`) writes everything appended so far with one
//!    4 KiB-aligned O_DIRECT write, fdatasyncs, and resolves every ticket it covers; whatever
//!    arrived meanwhile goes into the very next flush (group commit).
//!
//! # The read path
//! [`Store::get`] walks the consume queue (`consume_queue/`) from the requested offset,
//! filters by tags code, and fetches each record from the pending buffer, the tail cache
//! (`commitlog/tail_cache.rs`) or an aligned DMA read of the segment file.
//!
//! # Recovery
//! `recovery.rs`: from the checkpoint (`checkpoint.rs`) scan the commitlog, validate every
//! record, truncate at the first torn or invalid one, rebuild consume-queue and index entries
//! past their checkpoint. Consume queues and the index are persisted behind the commitlog by
//! the checkpoint pass (`persist.rs`), never on the put path. Retention: `retention.rs`.
//!
//! # Files
//! `disk/` is the only door to files: [`disk::glommio::GlommioDisk`] in production,
//! [`disk::sim::SimDisk`] in crash tests.
//!
//! # Glossary (RocketMQ's words)
//! - **topic**, **queue_id**: a message stream and one of its queues.
//! - **commit_log_offset** ("phy offset"): byte position of a record in the shard's commitlog.
//! - **queue_offset**: logical position of a record in its consume queue.
//! - **consume queue (CQ)**: per (topic, queue_id), 20-byte entries pointing into the commitlog.
//! - **tags_code**: Java hashCode of the TAGS property, kept in the CQ entry for filtering.
//! - **segment**: one commitlog file, named by its 20-digit base offset.
//! - **ticket**: resolves when the record is durable (SYNC_FLUSH waits for it).
//! - **checkpoint**: what is durable; recovery scans only past it.
#![warn(missing_docs)]

mod checkpoint;
pub mod clock;
mod commitlog;
mod config;
pub mod consume_queue;
pub mod disk;
mod dispatch;
mod error;
pub mod index;
mod persist;
pub mod properties;
pub mod record;
pub mod recovery;
pub mod retention;
mod signal;
mod store;
mod tags;
mod types;

pub use checkpoint::Checkpoint;
pub use commitlog::DurabilityTicket;
pub use config::{StoreConfig, PAGE_SIZE_BYTES};
pub use error::{ConfigError, FlushError, GetError, IoError, OpenError, PutError, ShutdownError};
pub use record::PutMessage;
pub use recovery::RecoveryReport;
pub use store::{
    Background, BatchPutResult, GetLimit, GetResult, GetStatus, PutResult, Store,
    GET_SCAN_ENTRIES_MAX, MAINTENANCE_INTERVAL_MS,
};
pub use tags::{java_string_hash, tags_hash};
pub use types::{CommitLogOffset, FlushMode, QueueId, QueueOffset};
