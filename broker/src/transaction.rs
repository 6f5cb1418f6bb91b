//! Transactional messages (REMOTING.md §2.6, §7.6): half messages, their decision
//! (END_TRANSACTION) and the check-back scanner.
//!
//! A send whose properties say `TRAN_MSG=true` (or whose sysFlag says PREPARED) is a **half**
//! message: [`park_half`] rewrites it for `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with its real topic
//! and queue in `REAL_TOPIC` / `REAL_QID` and its transaction type reset to NOT_TYPE (so it gets
//! a consume-queue entry in the half topic, never in its real one: no consumer sees it).
//!
//! END_TRANSACTION ([`end_transaction`]) finds the half by its commitlog offset. Commit writes the
//! real message (properties restored, `TRAN_MSG` removed, sysFlag COMMIT, PREPARED_TX_OFFSET =
//! the half's commitlog offset; a `DELAY` is honoured now, through `schedule.rs`); commit and
//! rollback then append an **op** record to `RMQ_SYS_TRANS_OP_HALF_TOPIC` queue 0: tag `d`, body
//! = the half queue offset followed by `,` (Java's format), and `UNIQ_KEY` = the transaction id,
//! so the op is found through the key index too.
//!
//! The check-back task ([`TransactionService::start`]) runs a round every
//! `transactionCheckInterval`. It walks the half queue from its persisted offset, skips every
//! half named by an op, and stops at the first half younger than `transactionTimeOut` (or stored
//! after the round began). An older half without an op is re-appended to the half queue with
//! `TRANSACTION_CHECK_TIMES` + 1 and a CHECK_TRANSACTION_STATE (oneway) for that copy goes to one
//! live connection of its `PGROUP` producer group; after `transactionCheckMax` checks it is
//! discarded (logged). Like Java, the copy is what the producer answers about, so the round
//! moves past the original.
//!
//! Invariants:
//! - **First decision wins.** Every half copy of one transaction carries the same transaction
//!   id; before committing, and before checking a half back, the op topic is searched by that
//!   id (key index), so a late answer about an older copy, or a second answer, never writes the
//!   real message twice. Decisions of one id in flight at once are serialised by `deciding`.
//! - **Bounded.** The half queue is the queue. In memory the task keeps only the ops read ahead
//!   of the scan position, keyed by half offset (`OP_WINDOW_MAX` entries; when full, reading ops
//!   pauses and halves not in the window take the slow path, a key-index lookup, so the bound
//!   costs speed, never correctness), and `deciding` holds at most `DECIDING_MAX` ids.
//! - **At-least-once.** The scan position (`halfOffset`) and the op read position (`opOffset`,
//!   the oldest op not yet matched) are written to `<store_dir>/config/transactionOffset.json`
//!   after each round, only once the copies they step over are durable. After a crash the scan
//!   resumes from the file: a half is checked again rather than forgotten.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Weak;
use std::time::Duration;

use bytes::BytesMut;
use engine::{
    CommitLogOffset, DurabilityTicket, GetLimit, GetStatus, PutError, PutMessage, QueueId,
    QueueOffset,
};
use glommio::channels::local_channel::LocalReceiver;
use serde::{Deserialize, Serialize};

use crate::background::{PendingCopies, Settled, WakeableTask};
use crate::config_file::write_file_atomically;
use crate::error::BrokerError;
use crate::processor::send::{
    offset_msg_id, Properties, PROPERTY_DELAY, PROPERTY_TAGS, PROPERTY_UNIQ_KEY, PROPERTY_WAIT,
};
use crate::remoting::{RemotingCommand, RequestCode};
use crate::schedule::{self, DelayLevel, PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC};
use crate::shard::{now_ms, Shard};
use crate::topic::{DataVersion, SCHEDULE_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};

/// `"true"` on a message the producer sends as a half message.
pub const PROPERTY_TRANSACTION_PREPARED: &str = "TRAN_MSG";
/// Producer group of a transactional message (where check-backs go).
pub const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";
/// The transaction id (= UNIQ_KEY) the broker puts on a half message.
pub const PROPERTY_TRANSACTION_ID: &str = "__transactionId__";
/// Check-backs done so far for a half message.
pub const PROPERTY_TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// The producer's earliest first check-back, in seconds.
pub const PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Half-queue offset of the first half of a re-appended copy.
pub const PROPERTY_TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
/// Tag of op records ("remove").
pub const OP_TAG_REMOVE: &str = "d";
/// The half topic and the op topic have one queue each.
pub const HALF_QUEUE_ID: QueueId = QueueId(0);
pub const OP_QUEUE_ID: QueueId = QueueId(0);

/// MessageSysFlag transaction types (REMOTING.md §4.2).
pub mod tran_type {
    pub const MASK: i32 = 0xC;
    pub const NOT_TYPE: i32 = 0x0;
    pub const PREPARED: i32 = 0x4;
    pub const COMMIT: i32 = 0x8;
    pub const ROLLBACK: i32 = 0xC;
}

/// Bound on ops read ahead of the scan position (half offset -> op offset entries).
pub const OP_WINDOW_MAX: usize = 65_536;
/// Ops read per store call.
pub const OP_BATCH_COUNT_MAX: u32 = 64;
/// Half offsets one op body may name (ours name one; Java batches a few).
pub const OP_BODY_OFFSETS_MAX: usize = 1_024;
/// Bound on transaction ids being decided at the same moment.
pub const DECIDING_MAX: usize = 65_536;
/// A half that cannot be read this many rounds in a row is skipped (logged).
pub const HALF_READ_ATTEMPTS_MAX: u32 = 30;

/// Whether a send stores a half message: `TRAN_MSG=true` (Java's rule) or the PREPARED type
/// in sysFlag; a client-side resend of a delayed retry is exempt, as in Java.
pub fn is_half(props: &Properties, sys_flag: i32, reconsume_times: i32) -> bool {
    let is_tran_msg = props
        .get(PROPERTY_TRANSACTION_PREPARED)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let is_prepared = sys_flag & tran_type::MASK == tran_type::PREPARED;
    let is_delayed_retry = reconsume_times > 0
        && props
            .get(PROPERTY_DELAY)
            .and_then(DelayLevel::from_property)
            .is_some();
    (is_tran_msg || is_prepared) && !is_delayed_retry
}

/// Rewrites a half message's properties for `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 (`REAL_TOPIC`,
/// `REAL_QID`, `__transactionId__` = `uniq_key`) and returns its sysFlag with the transaction
/// type reset to NOT_TYPE (Java's `parseHalfMessageInner`).
pub fn park_half(
    props: &mut Properties,
    sys_flag: i32,
    topic: &str,
    queue_id: u32,
    uniq_key: &str,
) -> i32 {
    props.set(PROPERTY_REAL_TOPIC, topic);
    props.set(PROPERTY_REAL_QID, &queue_id.to_string());
    if !uniq_key.is_empty() {
        props.set(PROPERTY_TRANSACTION_ID, uniq_key);
    }
    (sys_flag & !tran_type::MASK) | tran_type::NOT_TYPE
}

/// The id every copy of a half message shares: its UNIQ_KEY (else `__transactionId__`).
pub fn transaction_id(properties: &str) -> Option<&str> {
    engine::properties::get(properties, PROPERTY_UNIQ_KEY)
        .or_else(|| engine::properties::get(properties, PROPERTY_TRANSACTION_ID))
        .filter(|id| !id.is_empty())
}

/// The producer's decision in END_TRANSACTION (`commitOrRollback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
}

/// END_TRANSACTION's header, checked against the half record it names.
#[derive(Clone, Copy, Debug)]
pub struct EndTransaction<'a> {
    pub producer_group: &'a str,
    pub tran_state_table_offset: i64,
    pub commit_log_offset: i64,
    pub decision: Decision,
    pub is_from_check: bool,
}

/// Decides a half message: commit writes the real message, then commit and rollback record
/// an op. Returns the durability ticket of the op (None when the transaction was already
/// decided, or is being decided by another request right now).
pub async fn end_transaction(
    shard: &Shard,
    end: &EndTransaction<'_>,
) -> Result<Option<DurabilityTicket>, BrokerError> {
    let not_found = |reason: String| {
        BrokerError::SystemError(format!(
            "Find prepared transaction message failed: {reason}"
        ))
    };
    let offset = u64::try_from(end.commit_log_offset)
        .map_err(|_| not_found(format!("bad commitLogOffset {}", end.commit_log_offset)))?;
    let record = shard
        .store()
        .read_message(CommitLogOffset(offset))
        .await
        .map_err(|e| not_found(e.to_string()))?;
    let view = engine::record::decode(&record).map_err(|e| not_found(format!("{e:?}")))?;
    if view.topic() != TRANS_HALF_TOPIC {
        return Err(not_found(format!(
            "the message at {offset} is in topic {}",
            view.topic()
        )));
    }
    let properties = view.properties();
    if engine::properties::get(properties, PROPERTY_PRODUCER_GROUP) != Some(end.producer_group) {
        return Err(BrokerError::SystemError(
            "The producer group wrong".to_string(),
        ));
    }
    if i64::try_from(view.queue_offset().0).ok() != Some(end.tran_state_table_offset) {
        return Err(BrokerError::SystemError(
            "The transaction state table offset wrong".to_string(),
        ));
    }
    if i64::try_from(view.commit_log_offset().0).ok() != Some(end.commit_log_offset) {
        return Err(BrokerError::SystemError(
            "The commit log offset wrong".to_string(),
        ));
    }
    let txn_id = transaction_id(properties).unwrap_or_default().to_string();
    let service = shard.transactions();
    let Some(_deciding) = service.begin_decision(&txn_id)? else {
        log::info!(
            "shard {}: transaction {txn_id} is being decided by another request; {:?} ignored",
            shard.id(),
            end.decision
        );
        return Ok(None);
    };
    if is_decided(shard, &txn_id).await {
        log::info!(
            "shard {}: transaction {txn_id} was already decided; {:?} (from check: {}) ignored",
            shard.id(),
            end.decision,
            end.is_from_check
        );
        return Ok(None);
    }
    let mut dropped = None;
    if end.decision == Decision::Commit {
        match commit(shard, &view) {
            Ok(()) => {}
            Err(e @ (BrokerError::TopicNotExist { .. } | BrokerError::MessageIllegal(_))) => {
                log::warn!(
                    "shard {}: transaction {txn_id} cannot be committed ({e}); dropped",
                    shard.id()
                );
                dropped = Some(e);
            }
            // The store refused for now: no op, so a check-back asks again later.
            Err(e) => return Err(e),
        }
    }
    let ticket = write_op(shard, view.queue_offset(), &txn_id)?;
    service.decided_count.set(service.decided_count.get() + 1);
    match dropped {
        Some(e) => Err(e),
        None => Ok(Some(ticket)),
    }
}

/// Writes the real message of a committed half.
fn commit(shard: &Shard, view: &engine::record::RecordView<'_>) -> Result<(), BrokerError> {
    let mut props = Properties::parse(view.properties());
    let topic = props
        .get(PROPERTY_REAL_TOPIC)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let queue_id = props
        .get(PROPERTY_REAL_QID)
        .and_then(|q| q.trim().parse::<u32>().ok());
    let (Some(topic), Some(queue_id)) = (topic, queue_id) else {
        return Err(BrokerError::MessageIllegal(
            "the half message has no valid REAL_TOPIC/REAL_QID".to_string(),
        ));
    };
    if !shard.topics().contains(&topic) {
        return Err(BrokerError::TopicNotExist { topic });
    }
    props.remove(PROPERTY_REAL_TOPIC);
    props.remove(PROPERTY_REAL_QID);
    props.remove(PROPERTY_TRANSACTION_PREPARED);
    let sys_flag = (view.sys_flag() & !tran_type::MASK) | tran_type::COMMIT;
    let parked = schedule::park(&mut props, sys_flag, &topic, queue_id);
    let properties = props.encode();
    let (store_topic, store_queue_id) = match parked {
        Some(level) => (SCHEDULE_TOPIC, level.queue_id()),
        None => (topic.as_str(), QueueId(queue_id)),
    };
    let msg = PutMessage {
        topic: store_topic,
        queue_id: store_queue_id,
        flag: view.flag(),
        body: view.body(),
        properties: &properties,
        sys_flag,
        born_timestamp_ms: view.born_timestamp_ms(),
        born_host: view.born_host(),
        store_host: view.store_host(),
        reconsume_times: view.reconsume_times(),
        prepared_transaction_offset: i64::try_from(view.commit_log_offset().0).unwrap_or(0),
    };
    let put = shard.store().put(&msg).map_err(|e| match e {
        PutError::BodyTooLarge { .. }
        | PutError::PropertiesTooLong { .. }
        | PutError::TopicTooLong { .. } => BrokerError::MessageIllegal(e.to_string()),
        e => BrokerError::Put(e),
    })?;
    if parked.is_some() {
        shard.schedule().wake();
    } else {
        shard
            .long_polls()
            .notify_append(&topic, queue_id, put.queue_offset.0 + 1);
    }
    Ok(())
}

/// Appends the op record that marks half `half_offset` (transaction `txn_id`) decided.
fn write_op(
    shard: &Shard,
    half_offset: QueueOffset,
    txn_id: &str,
) -> Result<DurabilityTicket, BrokerError> {
    let body = format!("{},", half_offset.0);
    let mut props = Properties::parse("");
    props.set(PROPERTY_TAGS, OP_TAG_REMOVE);
    if !txn_id.is_empty() {
        props.set(PROPERTY_UNIQ_KEY, txn_id);
    }
    props.set(PROPERTY_WAIT, "false");
    let properties = props.encode();
    let store_host = shard.context().advertised_addr;
    let msg = PutMessage {
        topic: TRANS_OP_HALF_TOPIC,
        queue_id: OP_QUEUE_ID,
        flag: 0,
        body: body.as_bytes(),
        properties: &properties,
        sys_flag: 0,
        born_timestamp_ms: now_ms(),
        born_host: store_host,
        store_host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    Ok(shard.store().put(&msg)?.ticket)
}

/// Whether an op for transaction `txn_id` exists (key index of the op topic). A failed lookup
/// counts as "not decided": the worst outcome is one more check-back.
async fn is_decided(shard: &Shard, txn_id: &str) -> bool {
    if txn_id.is_empty() {
        return false;
    }
    match shard
        .store()
        .query_by_key(TRANS_OP_HALF_TOPIC, txn_id, 1, 0, i64::MAX)
        .await
    {
        Ok(found) => !found.is_empty(),
        Err(e) => {
            log::warn!(
                "shard {}: op lookup of transaction {txn_id} failed: {e}",
                shard.id()
            );
            false
        }
    }
}

/// Half offsets named by op bodies: decimal numbers separated by `,` (garbage is skipped).
fn op_body_offsets(body: &[u8]) -> impl Iterator<Item = u64> + '_ {
    body.split(|b| *b == b',')
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .take(OP_BODY_OFFSETS_MAX)
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TransactionOffsetFile {
    data_version: DataVersion,
    half_offset: u64,
    op_offset: u64,
}

/// One shard's transaction state: the check-back scan position and its task.
pub struct TransactionService {
    /// Next half-queue offset the scan looks at.
    half_offset: Cell<u64>,
    /// Oldest op-queue offset whose op may still name a half at or past `half_offset`.
    op_offset: Cell<u64>,
    is_dirty: Cell<bool>,
    version: Cell<DataVersion>,
    path: PathBuf,
    background: WakeableTask,
    /// Transaction ids being decided right now (END_TRANSACTION in flight).
    deciding: RefCell<HashSet<String>>,
    decided_count: Cell<u64>,
    checks_sent_count: Cell<u64>,
    discarded_count: Cell<u64>,
}

/// Removes its id from `deciding` when the decision is over.
pub struct DecidingGuard<'a> {
    service: &'a TransactionService,
    txn_id: String,
}

impl Drop for DecidingGuard<'_> {
    fn drop(&mut self) {
        self.service.deciding.borrow_mut().remove(&self.txn_id);
    }
}

impl TransactionService {
    /// Loads `<config_dir>/transactionOffset.json` if it exists.
    pub fn open(config_dir: &Path) -> Result<TransactionService, BrokerError> {
        let path = config_dir.join("transactionOffset.json");
        let loaded: TransactionOffsetFile = crate::config_file::read_json_or_default(&path)?;
        Ok(TransactionService {
            half_offset: Cell::new(loaded.half_offset),
            op_offset: Cell::new(loaded.op_offset),
            is_dirty: Cell::new(false),
            version: Cell::new(loaded.data_version),
            path,
            background: WakeableTask::new(),
            deciding: RefCell::new(HashSet::new()),
            decided_count: Cell::new(0),
            checks_sent_count: Cell::new(0),
            discarded_count: Cell::new(0),
        })
    }

    /// Spawns the check-back task (once; later calls do nothing).
    pub fn start(&self, shard: Weak<Shard>) {
        self.background.start(|wake_rx| run(shard, wake_rx));
    }

    /// Runs a round now (or lets the task see that the shard is stopping).
    pub fn wake(&self) {
        self.background.wake();
    }

    /// Waits for the task to finish (it stops once the shard is stopping, after writing the
    /// scan position). Call after `Shard::begin_shutdown`.
    pub async fn stop(&self) {
        self.background.join().await;
    }

    /// Next half-queue offset the check-back scan looks at.
    pub fn half_offset(&self) -> QueueOffset {
        QueueOffset(self.half_offset.get())
    }

    /// Oldest op-queue offset not yet matched with its half.
    pub fn op_offset(&self) -> QueueOffset {
        QueueOffset(self.op_offset.get())
    }

    /// Transactions committed or rolled back since the shard opened.
    pub fn decided_count(&self) -> u64 {
        self.decided_count.get()
    }

    /// CHECK_TRANSACTION_STATE requests sent since the shard opened.
    pub fn checks_sent_count(&self) -> u64 {
        self.checks_sent_count.get()
    }

    /// Half messages dropped after `transactionCheckMax` checks since the shard opened.
    pub fn discarded_count(&self) -> u64 {
        self.discarded_count.get()
    }

    /// Claims `txn_id` for one decision; None when another request is deciding it now.
    fn begin_decision(&self, txn_id: &str) -> Result<Option<DecidingGuard<'_>>, BrokerError> {
        if txn_id.is_empty() {
            // Without an id nothing can be deduplicated; let it through.
            return Ok(Some(DecidingGuard {
                service: self,
                txn_id: String::new(),
            }));
        }
        let mut deciding = self.deciding.borrow_mut();
        if deciding.contains(txn_id) {
            return Ok(None);
        }
        if deciding.len() >= DECIDING_MAX {
            return Err(BrokerError::SystemBusy(format!(
                "[REJECTREQUEST]system busy: {DECIDING_MAX} transactions are being decided"
            )));
        }
        deciding.insert(txn_id.to_string());
        Ok(Some(DecidingGuard {
            service: self,
            txn_id: txn_id.to_string(),
        }))
    }

    fn set_offsets(&self, half_offset: u64, op_offset: u64) {
        if self.half_offset.replace(half_offset) != half_offset
            || self.op_offset.replace(op_offset) != op_offset
        {
            self.is_dirty.set(true);
        }
    }

    fn to_json(&self, half_offset: u64, op_offset: u64) -> Vec<u8> {
        let file = TransactionOffsetFile {
            data_version: self.version.get(),
            half_offset,
            op_offset,
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }
}

/// Ops read ahead of the scan position; lives in the task.
struct OpWindow {
    /// Half offset -> op-queue offset of the op naming it (only half offsets at or past the
    /// scan position; at most `OP_WINDOW_MAX` entries, give or take one op batch).
    done: BTreeMap<u64, u64>,
    /// Next op-queue offset to read; None until the first round loads it from the file.
    read_offset: Option<u64>,
    /// The half offset that could not be read, and in how many rounds.
    failed_half: Option<(u64, u32)>,
}

/// The check-back task: a round every `transactionCheckInterval` until the shard stops.
async fn run(shard: Weak<Shard>, wake: LocalReceiver<()>) {
    let mut window = OpWindow {
        done: BTreeMap::new(),
        read_offset: None,
        failed_half: None,
    };
    let mut pending = PendingCopies::default();
    loop {
        let wait_ms = {
            let Some(shard) = shard.upgrade() else {
                return;
            };
            if shard.is_stopping() {
                persist(&shard, &mut pending).await;
                return;
            }
            check_round(&shard, &mut window, &mut pending).await;
            persist(&shard, &mut pending).await;
            shard.context().config.transaction_check_interval_ms
        };
        futures_lite::future::or(
            async {
                // None: the sender (the shard) is gone; the next turn sees that.
                let _ = wake.recv().await;
            },
            glommio::timer::sleep(Duration::from_millis(wait_ms)),
        )
        .await;
    }
}

/// What to do after looking at one half.
enum Step {
    /// Move to the next half.
    Next,
    /// Move to this offset (the queue's head was deleted meanwhile).
    JumpTo(u64),
    /// Stop this round here (the rest is too young, or the store refused for now).
    Stop,
}

/// One pass over the half queue.
async fn check_round(shard: &Shard, window: &mut OpWindow, pending: &mut PendingCopies) {
    let service = shard.transactions();
    let store = shard.store();
    let round_start_ms = now_ms();
    let half_min = store.min_offset(TRANS_HALF_TOPIC, HALF_QUEUE_ID).0;
    let half_max = store.max_offset(TRANS_HALF_TOPIC, HALF_QUEUE_ID).0;
    let mut half = service.half_offset.get();
    if half > half_max {
        // The file is ahead of the queue (a store that lost its unflushed tail).
        log::warn!(
            "shard {}: transaction half offset {half} is past the queue end {half_max}, reset",
            shard.id()
        );
        half = half_max;
    }
    half = half.max(half_min);
    let read_offset = match window.read_offset {
        Some(o) => o,
        None => {
            let op_min = store.min_offset(TRANS_OP_HALF_TOPIC, OP_QUEUE_ID).0;
            let op_max = store.max_offset(TRANS_OP_HALF_TOPIC, OP_QUEUE_ID).0;
            // Not `clamp`: it panics should the queue ever report min > max.
            service.op_offset.get().max(op_min).min(op_max)
        }
    };
    window.read_offset = Some(read_offset);
    read_ops(shard, window, half).await;

    while half < half_max && !shard.is_stopping() {
        if window.done.remove(&half).is_some() {
            half += 1;
            continue;
        }
        // Ops written since the round began (or left unread while the window was full) may
        // name this half: read them before taking the slow path.
        let op_max = store.max_offset(TRANS_OP_HALF_TOPIC, OP_QUEUE_ID).0;
        if window.done.len() < OP_WINDOW_MAX && window.read_offset.is_some_and(|o| o < op_max) {
            read_ops(shard, window, half).await;
            if window.done.remove(&half).is_some() {
                half += 1;
                continue;
            }
        }
        match examine(shard, half, round_start_ms, window, pending).await {
            Step::Next => half += 1,
            Step::JumpTo(offset) => half = offset.max(half + 1),
            Step::Stop => break,
        }
        glommio::yield_if_needed().await;
    }
    window.done = window.done.split_off(&half);
    let next_op = window.read_offset.unwrap_or(read_offset);
    let op_offset = window
        .done
        .values()
        .copied()
        .min()
        .map_or(next_op, |o| o.min(next_op));
    service.set_offsets(half, op_offset);
}

/// Reads ops past `window.read_offset` into the window (half offsets below `half` are
/// already passed and ignored), until the op queue ends or the window is full.
async fn read_ops(shard: &Shard, window: &mut OpWindow, half: u64) {
    let store = shard.store();
    let Some(mut offset) = window.read_offset else {
        return;
    };
    while window.done.len() < OP_WINDOW_MAX && !shard.is_stopping() {
        if offset >= store.max_offset(TRANS_OP_HALF_TOPIC, OP_QUEUE_ID).0 {
            break;
        }
        let got = store
            .get(
                TRANS_OP_HALF_TOPIC,
                OP_QUEUE_ID,
                QueueOffset(offset),
                GetLimit {
                    count_max: OP_BATCH_COUNT_MAX,
                    bytes_max: 1 << 20,
                },
                &|_| true,
            )
            .await;
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                log::warn!(
                    "shard {}: op queue read at {offset} failed: {e}",
                    shard.id()
                );
                break;
            }
        };
        match got.status {
            GetStatus::Found => {}
            GetStatus::OffsetTooSmall | GetStatus::MessageWasRemoving => {
                offset = got.next_begin_offset.0.max(offset + 1);
                continue;
            }
            _ => break,
        }
        for record in &got.messages {
            let Ok(view) = engine::record::decode(record) else {
                continue;
            };
            let op_offset = view.queue_offset().0;
            for h in op_body_offsets(view.body()).filter(|h| *h >= half) {
                let entry = window.done.entry(h).or_insert(op_offset);
                *entry = (*entry).min(op_offset);
            }
        }
        if got.next_begin_offset.0 <= offset {
            break;
        }
        offset = got.next_begin_offset.0;
        glommio::yield_if_needed().await;
    }
    window.read_offset = Some(offset);
}

/// Looks at half `half`: skip it (decided, discarded), stop the round (too young), or put a
/// copy back and check it with its producer.
async fn examine(
    shard: &Shard,
    half: u64,
    round_start_ms: i64,
    window: &mut OpWindow,
    pending: &mut PendingCopies,
) -> Step {
    let config = &shard.context().config;
    let store = shard.store();
    let got = store
        .get(
            TRANS_HALF_TOPIC,
            HALF_QUEUE_ID,
            QueueOffset(half),
            GetLimit {
                count_max: 1,
                bytes_max: u32::MAX,
            },
            &|_| true,
        )
        .await;
    let got = match got {
        Ok(got) => got,
        Err(e) => {
            log::warn!("shard {}: half read at {half} failed: {e}", shard.id());
            return read_failed(shard, half, window);
        }
    };
    let record = match got.status {
        GetStatus::Found => match got.messages.into_iter().next() {
            Some(record) => record,
            None => return Step::Stop,
        },
        GetStatus::OffsetTooSmall | GetStatus::MessageWasRemoving => {
            log::warn!(
                "shard {}: half messages {half}..{} expired before a decision",
                shard.id(),
                got.next_begin_offset.0
            );
            return Step::JumpTo(got.next_begin_offset.0);
        }
        GetStatus::OffsetOverflowOne
        | GetStatus::OffsetOverflowBadly
        | GetStatus::NoMessageInQueue
        | GetStatus::NoMatchedLogicQueue => return Step::Stop,
        GetStatus::OffsetFoundNull | GetStatus::NoMatchedMessage => {
            return read_failed(shard, half, window);
        }
    };
    window.failed_half = None;
    let view = match engine::record::decode(&record) {
        Ok(view) => view,
        Err(e) => {
            log::warn!(
                "shard {}: half at {half} does not decode ({e:?}), skipped",
                shard.id()
            );
            return Step::Next;
        }
    };
    if view.store_timestamp_ms() >= round_start_ms {
        // Stored (or put back) during this round: the next round looks at it.
        return Step::Stop;
    }
    let properties = view.properties();
    let txn_id = transaction_id(properties).unwrap_or_default();
    let timeout_ms = i64::try_from(config.transaction_timeout_ms).unwrap_or(i64::MAX);
    let immunity_ms = engine::properties::get(properties, PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS)
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map(|s| s.saturating_mul(1_000));
    // Negative (a producer clock ahead of ours) means "check now", as in Java.
    let age_ms = round_start_ms - view.born_timestamp_ms();
    if (0..immunity_ms.unwrap_or(timeout_ms)).contains(&age_ms) {
        if immunity_ms.is_none() {
            // Halves are in store order: the ones after this are no older.
            return Step::Stop;
        }
        // A longer immunity than the rest: move it to the tail instead of blocking the queue.
        if is_decided(shard, txn_id).await {
            return Step::Next;
        }
        let check_times = check_times(properties);
        return match put_back(shard, &view, check_times, pending) {
            PutBack::Done(_) => Step::Next,
            PutBack::Dropped => Step::Next,
            PutBack::Retry => Step::Stop,
        };
    }
    if is_decided(shard, txn_id).await {
        return Step::Next;
    }
    let check_times = check_times(properties);
    if check_times >= config.transaction_check_max {
        let service = shard.transactions();
        service
            .discarded_count
            .set(service.discarded_count.get() + 1);
        log::warn!(
            "shard {}: half message {txn_id} (topic {}) discarded after {check_times} check-backs \
             without a decision",
            shard.id(),
            engine::properties::get(properties, PROPERTY_REAL_TOPIC).unwrap_or("?")
        );
        return Step::Next;
    }
    let reserved_ms = i64::from(config.file_reserved_time_hours).saturating_mul(3_600_000);
    if age_ms > reserved_ms {
        log::warn!(
            "shard {}: half message {txn_id} is older than fileReservedTime, skipped",
            shard.id()
        );
        return Step::Next;
    }
    match put_back(shard, &view, check_times.saturating_add(1), pending) {
        PutBack::Done(copy) => {
            send_check(shard, &view, &copy);
            Step::Next
        }
        PutBack::Dropped => Step::Next,
        PutBack::Retry => Step::Stop,
    }
}

fn check_times(properties: &str) -> u32 {
    engine::properties::get(properties, PROPERTY_TRANSACTION_CHECK_TIMES)
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

/// A half that cannot be read: try again next round, skip it after `HALF_READ_ATTEMPTS_MAX`.
fn read_failed(shard: &Shard, half: u64, window: &mut OpWindow) -> Step {
    let attempts = match window.failed_half {
        Some((h, n)) if h == half => n + 1,
        _ => 1,
    };
    if attempts < HALF_READ_ATTEMPTS_MAX {
        window.failed_half = Some((half, attempts));
        return Step::Stop;
    }
    window.failed_half = None;
    log::warn!(
        "shard {}: half at {half} unreadable in {attempts} rounds, skipped",
        shard.id()
    );
    Step::Next
}

/// A re-appended half copy: where it landed and the properties it carries.
struct HalfCopy {
    queue_offset: QueueOffset,
    commit_log_offset: CommitLogOffset,
    store_timestamp_ms: i64,
    properties: String,
}

enum PutBack {
    Done(HalfCopy),
    /// Never storable again (too large once the check count is added); logged.
    Dropped,
    /// The store refused for now (buffer full, disk full, stopping).
    Retry,
}

/// Appends a copy of a half with `TRANSACTION_CHECK_TIMES = check_times` to the half queue.
fn put_back(
    shard: &Shard,
    view: &engine::record::RecordView<'_>,
    check_times: u32,
    pending: &mut PendingCopies,
) -> PutBack {
    let mut props = Properties::parse(view.properties());
    props.set(PROPERTY_TRANSACTION_CHECK_TIMES, &check_times.to_string());
    if props.get(PROPERTY_TRAN_PREPARED_QUEUE_OFFSET).is_none() {
        props.set(
            PROPERTY_TRAN_PREPARED_QUEUE_OFFSET,
            &view.queue_offset().0.to_string(),
        );
    }
    let properties = props.encode();
    let msg = PutMessage {
        topic: TRANS_HALF_TOPIC,
        queue_id: HALF_QUEUE_ID,
        flag: view.flag(),
        body: view.body(),
        properties: &properties,
        sys_flag: view.sys_flag(),
        born_timestamp_ms: view.born_timestamp_ms(),
        born_host: view.born_host(),
        store_host: view.store_host(),
        reconsume_times: view.reconsume_times(),
        prepared_transaction_offset: 0,
    };
    match shard.store().put(&msg) {
        Ok(put) => {
            pending.end = Some(CommitLogOffset(
                put.commit_log_offset.0 + u64::from(put.size_bytes),
            ));
            pending.ticket = Some(put.ticket);
            PutBack::Done(HalfCopy {
                queue_offset: put.queue_offset,
                commit_log_offset: put.commit_log_offset,
                store_timestamp_ms: put.store_timestamp_ms,
                properties,
            })
        }
        Err(
            e @ (PutError::BodyTooLarge { .. }
            | PutError::PropertiesTooLong { .. }
            | PutError::TopicTooLong { .. }),
        ) => {
            log::warn!(
                "shard {}: half at {} cannot be put back ({e}), dropped",
                shard.id(),
                view.queue_offset().0
            );
            PutBack::Dropped
        }
        Err(e) => {
            log::warn!(
                "shard {}: half at {} not put back ({e}), retrying next round",
                shard.id(),
                view.queue_offset().0
            );
            PutBack::Retry
        }
    }
}

/// Sends CHECK_TRANSACTION_STATE (oneway) about `copy` to one live connection of the half's
/// producer group; with none online nothing is sent this round (as in Java).
fn send_check(shard: &Shard, view: &engine::record::RecordView<'_>, copy: &HalfCopy) {
    let properties = copy.properties.as_str();
    let Some(group) = engine::properties::get(properties, PROPERTY_PRODUCER_GROUP) else {
        log::warn!(
            "shard {}: half at {} has no PGROUP, nobody to check with",
            shard.id(),
            copy.queue_offset.0
        );
        return;
    };
    let real_topic = engine::properties::get(properties, PROPERTY_REAL_TOPIC).unwrap_or_default();
    let real_queue_id = engine::properties::get(properties, PROPERTY_REAL_QID)
        .and_then(|q| q.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let connections = shard.clients().producer_connections(group);
    let Some(index) = usize::try_from(shard.random_u32())
        .ok()
        .and_then(|r| r.checked_rem(connections.len()))
    else {
        log::info!(
            "shard {}: no producer of group {group} online to check half {}",
            shard.id(),
            copy.queue_offset.0
        );
        return;
    };
    let Some(conn) = connections.get(index) else {
        return;
    };
    // Body: the copy as a stored record, with its real topic and queue (Java's
    // MessageDecoder.encode of the half with REAL_TOPIC/REAL_QID restored).
    let msg = PutMessage {
        topic: real_topic,
        queue_id: QueueId(real_queue_id),
        flag: view.flag(),
        body: view.body(),
        properties,
        sys_flag: view.sys_flag(),
        born_timestamp_ms: view.born_timestamp_ms(),
        born_host: view.born_host(),
        store_host: view.store_host(),
        reconsume_times: view.reconsume_times(),
        prepared_transaction_offset: 0,
    };
    let mut body = BytesMut::new();
    engine::record::encode(
        &mut body,
        &msg,
        copy.queue_offset.0,
        copy.commit_log_offset.0,
        copy.store_timestamp_ms,
    );
    let offset_id = offset_msg_id(view.store_host(), copy.commit_log_offset);
    let msg_id = transaction_id(properties).unwrap_or(&offset_id).to_string();
    let mut cmd = RemotingCommand::request(RequestCode::CHECK_TRANSACTION_STATE)
        .with_ext("topic", real_topic)
        .with_ext("tranStateTableOffset", copy.queue_offset.0)
        .with_ext("commitLogOffset", copy.commit_log_offset.0)
        .with_ext("msgId", &msg_id)
        .with_ext("transactionId", &msg_id)
        .with_ext("offsetMsgId", &offset_id)
        .with_ext("bname", &shard.context().broker_name)
        .with_body(body.freeze());
    cmd.opaque = shard.next_opaque();
    cmd.mark_oneway();
    if conn.send(cmd) {
        let service = shard.transactions();
        service
            .checks_sent_count
            .set(service.checks_sent_count.get() + 1);
        log::debug!(
            "shard {}: checking transaction {msg_id} with producer group {group} (connection {})",
            shard.id(),
            conn.id()
        );
    } else {
        log::info!(
            "shard {}: check of transaction {msg_id} to connection {} dropped (full or closed)",
            shard.id(),
            conn.id()
        );
    }
}

/// Writes the scan position once every copy it steps over is durable; otherwise leaves it
/// dirty for the next round (a copy not known durable must not be stepped over after a crash).
async fn persist(shard: &Shard, pending: &mut PendingCopies) {
    let service = shard.transactions();
    if !service.is_dirty.get() {
        return;
    }
    let (half_offset, op_offset) = (service.half_offset.get(), service.op_offset.get());
    match pending.settle(shard.store()).await {
        Settled::Durable => {}
        Settled::NotYet => return,
        Settled::Failed(e) => {
            log::warn!(
                "shard {}: half copies not durable yet ({e}); transaction offsets not written",
                shard.id()
            );
            return;
        }
    }
    let mut v = service.version.get();
    v.counter = v.counter.wrapping_add(1);
    v.timestamp = now_ms();
    service.version.set(v);
    // Clear first: only this task moves the offsets, but a failed write must leave it dirty.
    service.is_dirty.set(false);
    let json = service.to_json(half_offset, op_offset);
    if let Err(e) = write_file_atomically(&service.path, json).await {
        service.is_dirty.set(true);
        log::warn!("shard {}: transaction offsets not written: {e}", shard.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_detection_follows_tran_msg_and_prepared_flag() {
        let tran = Properties::parse("TRAN_MSG\u{1}true\u{2}PGROUP\u{1}g\u{2}");
        assert!(is_half(&tran, 0, 0));
        assert!(is_half(&tran, tran_type::PREPARED, 0));
        let plain = Properties::parse("TAGS\u{1}a\u{2}");
        assert!(!is_half(&plain, 0, 0));
        assert!(is_half(&plain, tran_type::PREPARED, 0));
        let false_flag = Properties::parse("TRAN_MSG\u{1}false\u{2}");
        assert!(!is_half(&false_flag, 0, 0));
        let delayed_retry = Properties::parse("TRAN_MSG\u{1}true\u{2}DELAY\u{1}3\u{2}");
        assert!(!is_half(&delayed_retry, 0, 1));
        assert!(is_half(&delayed_retry, 0, 0));
    }

    #[test]
    fn park_half_records_the_real_destination_and_resets_the_type() {
        let mut props = Properties::parse("TRAN_MSG\u{1}true\u{2}UNIQ_KEY\u{1}U1\u{2}");
        let sys_flag = park_half(&mut props, tran_type::PREPARED | 0x2, "T", 3, "U1");
        assert_eq!(sys_flag, 0x2);
        let encoded = props.encode();
        assert_eq!(engine::properties::get(&encoded, "REAL_TOPIC"), Some("T"));
        assert_eq!(engine::properties::get(&encoded, "REAL_QID"), Some("3"));
        assert_eq!(
            engine::properties::get(&encoded, PROPERTY_TRANSACTION_ID),
            Some("U1")
        );
        assert_eq!(transaction_id(&encoded), Some("U1"));
        assert_eq!(transaction_id("__transactionId__\u{1}X\u{2}"), Some("X"));
        assert_eq!(transaction_id("TAGS\u{1}a\u{2}"), None);
    }

    #[test]
    fn op_bodies_parse_java_and_garbage() {
        assert_eq!(op_body_offsets(b"12,").collect::<Vec<_>>(), vec![12]);
        assert_eq!(op_body_offsets(b"1,2,3").collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(op_body_offsets(b"7").collect::<Vec<_>>(), vec![7]);
        assert_eq!(
            op_body_offsets(b"x,,-1,\xff,4,").collect::<Vec<_>>(),
            vec![4]
        );
        let many = "1,".repeat(OP_BODY_OFFSETS_MAX * 2);
        assert_eq!(
            op_body_offsets(many.as_bytes()).count(),
            OP_BODY_OFFSETS_MAX
        );
    }

    #[test]
    fn offsets_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = TransactionService::open(dir.path()).expect("open");
        assert_eq!(s.half_offset(), QueueOffset(0));
        s.set_offsets(5, 3);
        assert!(s.is_dirty.get());
        std::fs::write(dir.path().join("transactionOffset.json"), s.to_json(5, 3)).expect("write");
        let s2 = TransactionService::open(dir.path()).expect("reopen");
        assert_eq!(s2.half_offset(), QueueOffset(5));
        assert_eq!(s2.op_offset(), QueueOffset(3));
    }

    #[test]
    fn one_decision_per_transaction_id_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = TransactionService::open(dir.path()).expect("open");
        let first = s.begin_decision("T1").expect("not busy");
        assert!(first.is_some());
        assert!(s.begin_decision("T1").expect("not busy").is_none());
        assert!(s.begin_decision("T2").expect("not busy").is_some());
        drop(first);
        assert!(s.begin_decision("T1").expect("not busy").is_some());
    }
}
