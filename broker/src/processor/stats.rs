//! Admin statistics codes read by mqadmin (REMOTING.md §2.8, bodies §6.5):
//! GET_BROKER_RUNTIME_INFO (28), GET_TOPIC_STATS_INFO (202), GET_CONSUMER_CONNECTION_LIST (203)
//! and GET_CONSUME_STATS (208). Every answer describes this shard only (it is one broker,
//! `<brokerName>_<i>`, to clients).
//!
//! TopicStatsTable and ConsumeStats are `Map<MessageQueue, …>` in Java, which fastjson writes
//! with a JSON object as the key (§6.1 quirk 2: `{{"brokerName":…,"queueId":0,"topic":…}:{…}}`);
//! that is not valid JSON, so those bodies are written by hand here, keys in fastjson's
//! alphabetical order, compact.

use std::fmt::Write as _;

use bytes::Bytes;
use engine::{GetLimit, GetStatus, QueueId, QueueOffset};
use serde_json::json;

use super::{field_opt, field_str, success};
use crate::error::BrokerError;
use crate::remoting::{RemotingCommand, ResponseCode, PETREL_VERSION};
use crate::shard::Shard;

/// GET_BROKER_RUNTIME_INFO: a KVTable of this shard's numbers. The `msg*Total*` counters run
/// from the shard's start (Petrel keeps no daily history): the "morning" values are 0, so
/// mqadmin's "today" columns show the totals since start.
pub fn get_broker_runtime_info(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let m = shard.metrics();
    let store = shard.store();
    let tps = |secs: u64| m.tps(std::time::Duration::from_secs(secs));
    let (windows_put, windows_got): (Vec<String>, Vec<String>) = [10, 60, 600]
        .into_iter()
        .map(|s| {
            let (put, got) = tps(s);
            (format!("{put:.2}"), format!("{got:.2}"))
        })
        .unzip();
    let table = json!({
        "brokerVersionDesc": format!("petrel-{}", env!("CARGO_PKG_VERSION")),
        "brokerVersion": PETREL_VERSION.to_string(),
        "brokerActive": "true",
        "bootTimestamp": m.boot_timestamp_ms().to_string(),
        "putTps": windows_put.join(" "),
        "getTransferredTps": windows_got.join(" "),
        "msgPutTotalYesterdayMorning": "0",
        "msgPutTotalTodayMorning": "0",
        "msgPutTotalTodayNow": m.messages_put().to_string(),
        "msgGetTotalYesterdayMorning": "0",
        "msgGetTotalTodayMorning": "0",
        "msgGetTotalTodayNow": m.pulled_messages().to_string(),
        "putMessageTimesTotal": m.messages_put().to_string(),
        "putMessageSizeTotal": m.bytes_put().to_string(),
        "commitLogMaxOffset": store.max_commit_log_offset().0.to_string(),
        "commitLogMinOffset": store.min_commit_log_offset().0.to_string(),
        "commitLogDurableOffset": store.durable_commit_log_offset().0.to_string(),
        "heldPullCount": shard.long_polls().held_count().to_string(),
        "storePoisoned": store.is_poisoned().to_string(),
        "diskFull": store.is_disk_full().to_string(),
    });
    let body = serde_json::to_vec(&json!({ "table": table }))
        .map_err(|e| BrokerError::SystemError(format!("cannot encode the runtime info: {e}")))?;
    Ok(success(req).with_body(Bytes::from(body)))
}

/// GET_TOPIC_STATS_INFO: min/max offset and last store time of each queue of a topic, over
/// queue ids `0..max(readQueueNums, writeQueueNums)`.
pub async fn get_topic_stats_info(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let topic = field_str(req, "topic")?;
    let Some(config) = shard.topics().get(topic) else {
        return Err(BrokerError::TopicNotExist {
            topic: topic.to_string(),
        });
    };
    let broker_name = &shard.context().broker_name;
    let queue_count = config.read_queue_nums.max(config.write_queue_nums);
    let mut body = String::with_capacity(64 + 128 * queue_count as usize);
    body.push_str("{\"offsetTable\":{");
    for queue_id in 0..queue_count {
        let min = shard.store().min_offset(topic, QueueId(queue_id)).0;
        let max = shard.store().max_offset(topic, QueueId(queue_id)).0;
        let last_update_ms = match max.checked_sub(1) {
            Some(last) => store_timestamp(shard, topic, queue_id, last).await,
            None => 0,
        };
        if queue_id > 0 {
            body.push(',');
        }
        push_message_queue_key(&mut body, broker_name, queue_id, topic);
        let _ = write!(
            body,
            ":{{\"lastUpdateTimestamp\":{last_update_ms},\"maxOffset\":{max},\"minOffset\":{min}}}"
        );
    }
    body.push_str("},\"topicPutTps\":0.0}");
    Ok(success(req).with_body(Bytes::from(body)))
}

/// GET_CONSUMER_CONNECTION_LIST: the group's live members on this shard, its settings and
/// subscriptions; CONSUMER_NOT_ONLINE when no member is connected here.
pub fn get_consumer_connection_list(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let group = field_str(req, "consumerGroup")?;
    let snapshot = shard
        .clients()
        .consumer_group_snapshot(group)
        .filter(|s| !s.members.is_empty());
    let Some(snapshot) = snapshot else {
        return Ok(RemotingCommand::response(
            ResponseCode::CONSUMER_NOT_ONLINE,
            req.opaque,
            Some(format!("the consumer group[{group}] not online")),
        ));
    };
    let connections: Vec<serde_json::Value> = snapshot
        .members
        .iter()
        .map(|(client_id, conn)| {
            json!({
                "clientAddr": conn.peer_addr().to_string(),
                "clientId": client_id,
                "language": conn.language().as_str(),
                "version": conn.version(),
            })
        })
        .collect();
    let subscriptions: serde_json::Map<String, serde_json::Value> = snapshot
        .subscriptions
        .iter()
        .map(|s| (s.topic.clone(), s.to_json()))
        .collect();
    let body = json!({
        "connectionSet": connections,
        "consumeFromWhere": snapshot.consume_from_where,
        "consumeType": snapshot.consume_type,
        "messageModel": snapshot.message_model.name(),
        "subscriptionTable": subscriptions,
    });
    let body = serde_json::to_vec(&body).map_err(|e| {
        BrokerError::SystemError(format!("cannot encode the consumer connection: {e}"))
    })?;
    Ok(success(req).with_body(Bytes::from(body)))
}

/// GET_CONSUME_STATS: per queue of each topic (the one asked for, the `;`-separated
/// `topicList`, or every topic the group committed offsets for on this shard): the queue's
/// max offset, the group's committed offset and the store time of the last consumed message.
/// `pullOffset` equals the committed offset (Petrel does not track pull positions) and
/// `consumeTps` is 0.0 (not measured).
pub async fn get_consume_stats(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let group = field_str(req, "consumerGroup")?;
    let topic: Option<String> = field_opt(req, "topic")?;
    let topic_list: Option<String> = field_opt(req, "topicList")?;
    let topics: Vec<String> = match (topic, topic_list) {
        (Some(t), _) => vec![t],
        (None, Some(list)) => list
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        (None, None) => shard.offsets().topics_of_group(group),
    };
    let broker_name = &shard.context().broker_name;
    let mut body = String::with_capacity(256);
    body.push_str("{\"consumeTps\":0.0,\"offsetTable\":{");
    let mut is_first = true;
    for topic in &topics {
        // Java skips topics it does not host.
        let Some(config) = shard.topics().get(topic) else {
            continue;
        };
        for queue_id in 0..config.read_queue_nums {
            let broker_offset = shard.store().max_offset(topic, QueueId(queue_id)).0;
            let consumer_offset = shard.offsets().query(topic, group, queue_id).unwrap_or(0);
            let last_timestamp = match consumer_offset.checked_sub(1) {
                Some(last) => store_timestamp(shard, topic, queue_id, last).await,
                None => 0,
            };
            if !is_first {
                body.push(',');
            }
            is_first = false;
            push_message_queue_key(&mut body, broker_name, queue_id, topic);
            let _ = write!(
                body,
                ":{{\"brokerOffset\":{broker_offset},\"consumerOffset\":{consumer_offset},\
                 \"lastTimestamp\":{last_timestamp},\"pullOffset\":{consumer_offset}}}"
            );
        }
    }
    body.push_str("}}");
    Ok(success(req).with_body(Bytes::from(body)))
}

/// A MessageQueue written as a fastjson map key: `{"brokerName":…,"queueId":…,"topic":…}`.
fn push_message_queue_key(out: &mut String, broker_name: &str, queue_id: u32, topic: &str) {
    out.push_str("{\"brokerName\":");
    push_json_string(out, broker_name);
    let _ = write!(out, ",\"queueId\":{queue_id},\"topic\":");
    push_json_string(out, topic);
    out.push('}');
}

fn push_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serializing a &str cannot fail; keep the output well-formed regardless.
        Err(_) => out.push_str("\"\""),
    }
}

/// Store time of the message at `offset` of a queue; 0 when it cannot be read (gone, or
/// an I/O error, which is logged).
async fn store_timestamp(shard: &Shard, topic: &str, queue_id: u32, offset: u64) -> i64 {
    let limit = GetLimit {
        count_max: 1,
        bytes_max: shard
            .store()
            .config()
            .body_size_max
            .saturating_add(64 << 10),
    };
    let got = shard
        .store()
        .get(
            topic,
            QueueId(queue_id),
            QueueOffset(offset),
            limit,
            &|_| true,
        )
        .await;
    match got {
        Ok(r) if r.status == GetStatus::Found => r
            .messages
            .first()
            .and_then(|m| engine::record::decode(m).ok())
            .map_or(0, |v| v.store_timestamp_ms()),
        Ok(_) => 0,
        Err(e) => {
            log::debug!(
                "shard {}: store time of {topic}/{queue_id}@{offset}: {e}",
                shard.id()
            );
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_queue_key_is_written_in_fastjson_order() {
        let mut out = String::new();
        push_message_queue_key(&mut out, "b_0", 3, "T\"x");
        assert_eq!(out, r#"{"brokerName":"b_0","queueId":3,"topic":"T\"x"}"#);
    }
}
