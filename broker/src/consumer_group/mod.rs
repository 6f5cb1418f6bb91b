//! Consumer groups of one shard: who is a member and what it subscribes to (`members`,
//! `subscription`), where each group stands in each queue (`offsets`), and orderly-consume
//! queue locks (`lock`). Retry and dead-letter routing lives in `processor/send.rs`
//! (CONSUMER_SEND_MSG_BACK) and uses the topic names from `crate::topic`.

pub mod lock;
pub mod members;
pub mod offsets;
pub mod subscription;

pub use lock::{LockTable, MessageQueue};
pub use members::{ClientTable, ConsumerRegistration, MessageModel};
pub use offsets::ConsumerOffsetTable;
pub use subscription::{ExpressionType, SubscriptionData};
