//! Client management: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38),
//! CHECK_CLIENT_CONFIG (46), LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42). REMOTING.md §2.5, §6.3,
//! §6.4, §7.8. Membership changes send NOTIFY_CONSUMER_IDS_CHANGED (40) to the group.

use std::rc::Rc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{field_str, success};
use crate::consumer_group::subscription::{compile_sql92, heartbeat_topic, SUB_ALL};
use crate::consumer_group::{
    ConsumerRegistration, ExpressionType, MessageModel, MessageQueue, SubscriptionData,
};
use crate::error::BrokerError;
use crate::remoting::connection::ConnectionCtx;
use crate::remoting::RemotingCommand;
use crate::shard::{now_ms, Shard};
use crate::topic;

/// Java clients refuse SQL92 pulls from brokers older than V4_1_0_SNAPSHOT (232).
const HEARTBEAT_VERSION_MIN: i32 = 232;
/// Bound on the consumer groups and subscriptions one heartbeat may carry.
const HEARTBEAT_GROUPS_MAX: usize = 1024;

/// An enum that clients send by name (Java, Go) or by ordinal (C++), REMOTING.md §6.1.
fn enum_name(v: Option<&Value>, names: &[&'static str], default: &'static str) -> &'static str {
    match v {
        Some(Value::String(s)) => names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(s))
            .copied()
            .unwrap_or_else(|| {
                s.trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| names.get(i).copied())
                    .unwrap_or(default)
            }),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| names.get(i).copied())
            .unwrap_or(default),
        _ => default,
    }
}

const CONSUME_TYPES: [&str; 3] = ["CONSUME_ACTIVELY", "CONSUME_PASSIVELY", "CONSUME_POP"];
const MESSAGE_MODELS: [&str; 2] = ["BROADCASTING", "CLUSTERING"];
const CONSUME_FROM_WHERE: [&str; 6] = [
    "CONSUME_FROM_LAST_OFFSET",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET",
    "CONSUME_FROM_MAX_OFFSET",
    "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP",
];

/// HEART_BEAT: register producers and consumers of this connection; create each consumer
/// group's retry topic; tell groups whose membership or subscriptions changed.
pub async fn heart_beat(
    shard: &Rc<Shard>,
    conn: &Rc<ConnectionCtx>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let data: Value =
        serde_json::from_slice(&req.body).map_err(|source| BrokerError::BodyDecode {
            what: "HeartbeatData",
            source,
        })?;
    let client_id = data
        .get("clientID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let now = now_ms();

    let producers = data.get("producerDataSet").and_then(Value::as_array);
    for p in producers.into_iter().flatten().take(HEARTBEAT_GROUPS_MAX) {
        if let Some(group) = p.get("groupName").and_then(Value::as_str) {
            shard
                .clients()
                .register_producer(group, conn, client_id, now);
        }
    }

    let consumers = data.get("consumerDataSet").and_then(Value::as_array);
    for c in consumers.into_iter().flatten().take(HEARTBEAT_GROUPS_MAX) {
        let Some(group) = c.get("groupName").and_then(Value::as_str) else {
            continue;
        };
        let model = match enum_name(c.get("messageModel"), &MESSAGE_MODELS, "CLUSTERING") {
            "BROADCASTING" => MessageModel::Broadcasting,
            _ => MessageModel::Clustering,
        };
        let mut subscriptions = Vec::new();
        let subs = c.get("subscriptionDataSet").and_then(Value::as_array);
        for s in subs.into_iter().flatten() {
            let previous = shard.clients().subscription(group, heartbeat_topic(s));
            match SubscriptionData::from_heartbeat_json(s, previous.as_ref()) {
                Ok(sub) => subscriptions.push(sub),
                Err(e) => log::warn!(
                    "shard {}: heartbeat subscription of group {group} skipped: {e}",
                    shard.id()
                ),
            }
        }
        if topic::validate_topic_name(&topic::retry_topic(group)).is_ok() {
            shard.ensure_retry_topic(group).await?;
        }
        let reg = ConsumerRegistration {
            group: group.to_string(),
            consume_type: enum_name(c.get("consumeType"), &CONSUME_TYPES, "CONSUME_PASSIVELY")
                .to_string(),
            message_model: model,
            consume_from_where: enum_name(
                c.get("consumeFromWhere"),
                &CONSUME_FROM_WHERE,
                "CONSUME_FROM_LAST_OFFSET",
            )
            .to_string(),
            subscriptions,
        };
        if shard
            .clients()
            .register_consumer(reg, conn, client_id, now)?
        {
            log::info!(
                "shard {}: consumer group {group} changed (client {client_id})",
                shard.id()
            );
            shard.notify_consumer_ids_changed(group);
        }
    }
    let mut response = success(req);
    if response.version < HEARTBEAT_VERSION_MIN {
        response.version = crate::remoting::PETREL_VERSION.max(HEARTBEAT_VERSION_MIN);
    }
    Ok(response)
}

/// UNREGISTER_CLIENT: this connection leaves the named groups.
pub fn unregister_client(
    shard: &Shard,
    conn: &Rc<ConnectionCtx>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    if let Some(group) = req.ext("producerGroup").filter(|g| !g.is_empty()) {
        shard.clients().unregister_producer(group, conn.id());
    }
    if let Some(group) = req.ext("consumerGroup").filter(|g| !g.is_empty()) {
        if shard.clients().unregister_consumer(group, conn.id()) {
            shard.notify_consumer_ids_changed(group);
        }
    }
    Ok(success(req))
}

/// GET_CONSUMER_LIST_BY_GROUP: `{"consumerIdList":[...]}`, or SYSTEM_ERROR with no member.
pub fn get_consumer_list_by_group(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let group = field_str(req, "consumerGroup")?;
    let ids = shard.clients().consumer_ids(group);
    if ids.is_empty() {
        return Err(BrokerError::SystemError(format!(
            "no consumer for this group, {group}"
        )));
    }
    let body = serde_json::json!({ "consumerIdList": ids });
    Ok(success(req).with_body(Bytes::from(body.to_string())))
}

/// CHECK_CLIENT_CONFIG (a Java consumer with a SQL92 subscription sends it at start): TAG
/// subscriptions are fine; a SQL92 one must compile (else SUBSCRIPTION_PARSE_FAILED with the
/// reason) and needs `enablePropertyFilter` (else SYSTEM_ERROR, as Java answers).
pub fn check_client_config(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    if req.body.is_empty() {
        return Ok(success(req));
    }
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|source| BrokerError::BodyDecode {
            what: "CheckClientRequestBody",
            source,
        })?;
    let Some(subscription) = body.get("subscriptionData").filter(|s| !s.is_null()) else {
        return Ok(success(req));
    };
    let expression_type =
        ExpressionType::parse(subscription.get("expressionType").and_then(Value::as_str))?;
    if expression_type == ExpressionType::Tag {
        return Ok(success(req));
    }
    if !shard.context().config.enable_property_filter {
        return Err(sql92_disabled());
    }
    let expression = subscription
        .get("subString")
        .and_then(Value::as_str)
        .unwrap_or(SUB_ALL);
    compile_sql92(expression)?;
    Ok(success(req))
}

/// Java's answer when `enablePropertyFilter=false` and a consumer asks for SQL92.
pub fn sql92_disabled() -> BrokerError {
    BrokerError::SystemError(
        "The broker does not support consumer to filter message by SQL92 \
         (set enablePropertyFilter=true)"
            .to_string(),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBatchBody {
    #[serde(default)]
    consumer_group: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    mq_set: Vec<MessageQueue>,
}

/// Bound on the queues of one lock request.
const LOCK_BATCH_QUEUES_MAX: usize = 4096;

fn lock_body(req: &RemotingCommand) -> Result<LockBatchBody, BrokerError> {
    let mut body: LockBatchBody =
        serde_json::from_slice(&req.body).map_err(|source| BrokerError::BodyDecode {
            what: "LockBatchRequestBody",
            source,
        })?;
    body.mq_set.truncate(LOCK_BATCH_QUEUES_MAX);
    Ok(body)
}

/// LOCK_BATCH_MQ: lock (or renew) queues for an orderly consumer; answers the ones it holds.
pub fn lock_batch_mq(shard: &Shard, req: &RemotingCommand) -> Result<RemotingCommand, BrokerError> {
    let body = lock_body(req)?;
    let locked = shard.locks().lock_batch(
        &body.consumer_group,
        &body.mq_set,
        &body.client_id,
        now_ms(),
    );
    let out = serde_json::json!({ "lockOKMQSet": locked });
    Ok(success(req).with_body(Bytes::from(out.to_string())))
}

/// UNLOCK_BATCH_MQ: release queues held by the client.
pub fn unlock_batch_mq(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let body = lock_body(req)?;
    shard
        .locks()
        .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Ok(success(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_by_name_or_ordinal() {
        let name = serde_json::json!("CLUSTERING");
        assert_eq!(enum_name(Some(&name), &MESSAGE_MODELS, "X"), "CLUSTERING");
        let ordinal = serde_json::json!(0);
        assert_eq!(
            enum_name(Some(&ordinal), &MESSAGE_MODELS, "X"),
            "BROADCASTING"
        );
        let text_ordinal = serde_json::json!("4");
        assert_eq!(
            enum_name(Some(&text_ordinal), &CONSUME_FROM_WHERE, "X"),
            "CONSUME_FROM_FIRST_OFFSET"
        );
        assert_eq!(enum_name(None, &MESSAGE_MODELS, "X"), "X");
    }
}
