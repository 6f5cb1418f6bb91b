//! `BrokerError`: everything a processor can fail with. `processor/mod.rs` is the one place
//! where it becomes a response: `response_code()` picks the wire code and `Display` is the
//! remark. Variants state facts; their text follows the Java broker's remarks where clients or
//! operators are known to read them.

use std::path::PathBuf;

use engine::PutError;

use crate::remoting::ResponseCode;

/// A request that could not be served, or a shard that could not open.
#[derive(thiserror::Error, Debug)]
pub enum BrokerError {
    /// A required header field is missing or does not parse.
    #[error("the custom field <{field}> is null or invalid: {reason}")]
    HeaderFieldInvalid { field: &'static str, reason: String },
    /// Bad topic name, queue id out of range, bad body, ...
    #[error("{0}")]
    InvalidParameter(String),
    #[error("topic[{topic}] not exist, apply first please!")]
    TopicNotExist { topic: String },
    #[error("{0}")]
    NoPermission(String),
    #[error("{0}")]
    MessageIllegal(String),
    /// The store refused the write (mapped per variant, REMOTING.md §2.2 step 6).
    #[error("{}", put_remark(.0))]
    Put(#[from] PutError),
    /// A read from the store failed.
    #[error("store read failed: {0}")]
    Get(#[from] engine::GetError),
    #[error("subscription group not exist, {group}")]
    SubscriptionGroupNotExist { group: String },
    #[error("the consumer's subscription not exist, group: {group} topic: {topic}")]
    SubscriptionNotExist { group: String, topic: String },
    #[error("parse the consumer's subscription failed: {0}")]
    SubscriptionParseFailed(String),
    #[error("{0}")]
    QueryNotFound(String),
    #[error(" request type {code} not supported")]
    RequestCodeNotSupported { code: i32 },
    #[error("{0}")]
    SystemBusy(String),
    #[error("{0}")]
    ServiceNotAvailable(String),
    #[error("{0}")]
    SystemError(String),
    /// A JSON request body that does not parse.
    #[error("cannot decode the {what} body: {source}")]
    BodyDecode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The shard's store did not open.
    #[error("cannot open the store at {path}: {source}")]
    StoreOpen {
        path: PathBuf,
        #[source]
        source: engine::OpenError,
    },
    /// A metadata file (topics.json, consumerOffset.json) could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A metadata file that exists but does not parse.
    #[error("cannot parse {path}: {source}")]
    ConfigFileInvalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn put_remark(e: &PutError) -> String {
    match e {
        PutError::BodyTooLarge { size, max } => format!(
            "the message is illegal, the body size {size}B is larger than maxMessageSize {max}B"
        ),
        PutError::PropertiesTooLong { size } => {
            format!("the message is illegal, the properties size {size}B is larger than 32767B")
        }
        PutError::TopicTooLong { size } => {
            format!("the message is illegal, the topic length {size} is larger than 127")
        }
        PutError::BufferFull => {
            "[REJECTREQUEST]system busy, start flow control for a while (append buffer full)"
                .to_string()
        }
        PutError::DiskFull => {
            "service not available now: the broker's disk is full, writes are refused".to_string()
        }
        PutError::Poisoned => {
            "service not available now: the message store is poisoned by an I/O error".to_string()
        }
        PutError::ShuttingDown => {
            "service not available now: the message store has been shut down".to_string()
        }
    }
}

impl BrokerError {
    /// The one mapping from an error to the wire (REMOTING.md §3).
    pub fn response_code(&self) -> i32 {
        match self {
            BrokerError::HeaderFieldInvalid { .. } | BrokerError::InvalidParameter(_) => {
                ResponseCode::INVALID_PARAMETER
            }
            BrokerError::TopicNotExist { .. } => ResponseCode::TOPIC_NOT_EXIST,
            BrokerError::NoPermission(_) => ResponseCode::NO_PERMISSION,
            BrokerError::MessageIllegal(_) => ResponseCode::MESSAGE_ILLEGAL,
            BrokerError::Put(e) => match e {
                PutError::BodyTooLarge { .. }
                | PutError::PropertiesTooLong { .. }
                | PutError::TopicTooLong { .. } => ResponseCode::MESSAGE_ILLEGAL,
                PutError::BufferFull => ResponseCode::SYSTEM_BUSY,
                PutError::DiskFull | PutError::Poisoned | PutError::ShuttingDown => {
                    ResponseCode::SERVICE_NOT_AVAILABLE
                }
            },
            BrokerError::SubscriptionGroupNotExist { .. } => {
                ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST
            }
            BrokerError::SubscriptionNotExist { .. } => ResponseCode::SUBSCRIPTION_NOT_EXIST,
            BrokerError::SubscriptionParseFailed(_) => ResponseCode::SUBSCRIPTION_PARSE_FAILED,
            BrokerError::QueryNotFound(_) => ResponseCode::QUERY_NOT_FOUND,
            BrokerError::RequestCodeNotSupported { .. } => ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
            BrokerError::SystemBusy(_) => ResponseCode::SYSTEM_BUSY,
            BrokerError::ServiceNotAvailable(_) => ResponseCode::SERVICE_NOT_AVAILABLE,
            BrokerError::Get(_)
            | BrokerError::SystemError(_)
            | BrokerError::BodyDecode { .. }
            | BrokerError::StoreOpen { .. }
            | BrokerError::Io { .. }
            | BrokerError::ConfigFileInvalid { .. } => ResponseCode::SYSTEM_ERROR,
        }
    }

    /// A missing required header field.
    pub fn missing(field: &'static str) -> Self {
        BrokerError::HeaderFieldInvalid {
            field,
            reason: "missing".to_string(),
        }
    }
}
