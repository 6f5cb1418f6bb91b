//! Petrel's broker: a RocketMQ-remoting server, one shard per core, with an embedded
//! nameserver.
//!
//! # The life of a request
//!
//! 1. `runtime` starts one pinned glommio executor per shard. Shard `i` listens on
//!    `listenPort + i` and registers with the nameserver as broker `<brokerName>_<i>`, so
//!    RocketMQ clients send each request straight to the shard that owns the queue.
//! 2. `remoting::connection` reads the socket in large chunks; `remoting::frame` checks a
//!    frame is whole without allocating; `remoting::command` parses it (`remoting::header`:
//!    JSON or ROCKETMQ binary) into a [`remoting::RemotingCommand`] whose body is a zero-copy
//!    slice of the read buffer.
//! 3. Each request runs in its own task (bounded per connection; over the bound: SYSTEM_BUSY)
//!    calling `Shard::handle`, which `processor` dispatches by request code to the store
//!    (`engine`), the topic table (`topic`), consumer groups (`consumer_group`) or held pulls
//!    (`long_poll`). `error::BrokerError` becomes the response code and remark in one place.
//! 4. The response goes to the connection's writer task, which batches everything ready into
//!    one write. Oneway requests are never answered.
//!
//! Control-plane events (topic created or deleted) cross shards through `shard::control`, in
//! bounded `mailbox`es that wake the receiving shard (no polling); message bodies never do. The
//! main thread runs `runtime::supervisor`: every shard up and registered before `ready`, a
//! bounded shutdown, and a stall detector fed by each shard's heartbeat (`shard::health`). The nameserver (`namesrv`) is a request handler like a shard and
//! runs on shard 0 (or standalone: `petrel namesrv`). `config` turns broker.conf, flags and
//! the environment into one validated `config::BrokerConfig`.

pub mod admin_cli;
pub mod background;
pub mod config;
pub mod config_file;
pub mod consumer_group;
pub mod error;
pub mod error_text;
pub mod filter;
pub mod listener;
pub mod long_poll;
pub mod mailbox;
pub mod metrics;
pub mod namesrv;
pub mod processor;
pub mod remoting;
pub mod runtime;
pub mod schedule;
pub mod shard;
pub mod topic;
pub mod transaction;
