//! Message lookups: QUERY_MESSAGE (12, by key or UNIQ_KEY through the index) and
//! VIEW_MESSAGE_BY_ID (33, by commitlog offset). REMOTING.md §2.4.

use bytes::BytesMut;
use engine::CommitLogOffset;

use super::{field, field_bool, field_str, success};
use crate::error::BrokerError;
use crate::remoting::RemotingCommand;
use crate::shard::Shard;

/// Java's `defaultQueryMaxNum` (used for unique-key queries) and `maxMsgsNumBatch` (cap).
pub const QUERY_COUNT_DEFAULT: usize = 32;
pub const QUERY_COUNT_MAX: usize = 64;

/// QUERY_MESSAGE: stored records whose KEYS (or UNIQ_KEY) match, within the time range.
pub async fn query_message(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let topic = field_str(req, "topic")?;
    let key = field_str(req, "key")?;
    let max_num: i32 = field(req, "maxNum")?;
    let begin_ms: i64 = field(req, "beginTimestamp")?;
    let end_ms: i64 = field(req, "endTimestamp")?;
    let count_max = if field_bool(req, "_UNIQUE_KEY_QUERY") {
        QUERY_COUNT_DEFAULT
    } else {
        usize::try_from(max_num).unwrap_or(0).min(QUERY_COUNT_MAX)
    };
    let records = shard
        .store()
        .query_by_key(topic, key, count_max, begin_ms, end_ms)
        .await?;
    if records.is_empty() {
        return Err(BrokerError::QueryNotFound(
            "can not find message, maybe time range not correct".to_string(),
        ));
    }
    let mut body = BytesMut::with_capacity(records.iter().map(|r| r.len()).sum());
    for r in &records {
        body.extend_from_slice(r);
    }
    let last_phy = shard.store().max_commit_log_offset().0;
    Ok(success(req)
        .with_ext("indexLastUpdateTimestamp", crate::shard::now_ms())
        .with_ext("indexLastUpdatePhyoffset", last_phy)
        .with_body(body.freeze()))
}

/// VIEW_MESSAGE_BY_ID: the one stored record at a commitlog offset.
pub async fn view_message_by_id(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let offset: i64 = field(req, "offset")?;
    let not_found =
        || BrokerError::SystemError(format!("can not find message by the offset, {offset}"));
    let offset = u64::try_from(offset).map_err(|_| not_found())?;
    let record = shard
        .store()
        .read_message(CommitLogOffset(offset))
        .await
        .map_err(|e| {
            log::debug!("shard {}: view message at {offset}: {e}", shard.id());
            not_found()
        })?;
    Ok(success(req).with_body(record))
}
