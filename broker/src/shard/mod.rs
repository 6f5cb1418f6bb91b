//! A shard: one core's logical broker (`<brokerName>_<i>`). It is the sole owner of that
//! core's Store, topic table, consumer groups, committed offsets, queue locks and held pulls;
//! nothing here crosses cores. The runtime hands it requests (`handle`), tells it about closed
//! connections and control messages from other shards, and shuts it down.
//!
//! Invariants: no RefCell borrow is held across an `.await` (every table method copies out
//! what it needs); every table is bounded; a topic created here on behalf of a client is
//! broadcast to the other shards and re-registered with the nameserver.

pub mod context;
pub mod control;
pub mod health;
pub mod route_wait;

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use engine::clock::SystemClock;
use engine::{Background, Store};

use crate::consumer_group::{ClientTable, ConsumerOffsetTable, LockTable, MessageModel};
use crate::error::BrokerError;
use crate::long_poll::LongPollTable;
use crate::remoting::connection::ConnectionCtx;
use crate::remoting::{RemotingCommand, RequestCode};
use crate::schedule::Scheduler;
use crate::topic::{self, TopicConfig, TopicTable, Upsert};
use crate::transaction::TransactionService;

pub use context::ShardContext;
pub use control::ControlMessage;

/// How often offsets (and changed topics) are written, members expired and locks swept.
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 5_000;
/// Bound on pulls held for long polling on one shard.
pub const HELD_PULLS_MAX: usize = 16_384;

/// Milliseconds since the Unix epoch (wall clock, as RocketMQ stores).
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a topic change stays on this shard or goes to all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// Retry/DLQ topics: each shard creates its own when a group's clients reach it.
    ThisShard,
    /// User topics: every shard hosts the topic's queues.
    AllShards,
}

/// One core's broker.
pub struct Shard {
    ctx: ShardContext,
    store: Rc<Store>,
    topics: TopicTable,
    is_topics_dirty: Cell<bool>,
    clients: ClientTable,
    offsets: ConsumerOffsetTable,
    locks: LockTable,
    long_polls: LongPollTable,
    /// Delayed delivery (SCHEDULE_TOPIC_XXXX) and its task.
    schedule: Scheduler,
    /// Half messages (transactions) and the check-back task.
    transactions: TransactionService,
    random_state: Cell<u64>,
    uniq_counter: Cell<u16>,
    next_opaque: Cell<i32>,
    is_stopping: Cell<bool>,
    /// One metadata write at a time (housekeeping and shutdown both persist).
    persist_gate: glommio::sync::Semaphore,
    /// Request counters for GET_BROKER_RUNTIME_INFO and the metrics endpoint.
    metrics: crate::metrics::ShardMetrics,
    /// Sends that auto-create a topic wait here for its route to list every shard.
    route_wait: route_wait::RouteWait,
}

impl Shard {
    /// Opens the shard's store (on `ctx.store_disk` if set, else the real disk) and metadata,
    /// creates the system topics, and starts the housekeeping task (offset persistence every
    /// 5 s, member expiry, lock sweep).
    pub async fn open(ctx: ShardContext) -> Result<Rc<Shard>, BrokerError> {
        let config_dir = ctx.store_dir.join("config");
        std::fs::create_dir_all(&config_dir).map_err(|source| BrokerError::Io {
            op: "create directory",
            path: config_dir.clone(),
            source,
        })?;
        // The new directory's entry must survive a power loss with the files renamed into it.
        crate::config_file::sync_parent_dir(&config_dir).await?;
        crate::config_file::remove_stale_temp_files(&config_dir)?;
        let store_config = ctx.config.store_config(ctx.store_dir.clone());
        let opened = match &ctx.store_disk {
            None => Store::open(store_config).await,
            Some(disk) => {
                Store::open_with(
                    store_config,
                    disk.clone(),
                    Rc::new(SystemClock),
                    Background::Timers,
                )
                .await
            }
        };
        let (store, _report) = opened.map_err(|source| BrokerError::StoreOpen {
            path: ctx.store_dir.clone(),
            source,
        })?;
        let system_topics = topic::system_topics(
            &ctx.config.broker_cluster_name,
            &ctx.broker_name,
            ctx.config.auto_create_topic_enable,
            ctx.config.default_topic_queue_nums,
        );
        let topics = TopicTable::open(&config_dir, system_topics, now_ms())?;
        let offsets = ConsumerOffsetTable::open(&config_dir)?;
        let schedule = Scheduler::open(&config_dir)?;
        let transactions = TransactionService::open(&config_dir)?;
        let seed = u64::try_from(now_ms()).unwrap_or(1) ^ (u64::from(ctx.shard_id) << 48) | 1;
        let route_wait = route_wait::RouteWait::new(ctx.config.registration_targets());
        let shard = Rc::new(Shard {
            route_wait,
            ctx,
            store,
            topics,
            is_topics_dirty: Cell::new(false),
            clients: ClientTable::new(),
            offsets,
            locks: LockTable::new(),
            long_polls: LongPollTable::new(HELD_PULLS_MAX),
            schedule,
            transactions,
            random_state: Cell::new(seed),
            uniq_counter: Cell::new(0),
            next_opaque: Cell::new(1),
            is_stopping: Cell::new(false),
            persist_gate: glommio::sync::Semaphore::new(1),
            metrics: crate::metrics::ShardMetrics::new(),
        });
        shard.topics.persist().await?;
        glommio::spawn_local(housekeeping(Rc::downgrade(&shard))).detach();
        shard.schedule.start(Rc::downgrade(&shard));
        shard.transactions.start(Rc::downgrade(&shard));
        log::info!(
            "shard {} ({}) open at {} with {} topics",
            shard.ctx.shard_id,
            shard.ctx.broker_name,
            shard.ctx.store_dir.display(),
            shard.topics.len()
        );
        Ok(shard)
    }

    /// One request in, at most one response out (None for oneway requests).
    pub async fn handle(
        self: &Rc<Self>,
        conn: &Rc<ConnectionCtx>,
        req: RemotingCommand,
    ) -> Option<RemotingCommand> {
        crate::processor::dispatch(self, conn, req).await
    }

    /// A client connection ended: it leaves every group; groups that lost a member are told.
    pub fn connection_closed(&self, conn: &Rc<ConnectionCtx>) {
        for group in self.clients.remove_connection(conn.id()) {
            self.notify_consumer_ids_changed(&group);
        }
    }

    /// TopicConfigSerializeWrapper JSON for REGISTER_BROKER.
    pub fn topic_config_wrapper_json(&self) -> Bytes {
        Bytes::from(self.topics.wrapper_json())
    }

    /// A control message from another shard. A topic change is written to topics.json before
    /// this shard re-registers: a route that lists this shard for a new topic (what an
    /// auto-creating send waits for before it answers) is one that survives a crash here.
    pub async fn apply_control(&self, msg: ControlMessage) {
        let is_changed = match msg {
            ControlMessage::TopicUpserted(config) => {
                let name = config.topic_name.clone();
                match self.topics.upsert(config, now_ms()) {
                    Ok(Upsert::Unchanged) => false,
                    Ok(_) => true,
                    Err(e) => {
                        log::warn!("shard {}: topic {name} not applied: {e}", self.id());
                        false
                    }
                }
            }
            ControlMessage::TopicDeleted(name) => self.delete_topic_locally(&name),
        };
        if !is_changed {
            return;
        }
        self.persist_topics_or_retry().await;
        self.ctx.control.request_register();
    }

    /// Writes topics.json now, one metadata writer at a time (so an older snapshot never lands
    /// after a newer one); on failure housekeeping retries.
    async fn persist_topics_or_retry(&self) {
        let written = match self.persist_gate.acquire_permit(1).await {
            Ok(_permit) => self.topics.persist().await,
            Err(_) => Err(BrokerError::ServiceNotAvailable(
                "the shard is stopping".to_string(),
            )),
        };
        if let Err(e) = written {
            self.is_topics_dirty.set(true);
            log::warn!(
                "shard {}: topics.json not written, will retry: {e}",
                self.id()
            );
        }
    }

    /// First step of a graceful stop: held pulls answer at once and no new pull is held, so
    /// the runtime can drain in-flight requests before `shutdown`.
    pub fn begin_shutdown(&self) {
        self.is_stopping.set(true);
        self.long_polls.release_all();
        self.schedule.wake();
        self.transactions.wake();
    }

    /// Persists offsets and topics and shuts the store down (calls `begin_shutdown` first).
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        // Stops delayed delivery; the task writes delayOffset.json before it returns.
        self.schedule.stop().await;
        // Stops the check-back task; it writes transactionOffset.json before it returns.
        self.transactions.stop().await;
        let _permit = self.persist_gate.acquire_permit(1).await;
        if let Err(e) = self.offsets.persist_if_dirty(now_ms()).await {
            log::error!(
                "shard {}: offsets not persisted at shutdown: {e}",
                self.id()
            );
        }
        if let Err(e) = self.topics.persist().await {
            log::error!("shard {}: topics not persisted at shutdown: {e}", self.id());
        }
        if let Err(e) = self.store.shutdown().await {
            log::error!("shard {}: store shutdown: {e}", self.id());
        }
    }

    // ---- for processors ----

    pub fn id(&self) -> u16 {
        self.ctx.shard_id
    }

    pub fn context(&self) -> &ShardContext {
        &self.ctx
    }

    pub fn store(&self) -> &Rc<Store> {
        &self.store
    }

    pub fn topics(&self) -> &TopicTable {
        &self.topics
    }

    pub fn clients(&self) -> &ClientTable {
        &self.clients
    }

    pub fn offsets(&self) -> &ConsumerOffsetTable {
        &self.offsets
    }

    pub fn locks(&self) -> &LockTable {
        &self.locks
    }

    pub fn long_polls(&self) -> &LongPollTable {
        &self.long_polls
    }

    pub fn schedule(&self) -> &Scheduler {
        &self.schedule
    }

    pub fn transactions(&self) -> &TransactionService {
        &self.transactions
    }

    pub fn metrics(&self) -> &crate::metrics::ShardMetrics {
        &self.metrics
    }

    /// Opaque for a server-initiated request (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE).
    pub fn next_opaque(&self) -> i32 {
        let opaque = self.next_opaque.get();
        self.next_opaque.set(opaque.wrapping_add(1));
        opaque
    }

    pub fn is_stopping(&self) -> bool {
        self.is_stopping.get()
    }

    /// A pseudo-random number (xorshift64*), for picking queues.
    pub fn random_u32(&self) -> u32 {
        let mut x = self.random_state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state.set(x);
        // The high half of the product is the well-mixed part.
        u32::try_from(x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).unwrap_or(0)
    }

    /// Next counter for broker-generated UNIQ_KEYs.
    pub fn next_uniq_counter(&self) -> u16 {
        let c = self.uniq_counter.get();
        self.uniq_counter.set(c.wrapping_add(1));
        c
    }

    /// Creates or updates a topic, persists the table and announces the change: to the other
    /// shards (user topics) and to the nameserver (re-register now).
    pub async fn upsert_topic(
        &self,
        config: TopicConfig,
        announce: Announce,
    ) -> Result<Upsert, BrokerError> {
        let outcome = self.topics.upsert(config.clone(), now_ms())?;
        if outcome == Upsert::Unchanged {
            return Ok(outcome);
        }
        self.persist_topics_or_retry().await;
        if announce == Announce::AllShards {
            self.ctx
                .control
                .broadcast(ControlMessage::TopicUpserted(config));
        }
        self.ctx.control.request_register();
        Ok(outcome)
    }

    /// Waits until every nameserver's route for `topic` lists every shard of this process
    /// (`route_wait`), at most `syncFlushTimeout`; past it, SYSTEM_BUSY.
    pub async fn wait_topic_routed(&self, topic: &str) -> Result<(), BrokerError> {
        let names: Vec<String> = (0..self.ctx.shard_count)
            .map(|i| self.ctx.config.shard_broker_name(i))
            .collect();
        let timeout = Duration::from_millis(self.ctx.config.sync_flush_timeout_ms);
        self.route_wait
            .wait(topic, &names, timeout)
            .await
            .map_err(|e| {
                log::warn!(
                    "shard {}: route of new topic {topic} not complete ({e:?}) within {timeout:?}",
                    self.id()
                );
                BrokerError::SystemBusy(format!(
                    "topic {topic} created, but its route does not list every broker yet"
                ))
            })
    }

    /// True while a send waits for `topic`'s route to list every shard.
    pub fn is_route_pending(&self, topic: &str) -> bool {
        self.route_wait.is_pending(topic)
    }

    /// Deletes a topic here and on every other shard.
    pub async fn delete_topic(&self, topic: &str) -> Result<bool, BrokerError> {
        let existed = self.delete_topic_locally(topic);
        if existed {
            self.persist_topics_or_retry().await;
            self.ctx
                .control
                .broadcast(ControlMessage::TopicDeleted(topic.to_string()));
            self.ctx.control.request_register();
        }
        Ok(existed)
    }

    fn delete_topic_locally(&self, topic: &str) -> bool {
        let existed = self.topics.remove(topic, now_ms());
        if existed {
            self.store.delete_topic(topic);
            self.offsets.remove_topic(topic);
            self.long_polls.release_topic(topic);
            self.is_topics_dirty.set(true);
        }
        existed
    }

    /// Makes sure `%RETRY%<group>` exists on this shard (1 queue, read-write).
    pub async fn ensure_retry_topic(&self, group: &str) -> Result<TopicConfig, BrokerError> {
        self.ensure_group_topic(topic::retry_topic(group)).await
    }

    /// Makes sure `%DLQ%<group>` exists on this shard (1 queue, read-write).
    pub async fn ensure_dlq_topic(&self, group: &str) -> Result<TopicConfig, BrokerError> {
        self.ensure_group_topic(topic::dlq_topic(group)).await
    }

    async fn ensure_group_topic(&self, name: String) -> Result<TopicConfig, BrokerError> {
        if let Some(config) = self.topics.get(&name) {
            return Ok(config);
        }
        let config = TopicConfig::new(&name, 1, topic::perm::READ | topic::perm::WRITE);
        self.upsert_topic(config.clone(), Announce::ThisShard)
            .await?;
        Ok(config)
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member of a clustering group.
    pub fn notify_consumer_ids_changed(&self, group: &str) {
        if self.clients.message_model(group) == Some(MessageModel::Broadcasting) {
            return;
        }
        for conn in self.clients.consumer_connections(group) {
            let opaque = self.next_opaque.get();
            self.next_opaque.set(opaque.wrapping_add(1));
            let mut cmd = RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED)
                .with_ext("consumerGroup", group);
            cmd.opaque = opaque;
            cmd.mark_oneway();
            if !conn.send(cmd) {
                log::debug!(
                    "shard {}: notify to connection {} dropped",
                    self.id(),
                    conn.id()
                );
            }
        }
    }

    async fn housekeeping_tick(&self) {
        let Ok(_permit) = self.persist_gate.acquire_permit(1).await else {
            return;
        };
        let now = now_ms();
        if let Err(e) = self.offsets.persist_if_dirty(now).await {
            log::warn!("shard {}: consumer offsets not persisted: {e}", self.id());
        }
        if self.is_topics_dirty.replace(false) {
            if let Err(e) = self.topics.persist().await {
                self.is_topics_dirty.set(true);
                log::warn!("shard {}: topics not persisted: {e}", self.id());
            }
        }
        for group in self.clients.expire(now) {
            self.notify_consumer_ids_changed(&group);
        }
        self.locks.sweep(now);
    }
}

/// The connection layer's entry points (`remoting::connection::serve`).
impl crate::remoting::connection::RequestHandler for Shard {
    async fn handle(
        self: &Rc<Self>,
        conn: &Rc<ConnectionCtx>,
        req: RemotingCommand,
    ) -> Option<RemotingCommand> {
        crate::processor::dispatch(self, conn, req).await
    }

    fn connection_closed(&self, conn: &Rc<ConnectionCtx>) {
        Shard::connection_closed(self, conn);
    }
}

/// Runs until the shard is dropped or stopping.
async fn housekeeping(shard: Weak<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(HOUSEKEEPING_INTERVAL_MS)).await;
        let Some(shard) = shard.upgrade() else {
            return;
        };
        if shard.is_stopping() {
            return;
        }
        shard.housekeeping_tick().await;
    }
}
