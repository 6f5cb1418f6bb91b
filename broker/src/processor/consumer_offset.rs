//! Offsets: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30),
//! GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME (32).
//! REMOTING.md §2.4 and §7.2.

use engine::{QueueId, QueueOffset};

use super::{field, field_bool, field_str, queue_id_field, success};
use crate::error::BrokerError;
use crate::remoting::RemotingCommand;
use crate::shard::Shard;

/// QUERY_CONSUMER_OFFSET: the committed offset; with none, 0 when the queue still starts at 0
/// and the client allows it (`setZeroIfNotFound`, default true), else QUERY_NOT_FOUND.
pub fn query_consumer_offset(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let group = field_str(req, "consumerGroup")?;
    let topic = field_str(req, "topic")?;
    let queue_id = queue_id_field(req)?;
    if let Some(offset) = shard.offsets().query(topic, group, queue_id) {
        return Ok(success(req).with_ext("offset", offset));
    }
    let is_zero_allowed =
        req.ext("setZeroIfNotFound").is_none() || field_bool(req, "setZeroIfNotFound");
    if is_zero_allowed && shard.store().min_offset(topic, QueueId(queue_id)).0 == 0 {
        return Ok(success(req).with_ext("offset", 0));
    }
    Err(BrokerError::QueryNotFound(
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first".to_string(),
    ))
}

/// UPDATE_CONSUMER_OFFSET (often oneway).
pub fn update_consumer_offset(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let group = field_str(req, "consumerGroup")?;
    let topic = field_str(req, "topic")?;
    let queue_id = queue_id_field(req)?;
    let offset: i64 = field(req, "commitOffset")?;
    let Some(config) = shard.topics().get(topic) else {
        return Err(BrokerError::TopicNotExist {
            topic: topic.to_string(),
        });
    };
    if queue_id >= config.queue_nums() {
        return Err(BrokerError::InvalidParameter(format!(
            "queueId[{queue_id}] is illegal for topic[{topic}]"
        )));
    }
    let offset = u64::try_from(offset)
        .map_err(|_| BrokerError::InvalidParameter(format!("commitOffset {offset} is negative")))?;
    shard.offsets().commit(topic, group, queue_id, offset)?;
    Ok(success(req))
}

/// GET_MAX_OFFSET: the next offset to be written (0 for an empty or unknown queue).
pub fn get_max_offset(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let topic = field_str(req, "topic")?;
    let queue_id = queue_id_field(req)?;
    let offset = shard.store().max_offset(topic, QueueId(queue_id));
    Ok(success(req).with_ext("offset", offset.0))
}

/// GET_MIN_OFFSET: the first offset still held.
pub fn get_min_offset(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let topic = field_str(req, "topic")?;
    let queue_id = queue_id_field(req)?;
    let offset = shard.store().min_offset(topic, QueueId(queue_id));
    Ok(success(req).with_ext("offset", offset.0))
}

/// SEARCH_OFFSET_BY_TIMESTAMP: the first offset stored at or after `timestamp` (the queue's
/// max offset if none). `boundaryType=UPPER` is answered the same way.
pub async fn search_offset_by_timestamp(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let topic = field_str(req, "topic")?;
    let queue_id = queue_id_field(req)?;
    let timestamp_ms: i64 = field(req, "timestamp")?;
    let offset = shard
        .store()
        .offset_by_time(topic, QueueId(queue_id), timestamp_ms)
        .await?;
    Ok(success(req).with_ext("offset", offset.0))
}

/// GET_EARLIEST_MSG_STORETIME: store time of the message at the queue's min offset, or -1.
pub async fn get_earliest_msg_store_time(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let topic = field_str(req, "topic")?;
    let queue_id = QueueId(queue_id_field(req)?);
    let min = shard.store().min_offset(topic, queue_id);
    let limit = engine::GetLimit {
        count_max: 1,
        bytes_max: u32::MAX,
    };
    let result = shard
        .store()
        .get(topic, queue_id, QueueOffset(min.0), limit, &|_| true)
        .await?;
    let timestamp_ms = result
        .messages
        .first()
        .and_then(|r| {
            engine::record::decode(r)
                .ok()
                .map(|v| v.store_timestamp_ms())
        })
        .unwrap_or(-1);
    Ok(success(req).with_ext("timestamp", timestamp_ms))
}
