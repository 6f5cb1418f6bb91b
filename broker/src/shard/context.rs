//! `ShardContext`: what the runtime hands a shard when it opens it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

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
        }
    }
}
