//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361): the read path, REMOTING.md §2.3, §7.1, §7.3.
//!
//! A pull records the consumer's commit offset (COMMIT_OFFSET flag), reads the consume queue
//! from the requested offset, filters by tags code and then by the exact tag (or, for a SQL92
//! subscription, by its expression over each record's properties), and answers the stored
//! records concatenated. When entries were read but none matched, the answer is
//! PULL_RETRY_IMMEDIATELY with nextBeginOffset past them (§7.3). With nothing new and the SUSPEND flag set, the pull is held in
//! `long_poll` until an append to the queue or its suspend timeout, then runs once more
//! (without committing again) and answers whatever it finds.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use engine::{GetLimit, GetStatus, QueueId, QueueOffset};

use super::{field, field_opt, field_str, queue_id_field};
use crate::consumer_group::{ExpressionType, SubscriptionData};
use crate::error::BrokerError;
use crate::remoting::{RemotingCommand, ResponseCode};
use crate::shard::Shard;
use crate::topic::perm;

/// PullSysFlag bits.
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
}

/// Longest hold: under the Java client's 30 s pull RPC timeout with room to answer.
pub const SUSPEND_TIMEOUT_MAX_MS: u64 = 20_000;
/// Per-pull caps (Java's maxTransferCountOnMessageInMemory / BytesInMemory).
pub const PULL_COUNT_MAX: u32 = 32;
pub const PULL_BYTES_MAX: u32 = 256 * 1024;

struct PullHeader<'a> {
    consumer_group: &'a str,
    topic: &'a str,
    queue_id: u32,
    queue_offset: u64,
    max_msg_nums: u32,
    sys_flag: i32,
    commit_offset: i64,
    suspend_timeout_ms: u64,
    subscription: Option<&'a str>,
    sub_version: i64,
    expression_type: Option<&'a str>,
    max_msg_bytes: Option<u32>,
}

impl<'a> PullHeader<'a> {
    fn parse(req: &'a RemotingCommand) -> Result<Self, BrokerError> {
        let queue_offset: i64 = field(req, "queueOffset")?;
        let max_msg_nums: i32 = field(req, "maxMsgNums")?;
        let suspend: i64 = field_opt(req, "suspendTimeoutMillis")?.unwrap_or(0);
        let max_msg_bytes: Option<i64> = field_opt(req, "maxMsgBytes")?;
        Ok(PullHeader {
            consumer_group: field_str(req, "consumerGroup")?,
            topic: field_str(req, "topic")?,
            queue_id: queue_id_field(req)?,
            queue_offset: u64::try_from(queue_offset).map_err(|_| {
                BrokerError::InvalidParameter(format!("queueOffset {queue_offset} is negative"))
            })?,
            max_msg_nums: u32::try_from(max_msg_nums).unwrap_or(0),
            sys_flag: field_opt(req, "sysFlag")?.unwrap_or(0),
            commit_offset: field_opt(req, "commitOffset")?.unwrap_or(-1),
            suspend_timeout_ms: u64::try_from(suspend).unwrap_or(0),
            subscription: req.ext("subscription"),
            sub_version: field_opt(req, "subVersion")?.unwrap_or(0),
            expression_type: req.ext("expressionType"),
            max_msg_bytes: max_msg_bytes.and_then(|b| u32::try_from(b).ok()),
        })
    }

    fn has(&self, flag: i32) -> bool {
        self.sys_flag & flag == flag
    }
}

/// What one execution of the pull found.
struct PullOutcome {
    code: i32,
    status: GetStatus,
    next_begin_offset: u64,
    min_offset: u64,
    max_offset: u64,
    body: bytes::Bytes,
}

/// PULL_MESSAGE.
pub async fn pull_message(
    shard: &Rc<Shard>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let header = PullHeader::parse(req)?;
    let topic_config =
        shard
            .topics()
            .get(header.topic)
            .ok_or_else(|| BrokerError::TopicNotExist {
                topic: header.topic.to_string(),
            })?;
    if !perm::is_readable(topic_config.perm) {
        return Err(BrokerError::NoPermission(format!(
            "the topic[{}] pulling message is forbidden",
            header.topic
        )));
    }
    if header.queue_id >= topic_config.read_queue_nums {
        return Err(BrokerError::InvalidParameter(format!(
            "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
            header.queue_id, header.topic, topic_config.read_queue_nums, header.consumer_group
        )));
    }
    let subscription = subscription_of(shard, &header)?;
    if subscription.expression_type == ExpressionType::Sql92
        && !shard.context().config.enable_property_filter
    {
        return Err(super::client::sql92_disabled());
    }
    if header.has(pull_sys_flag::COMMIT_OFFSET) {
        if let Ok(offset) = u64::try_from(header.commit_offset) {
            shard
                .offsets()
                .commit(header.topic, header.consumer_group, header.queue_id, offset)?;
        }
    }

    let mut outcome = execute(shard, &header, &subscription).await?;
    let timeout_ms = header.suspend_timeout_ms.min(SUSPEND_TIMEOUT_MAX_MS);
    if outcome.code == ResponseCode::PULL_NOT_FOUND
        && header.has(pull_sys_flag::SUSPEND)
        && timeout_ms > 0
        && !shard.is_stopping()
    {
        match shard
            .long_polls()
            .hold(header.topic, header.queue_id, header.queue_offset)
        {
            Ok(hold) => {
                // An append may have landed while the read above was awaiting: wake at once.
                let max = shard
                    .store()
                    .max_offset(header.topic, QueueId(header.queue_id))
                    .0;
                if max > header.queue_offset {
                    shard
                        .long_polls()
                        .notify_append(header.topic, header.queue_id, max);
                }
                shard
                    .long_polls()
                    .wait(hold, Duration::from_millis(timeout_ms))
                    .await;
                outcome = execute(shard, &header, &subscription).await?;
            }
            Err(full) => {
                log::debug!("shard {}: pull not held: {full}", shard.id());
            }
        }
    }

    Ok(RemotingCommand::response(
        outcome.code,
        req.opaque,
        Some(status_name(outcome.status).into()),
    )
    .with_ext("suggestWhichBrokerId", 0)
    .with_ext("nextBeginOffset", outcome.next_begin_offset)
    .with_ext("minOffset", outcome.min_offset)
    .with_ext("maxOffset", outcome.max_offset)
    .with_body(outcome.body))
}

/// The subscription this pull filters by: the request's own (SUBSCRIPTION flag) or the one
/// the group registered by heartbeat.
fn subscription_of(
    shard: &Shard,
    header: &PullHeader<'_>,
) -> Result<SubscriptionData, BrokerError> {
    if header.has(pull_sys_flag::SUBSCRIPTION) {
        return SubscriptionData::from_expression(
            header.topic,
            header.subscription.unwrap_or("*"),
            ExpressionType::parse(header.expression_type)?,
            header.sub_version,
        );
    }
    shard
        .clients()
        .subscription(header.consumer_group, header.topic)
        .ok_or_else(|| BrokerError::SubscriptionNotExist {
            group: header.consumer_group.to_string(),
            topic: header.topic.to_string(),
        })
}

/// One read of the queue, mapped per REMOTING.md §7.3.
async fn execute(
    shard: &Shard,
    header: &PullHeader<'_>,
    subscription: &SubscriptionData,
) -> Result<PullOutcome, BrokerError> {
    let limit = GetLimit {
        count_max: header.max_msg_nums.clamp(1, PULL_COUNT_MAX),
        bytes_max: header
            .max_msg_bytes
            .unwrap_or(PULL_BYTES_MAX)
            .clamp(1, PULL_BYTES_MAX),
    };
    let filter = |tags_code: i64| subscription.matches_tags_code(tags_code);
    let result = shard
        .store()
        .get(
            header.topic,
            QueueId(header.queue_id),
            QueueOffset(header.queue_offset),
            limit,
            &filter,
        )
        .await?;
    let offset = header.queue_offset;
    let mut status = result.status;
    let mut body = bytes::Bytes::new();
    let code = match result.status {
        GetStatus::Found => {
            let kept: Vec<&bytes::Bytes> = result
                .messages
                .iter()
                .filter(|record| is_exact_match(subscription, record))
                .collect();
            if kept.is_empty() {
                status = GetStatus::NoMatchedMessage;
                ResponseCode::PULL_RETRY_IMMEDIATELY
            } else {
                let size = kept.iter().map(|r| r.len()).sum();
                let mut buf = BytesMut::with_capacity(size);
                for record in kept {
                    buf.extend_from_slice(record);
                }
                body = buf.freeze();
                ResponseCode::SUCCESS
            }
        }
        GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
            ResponseCode::PULL_RETRY_IMMEDIATELY
        }
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => ResponseCode::PULL_NOT_FOUND,
        GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue => {
            if offset == 0 {
                ResponseCode::PULL_NOT_FOUND
            } else {
                ResponseCode::PULL_OFFSET_MOVED
            }
        }
        GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
            ResponseCode::PULL_OFFSET_MOVED
        }
    };
    Ok(PullOutcome {
        code,
        status,
        next_begin_offset: result.next_begin_offset.0,
        min_offset: result.min_offset.0,
        max_offset: result.max_offset.0,
        body,
    })
}

/// Second filter: the record's TAGS must be one the subscription names, or its properties
/// must satisfy the SQL92 expression. A record that does not decode is passed on (the client
/// decodes and judges it).
fn is_exact_match(subscription: &SubscriptionData, record: &[u8]) -> bool {
    if subscription.sql92.is_none() && subscription.is_match_all() {
        return true;
    }
    let Ok(view) = engine::record::decode(record) else {
        return true;
    };
    match &subscription.sql92 {
        Some(filter) => filter.matches_properties(view.properties()),
        None => subscription.matches_tag(engine::properties::get(view.properties(), "TAGS")),
    }
}

/// RocketMQ's GetMessageStatus names, used as the pull response remark.
pub fn status_name(status: GetStatus) -> &'static str {
    match status {
        GetStatus::Found => "FOUND",
        GetStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        GetStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
        GetStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
        GetStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        GetStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
        GetStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
        GetStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        GetStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
    }
}
