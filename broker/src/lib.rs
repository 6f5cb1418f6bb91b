//! Petrel broker library (being assembled).

pub mod config;
pub mod consumer_group;
pub mod error;
pub mod long_poll;
pub mod namesrv;
pub mod processor;
pub mod remoting;
pub mod runtime;
pub mod shard;
pub mod topic;
