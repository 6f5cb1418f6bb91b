//! Admin codes: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21), GET_BROKER_CONFIG (26), GET_ALL_CONSUMER_OFFSET (43).
//! REMOTING.md §2.8. Topic changes reach every shard and the nameserver.

use bytes::Bytes;

use super::{field, field_bool, field_opt, field_str, success};
use crate::error::BrokerError;
use crate::remoting::RemotingCommand;
use crate::shard::{Announce, Shard};
use crate::topic::{self, TopicConfig, MULTI_TAG, SINGLE_TAG};

/// UPDATE_AND_CREATE_TOPIC.
pub async fn update_and_create_topic(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let name = field_str(req, "topic")?;
    topic::validate_topic_name(name)?;
    if shard.topics().is_system_topic(name) || topic::is_not_allowed_send_topic(name) {
        return Err(BrokerError::InvalidParameter(format!(
            "The topic[{name}] is conflict with system topic."
        )));
    }
    let read_queue_nums: i32 = field(req, "readQueueNums")?;
    let write_queue_nums: i32 = field(req, "writeQueueNums")?;
    let perm: i32 = field_opt(req, "perm")?.unwrap_or(6);
    let queue_nums = |n: i32, what: &str| {
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=topic::QUEUE_NUMS_MAX).contains(n))
            .ok_or_else(|| {
                BrokerError::InvalidParameter(format!(
                    "{what} {n} must be within 1..={}",
                    topic::QUEUE_NUMS_MAX
                ))
            })
    };
    let perm = u32::try_from(perm)
        .ok()
        .filter(|p| *p < 8)
        .ok_or_else(|| BrokerError::InvalidParameter(format!("perm {perm} is not within 0..8")))?;
    let filter_type = match req.ext("topicFilterType") {
        Some(t) if t.eq_ignore_ascii_case(MULTI_TAG) => MULTI_TAG,
        _ => SINGLE_TAG,
    };
    let config = TopicConfig {
        topic_name: name.to_string(),
        read_queue_nums: queue_nums(read_queue_nums, "readQueueNums")?,
        write_queue_nums: queue_nums(write_queue_nums, "writeQueueNums")?,
        perm,
        topic_filter_type: filter_type.to_string(),
        topic_sys_flag: field_opt(req, "topicSysFlag")?.unwrap_or(0),
        order: field_bool(req, "order"),
    };
    let announce = if topic::is_retry_or_dlq(name) {
        Announce::ThisShard
    } else {
        Announce::AllShards
    };
    shard.upsert_topic(config, announce).await?;
    Ok(success(req))
}

/// DELETE_TOPIC_IN_BROKER: drop the topic, its queues and offsets, on every shard.
pub async fn delete_topic_in_broker(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let name = field_str(req, "topic")?;
    topic::validate_topic_name(name)?;
    if shard.topics().is_system_topic(name) {
        return Err(BrokerError::InvalidParameter(format!(
            "The topic[{name}] is conflict with system topic."
        )));
    }
    shard.delete_topic(name).await?;
    Ok(success(req))
}

/// GET_ALL_TOPIC_CONFIG: the whole table, no paging fields (the client stops after one page).
pub fn get_all_topic_config(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    Ok(success(req).with_body(shard.topic_config_wrapper_json()))
}

/// GET_BROKER_CONFIG: the settings this shard runs with, as Java properties text.
pub fn get_broker_config(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let ctx = shard.context();
    let store = shard.store().config();
    let flush = match store.flush_mode {
        engine::FlushMode::Sync => "SYNC_FLUSH",
        engine::FlushMode::Async => "ASYNC_FLUSH",
    };
    let lines = [
        ("brokerClusterName", ctx.config.broker_cluster_name.clone()),
        ("brokerName", ctx.broker_name.clone()),
        ("brokerId", "0".to_string()),
        ("brokerIP1", ctx.advertised_addr.ip().to_string()),
        ("listenPort", ctx.advertised_addr.port().to_string()),
        ("brokerPermission", "6".to_string()),
        (
            "autoCreateTopicEnable",
            ctx.config.auto_create_topic_enable.to_string(),
        ),
        (
            "defaultTopicQueueNums",
            ctx.config.default_topic_queue_nums.to_string(),
        ),
        ("autoCreateSubscriptionGroup", "true".to_string()),
        (
            "enablePropertyFilter",
            ctx.config.enable_property_filter.to_string(),
        ),
        ("storePathRootDir", ctx.store_dir.display().to_string()),
        ("flushDiskType", flush.to_string()),
        ("syncFlushTimeout", store.sync_flush_timeout_ms.to_string()),
        (
            "flushIntervalCommitLog",
            store.flush_interval_ms.to_string(),
        ),
        (
            "mappedFileSizeCommitLog",
            store.segment_size_bytes.to_string(),
        ),
        ("maxMessageSize", store.body_size_max.to_string()),
        (
            "fileReservedTime",
            store.file_reserved_time_hours.to_string(),
        ),
        ("deleteWhen", format!("{:02}", store.delete_when_hour)),
        (
            "diskMaxUsedSpaceRatio",
            format!("{:.0}", store.disk_max_used_ratio * 100.0),
        ),
        ("longPollingEnable", "true".to_string()),
        ("brokerRole", "ASYNC_MASTER".to_string()),
    ];
    let mut text = String::new();
    for (k, v) in lines {
        text.push_str(k);
        text.push('=');
        text.push_str(&v);
        text.push('\n');
    }
    let version = shard.topics().data_version();
    let version_json = serde_json::json!({
        "counter": version.counter,
        "stateVersion": version.state_version,
        "timestamp": version.timestamp,
    });
    Ok(success(req)
        .with_ext("version", version_json.to_string())
        .with_body(Bytes::from(text)))
}

/// GET_ALL_CONSUMER_OFFSET: the offset table (quoted queue-id keys).
pub fn get_all_consumer_offset(
    shard: &Shard,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    Ok(success(req).with_body(Bytes::from(shard.offsets().to_json())))
}
