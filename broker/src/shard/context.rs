//! `ShardContext`: what the runtime hands a shard when it opens it.
//!
//! Production leaves `store_disk` unset: the store opens on the real disk (glommio DMA files).
//! An in-process test sets it to a `SimDisk` to stall, fail and crash the store's I/O under a
//! real shard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use engine::disk::Disk;

use crate::config::BrokerConfig;
use crate::shard::control::ControlHandle;
use crate::shard::health::ShardHealth;

/// Everything a shard needs to know about its place in the process.
pub struct ShardContext {
    /// 0-based shard number (the channel mesh peer id).
    pub shard_id: u16,
    pub shard_count: u16,
    pub config: Rc<BrokerConfig>,
    /// `<brokerName>_<i>`: the broker name this shard registers under.
    pub broker_name: String,
    /// `brokerIP1:listenPort+i`: the address clients use (and the store host in records).
    pub advertised_addr: SocketAddr,
    /// `<storePathRootDir>/shard-<i>`.
    pub store_dir: PathBuf,
    /// Cross-shard control: broadcast topic changes, ask for a re-registration.
    pub control: ControlHandle,
    /// Heartbeat and stall count, shared with the supervisor.
    pub health: Arc<ShardHealth>,
    /// The disk the store opens on. None (production): the real disk under `store_dir`.
    /// Some: that disk (tests pass a `SimDisk`); the config files still go to `store_dir`.
    pub store_disk: Option<Rc<dyn Disk>>,
}

impl ShardContext {
    /// The context of shard `shard_id` of `config.shards`, derived from the config.
    pub fn new(
        shard_id: u16,
        config: Rc<BrokerConfig>,
        control: ControlHandle,
        health: Arc<ShardHealth>,
    ) -> Self {
        Self {
            shard_id,
            shard_count: config.shards,
            broker_name: config.shard_broker_name(shard_id),
            advertised_addr: config.advertised_addr(shard_id),
            store_dir: config.shard_store_dir(shard_id),
            config,
            control,
            health,
            store_disk: None,
        }
    }

    /// The same context with the store on `disk` instead of the real disk (for tests).
    pub fn with_store_disk(mut self, disk: Rc<dyn Disk>) -> Self {
        self.store_disk = Some(disk);
        self
    }
}
