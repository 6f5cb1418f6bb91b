//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//! CONSUMER_SEND_MSG_BACK (36): the second hop of the write path (header into `PutMessage`),
//! REMOTING.md §2.2, §4.5, §7.4.
//!
//! Checks in Java's order: topic name, not-allowed system topics, topic exists (or is
//! auto-created from the `defaultTopic` template), write permission, queue id; then retry/DLQ
//! routing for `%RETRY%` topics; then delay levels (a message with `DELAY` > 0 is parked in
//! `SCHEDULE_TOPIC_XXXX`, `schedule.rs`) or, for a transactional half message, its parking in
//! `RMQ_SYS_TRANS_HALF_TOPIC` (`transaction.rs`); then the store. Under SYNC_FLUSH the answer
//! waits for the record's durability ticket unless the message says `WAIT=false`.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use engine::{CommitLogOffset, FlushError, FlushMode, PutMessage, QueueId};

use super::{field, field_opt, field_str};
use crate::error::BrokerError;
use crate::remoting::connection::ConnectionCtx;
use crate::remoting::{RemotingCommand, RequestCode, ResponseCode};
use crate::schedule::{self, DelayLevel};
use crate::shard::{now_ms, Announce, Shard};
use crate::topic::{self, perm, TopicConfig};
use crate::transaction;

/// MessageSysFlag bits the broker looks at (REMOTING.md §4.2).
pub mod sys_flag {
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_MASK: i32 = 0xC;
}

pub const PROPERTY_TAGS: &str = "TAGS";
pub const PROPERTY_WAIT: &str = "WAIT";
pub const PROPERTY_DELAY: &str = "DELAY";
pub const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
pub const PROPERTY_CLUSTER: &str = "CLUSTER";
pub const PROPERTY_RETRY_TOPIC: &str = "RETRY_TOPIC";
pub const PROPERTY_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
pub const PROPERTY_MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
pub const REGION_ID_DEFAULT: &str = "DefaultRegion";
/// A group's `retryMaxTimes` (Java default; subscription groups are not configurable here).
pub const RETRY_MAX_TIMES_DEFAULT: i32 = 16;
/// Request versions from V3_4_9 (ordinal 121) on carry a trustworthy maxReconsumeTimes.
const VERSION_V3_4_9: i32 = 121;
/// Bound on the messages of one SEND_BATCH_MESSAGE.
pub const BATCH_COUNT_MAX: usize = 4096;

/// The send request header (long names for 10/324, short `a`..`m` for 310/320/325; either
/// is accepted for any send code).
struct SendHeader<'a> {
    topic: &'a str,
    default_topic: &'a str,
    default_topic_queue_nums: i32,
    queue_id: i32,
    sys_flag: i32,
    born_timestamp_ms: i64,
    flag: i32,
    properties: &'a str,
    reconsume_times: i32,
    max_reconsume_times: Option<i32>,
    is_batch: bool,
}

fn send_field<'a>(req: &'a RemotingCommand, long: &str, short: &str) -> Option<&'a str> {
    req.ext(long).or_else(|| req.ext(short))
}

fn send_number<T: std::str::FromStr>(
    req: &RemotingCommand,
    long: &'static str,
    short: &str,
) -> Result<Option<T>, BrokerError>
where
    T::Err: std::fmt::Display,
{
    match send_field(req, long, short).map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e: T::Err| BrokerError::HeaderFieldInvalid {
                field: long,
                reason: e.to_string(),
            }),
    }
}

impl<'a> SendHeader<'a> {
    fn parse(req: &'a RemotingCommand) -> Result<Self, BrokerError> {
        let topic = send_field(req, "topic", "b").ok_or(BrokerError::missing("topic"))?;
        let queue_id: i32 =
            send_number(req, "queueId", "e")?.ok_or(BrokerError::missing("queueId"))?;
        let is_batch = req.code == RequestCode::SEND_BATCH_MESSAGE
            || send_field(req, "batch", "m").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(SendHeader {
            topic,
            default_topic: send_field(req, "defaultTopic", "c")
                .unwrap_or(topic::AUTO_CREATE_TOPIC_KEY),
            default_topic_queue_nums: send_number(req, "defaultTopicQueueNums", "d")?.unwrap_or(4),
            queue_id,
            sys_flag: send_number(req, "sysFlag", "f")?.unwrap_or(0),
            born_timestamp_ms: send_number(req, "bornTimestamp", "g")?.unwrap_or_else(now_ms),
            flag: send_number(req, "flag", "h")?.unwrap_or(0),
            properties: send_field(req, "properties", "i").unwrap_or(""),
            reconsume_times: send_number(req, "reconsumeTimes", "j")?.unwrap_or(0),
            max_reconsume_times: send_number(req, "maxReconsumeTimes", "l")?,
            is_batch,
        })
    }
}

/// SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE.
pub async fn send_message(
    shard: &Rc<Shard>,
    conn: &Rc<ConnectionCtx>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let header = SendHeader::parse(req)?;
    topic::validate_topic_name(header.topic)?;
    if topic::is_not_allowed_send_topic(header.topic) {
        return Err(BrokerError::NoPermission(format!(
            "Sending message to topic[{}] is forbidden.",
            header.topic
        )));
    }
    let topic_config = topic_for_send(shard, &header).await?;
    if !perm::is_writeable(topic_config.perm) {
        return Err(BrokerError::NoPermission(format!(
            "the topic[{}] sending message is forbidden",
            header.topic
        )));
    }
    let queue_nums = topic_config.queue_nums();
    let queue_id = match u32::try_from(header.queue_id) {
        Err(_) => shard.random_u32() % topic_config.write_queue_nums.max(1),
        Ok(q) if q >= queue_nums => {
            return Err(BrokerError::InvalidParameter(format!(
                "request queueId[{q}] is illegal, topic[{}] has {queue_nums} queues on broker {}",
                header.topic,
                shard.context().broker_name
            )))
        }
        Ok(q) => q,
    };
    let mut sys_flag = header.sys_flag;
    if topic_config.is_multi_tag() {
        sys_flag |= sys_flag::MULTI_TAGS;
    }
    let dest = Destination {
        topic: topic_config.topic_name.clone(),
        queue_id,
    };
    if header.is_batch {
        if topic::is_retry_or_dlq(header.topic) {
            return Err(BrokerError::MessageIllegal(
                "batch message is not supported for retry topics".to_string(),
            ));
        }
        let delay = engine::properties::get(header.properties, PROPERTY_DELAY);
        if delay.and_then(DelayLevel::from_property).is_some() {
            return Err(BrokerError::MessageIllegal(
                "batch message does not support delay level".to_string(),
            ));
        }
        return send_batch(shard, conn, req, &header, dest, sys_flag).await;
    }
    let dest = route_retry(shard, req, &header, dest).await?;

    let cluster = &shard.context().config.broker_cluster_name;
    let mut props = Properties::parse(header.properties);
    let uniq_key = match props.get(PROPERTY_UNIQ_KEY) {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => {
            let k = generate_uniq_key(shard);
            props.set(PROPERTY_UNIQ_KEY, &k);
            k
        }
    };
    props.set(PROPERTY_CLUSTER, cluster);
    if dest.topic.starts_with(topic::DLQ_GROUP_TOPIC_PREFIX) {
        props.remove(PROPERTY_DELAY);
    }
    let is_wait = props
        .get(PROPERTY_WAIT)
        .is_none_or(|w| !w.eq_ignore_ascii_case("false"));
    // A half (transactional) message waits in the half topic for END_TRANSACTION; its DELAY,
    // if any, applies once it is committed.
    let is_half = transaction::is_half(&props, sys_flag, header.reconsume_times);
    let (parked, sys_flag) = if is_half {
        let sys_flag =
            transaction::park_half(&mut props, sys_flag, &dest.topic, dest.queue_id, &uniq_key);
        (None, sys_flag)
    } else {
        let parked = schedule::park(&mut props, sys_flag, &dest.topic, dest.queue_id);
        (parked, sys_flag)
    };
    let properties = props.encode();
    let (store_topic, store_queue_id) = match parked {
        _ if is_half => (topic::TRANS_HALF_TOPIC, transaction::HALF_QUEUE_ID.0),
        Some(level) => (topic::SCHEDULE_TOPIC, level.queue_id().0),
        None => (dest.topic.as_str(), dest.queue_id),
    };

    let store_host = shard.context().advertised_addr;
    let msg = PutMessage {
        topic: store_topic,
        queue_id: QueueId(store_queue_id),
        flag: header.flag,
        body: &req.body,
        properties: &properties,
        sys_flag,
        born_timestamp_ms: header.born_timestamp_ms,
        born_host: conn.peer_addr(),
        store_host,
        reconsume_times: header.reconsume_times,
        prepared_transaction_offset: 0,
    };
    let put = shard.store().put(&msg)?;
    if parked.is_some() {
        shard.schedule().wake();
    } else if !is_half {
        shard
            .long_polls()
            .notify_append(&dest.topic, dest.queue_id, put.queue_offset.0 + 1);
    }
    let code = await_durability(shard, put.ticket, is_wait).await?;
    // Like Java: the request's queue id, and the offset in whichever queue took the record.
    Ok(RemotingCommand::response(code, req.opaque, None)
        .with_ext("msgId", offset_msg_id(store_host, put.commit_log_offset))
        .with_ext("queueId", dest.queue_id)
        .with_ext("queueOffset", put.queue_offset.0)
        .with_ext("transactionId", uniq_key)
        .with_ext("MSG_REGION", REGION_ID_DEFAULT)
        .with_ext("TRACE_ON", "true"))
}

struct Destination {
    topic: String,
    queue_id: u32,
}

/// SEND_BATCH_MESSAGE: one stored record per entry of the batch body (§4.5), consecutive
/// queue offsets, one durability ticket.
async fn send_batch(
    shard: &Rc<Shard>,
    conn: &Rc<ConnectionCtx>,
    req: &RemotingCommand,
    header: &SendHeader<'_>,
    dest: Destination,
    sys_flag: i32,
) -> Result<RemotingCommand, BrokerError> {
    let body_size_max = shard.store().config().body_size_max;
    if req.body.len() > body_size_max as usize {
        return Err(BrokerError::MessageIllegal(format!(
            "the message is illegal, the batch body size {}B is larger than maxMessageSize {body_size_max}B",
            req.body.len()
        )));
    }
    let entries = decode_batch(&req.body)?;
    let cluster = &shard.context().config.broker_cluster_name;
    let mut properties = Vec::with_capacity(entries.len());
    let mut is_wait = false;
    for entry in &entries {
        let mut props = Properties::parse(entry.properties);
        if props.get(PROPERTY_UNIQ_KEY).is_none_or(str::is_empty) {
            props.set(PROPERTY_UNIQ_KEY, &generate_uniq_key(shard));
        }
        props.set(PROPERTY_CLUSTER, cluster);
        is_wait |= props
            .get(PROPERTY_WAIT)
            .is_none_or(|w| !w.eq_ignore_ascii_case("false"));
        properties.push(props.encode());
    }
    let store_host = shard.context().advertised_addr;
    let born_host = conn.peer_addr();
    let msgs: Vec<PutMessage<'_>> = entries
        .iter()
        .zip(&properties)
        .map(|(entry, props)| PutMessage {
            topic: &dest.topic,
            queue_id: QueueId(dest.queue_id),
            flag: entry.flag,
            body: entry.body,
            properties: props,
            sys_flag,
            born_timestamp_ms: header.born_timestamp_ms,
            born_host,
            store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        })
        .collect();
    let put = shard.store().put_batch(&msgs)?;
    let count = u64::try_from(put.commit_log_offsets.len()).unwrap_or(0);
    shard
        .long_polls()
        .notify_append(&dest.topic, dest.queue_id, put.first_queue_offset.0 + count);
    let code = await_durability(shard, put.ticket, is_wait).await?;
    let msg_ids: Vec<String> = put
        .commit_log_offsets
        .iter()
        .map(|o| offset_msg_id(store_host, *o))
        .collect();
    Ok(RemotingCommand::response(code, req.opaque, None)
        .with_ext("msgId", msg_ids.join(","))
        .with_ext("queueId", dest.queue_id)
        .with_ext("queueOffset", put.first_queue_offset.0)
        .with_ext("MSG_REGION", REGION_ID_DEFAULT)
        .with_ext("TRACE_ON", "true"))
}

/// Waits for the durability ticket under SYNC_FLUSH (when the message asks to wait) and
/// picks the response code.
async fn await_durability(
    shard: &Shard,
    ticket: engine::DurabilityTicket,
    is_wait: bool,
) -> Result<i32, BrokerError> {
    if shard.store().config().flush_mode != FlushMode::Sync || !is_wait {
        return Ok(ResponseCode::SUCCESS);
    }
    match ticket.await {
        Ok(()) => Ok(ResponseCode::SUCCESS),
        Err(FlushError::Timeout) => Ok(ResponseCode::FLUSH_DISK_TIMEOUT),
        Err(FlushError::Poisoned) => Err(BrokerError::Put(engine::PutError::Poisoned)),
    }
}

/// The topic's config, auto-creating it from the template when allowed (REMOTING.md §7.7).
async fn topic_for_send(
    shard: &Shard,
    header: &SendHeader<'_>,
) -> Result<TopicConfig, BrokerError> {
    if let Some(config) = shard.topics().get(header.topic) {
        if shard.is_route_pending(header.topic) {
            shard.wait_topic_routed(header.topic).await?;
        }
        return Ok(config);
    }
    if header.topic.starts_with(topic::RETRY_GROUP_TOPIC_PREFIX) {
        let group = &header.topic[topic::RETRY_GROUP_TOPIC_PREFIX.len()..];
        return shard.ensure_retry_topic(group).await;
    }
    let not_exist = || BrokerError::TopicNotExist {
        topic: header.topic.to_string(),
    };
    if !shard.context().config.auto_create_topic_enable {
        return Err(not_exist());
    }
    let template = shard
        .topics()
        .get(header.default_topic)
        .ok_or_else(not_exist)?;
    let config = topic::auto_created_from(header.topic, &template, header.default_topic_queue_nums)
        .ok_or_else(not_exist)?;
    log::info!(
        "shard {}: auto-creating topic {} with {} queues from {}",
        shard.id(),
        header.topic,
        config.write_queue_nums,
        header.default_topic
    );
    shard
        .upsert_topic(config.clone(), Announce::AllShards)
        .await?;
    // Answer only once a client's first route fetch will list every shard.
    shard.wait_topic_routed(header.topic).await?;
    Ok(config)
}

/// A client-side resend to `%RETRY%<group>` goes to `%DLQ%<group>` once it was retried too
/// often, or while the group holds orderly locks (REMOTING.md §2.2 check 5).
async fn route_retry(
    shard: &Shard,
    req: &RemotingCommand,
    header: &SendHeader<'_>,
    dest: Destination,
) -> Result<Destination, BrokerError> {
    let Some(group) = header.topic.strip_prefix(topic::RETRY_GROUP_TOPIC_PREFIX) else {
        return Ok(dest);
    };
    let mut max_reconsume_times = RETRY_MAX_TIMES_DEFAULT;
    if req.version >= VERSION_V3_4_9 {
        if let Some(m) = header.max_reconsume_times {
            max_reconsume_times = m;
        }
    }
    let is_locked = !shard.locks().is_lock_all_expired(group, now_ms());
    if header.reconsume_times > max_reconsume_times || is_locked {
        let dlq = shard.ensure_dlq_topic(group).await?;
        return Ok(Destination {
            topic: dlq.topic_name,
            queue_id: 0,
        });
    }
    Ok(dest)
}

/// CONSUMER_SEND_MSG_BACK (36): the consumer could not process a message; store a copy for
/// `%RETRY%<group>` parked at delay level `delayLevel` (0: `3 + reconsumeTimes`), or in
/// `%DLQ%<group>` after too many attempts or with a negative level, REMOTING.md §7.4.
pub async fn consumer_send_msg_back(
    shard: &Rc<Shard>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let offset: i64 = field(req, "offset")?;
    let group = field_str(req, "group")?;
    let delay_level: i32 = field_opt(req, "delayLevel")?.unwrap_or(0);
    let origin_msg_id = req.ext("originMsgId");
    let origin_topic = req.ext("originTopic");
    let header_max: Option<i32> = field_opt(req, "maxReconsumeTimes")?;
    let retry_topic = topic::retry_topic(group);
    topic::validate_topic_name(&retry_topic)?;
    let retry_config = shard.ensure_retry_topic(group).await?;

    let commit_log_offset = u64::try_from(offset).map_err(|_| {
        BrokerError::InvalidParameter(format!("offset {offset} is not a commitlog offset"))
    })?;
    let record = shard
        .store()
        .read_message(CommitLogOffset(commit_log_offset))
        .await
        .map_err(|e| {
            BrokerError::SystemError(format!("look message by offset failed, {offset}: {e}"))
        })?;
    let view = engine::record::decode(&record).map_err(|e| {
        BrokerError::SystemError(format!("look message by offset failed, {offset}: {e:?}"))
    })?;

    let reconsume_times = view.reconsume_times();
    let max_reconsume_times = match header_max {
        Some(m) if req.version >= VERSION_V3_4_9 => m,
        _ => RETRY_MAX_TIMES_DEFAULT,
    };
    let mut props = Properties::parse(view.properties());
    if props.get(PROPERTY_RETRY_TOPIC).is_none() {
        props.set(PROPERTY_RETRY_TOPIC, origin_topic.unwrap_or(view.topic()));
    }
    if props.get(PROPERTY_ORIGIN_MESSAGE_ID).is_none() {
        let origin = origin_msg_id
            .map(str::to_string)
            .or_else(|| props.get(PROPERTY_UNIQ_KEY).map(str::to_string))
            .unwrap_or_else(|| offset_msg_id(view.store_host(), view.commit_log_offset()));
        props.set(PROPERTY_ORIGIN_MESSAGE_ID, &origin);
    }
    props.set(PROPERTY_WAIT, "false");

    let (topic, queue_id) = if reconsume_times >= max_reconsume_times || delay_level < 0 {
        props.remove(PROPERTY_DELAY);
        let dlq = shard.ensure_dlq_topic(group).await?;
        (dlq.topic_name, 0)
    } else {
        let level = if delay_level == 0 {
            3 + reconsume_times
        } else {
            delay_level
        };
        props.set(PROPERTY_DELAY, &level.max(1).to_string());
        let queue_id = shard.random_u32() % retry_config.write_queue_nums.max(1);
        (retry_topic, queue_id)
    };
    let sys_flag = view.sys_flag() & !sys_flag::TRANSACTION_MASK;
    let parked = schedule::park(&mut props, sys_flag, &topic, queue_id);
    let (topic, queue_id) = match parked {
        Some(level) => (topic::SCHEDULE_TOPIC.to_string(), level.queue_id().0),
        None => (topic, queue_id),
    };
    let properties = props.encode();
    let msg = PutMessage {
        topic: &topic,
        queue_id: QueueId(queue_id),
        flag: view.flag(),
        body: view.body(),
        properties: &properties,
        sys_flag,
        born_timestamp_ms: view.born_timestamp_ms(),
        born_host: view.born_host(),
        store_host: shard.context().advertised_addr,
        reconsume_times: reconsume_times.saturating_add(1),
        prepared_transaction_offset: 0,
    };
    // WAIT=false: the retry copy is not awaited (Java does the same).
    let queue_offset = shard.store().put(&msg)?.queue_offset;
    if parked.is_some() {
        shard.schedule().wake();
    } else {
        shard
            .long_polls()
            .notify_append(&topic, queue_id, queue_offset.0 + 1);
    }
    Ok(super::success(req))
}

/// One entry of a SEND_BATCH_MESSAGE body.
struct BatchEntry<'a> {
    flag: i32,
    body: &'a [u8],
    properties: &'a str,
}

/// Decodes the batch body (REMOTING.md §4.5); never panics on bad input.
fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry<'_>>, BrokerError> {
    let illegal = |at: usize, what: &str| {
        BrokerError::MessageIllegal(format!("the batch body is malformed at byte {at}: {what}"))
    };
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let buf: &[u8] = body;
    while pos < buf.len() {
        if entries.len() >= BATCH_COUNT_MAX {
            return Err(illegal(pos, "too many messages"));
        }
        let rest = buf.get(pos..).ok_or_else(|| illegal(pos, "truncated"))?;
        let total_size = read_i32(rest, 0).ok_or_else(|| illegal(pos, "truncated size"))?;
        let flag = read_i32(rest, 12).ok_or_else(|| illegal(pos, "truncated flag"))?;
        let body_len = read_i32(rest, 16).ok_or_else(|| illegal(pos, "truncated body length"))?;
        let body_len = usize::try_from(body_len).map_err(|_| illegal(pos, "negative body"))?;
        let body_end = 20usize
            .checked_add(body_len)
            .ok_or_else(|| illegal(pos, "body"))?;
        let entry_body = rest
            .get(20..body_end)
            .ok_or_else(|| illegal(pos, "truncated body"))?;
        let prop_len = rest
            .get(body_end..body_end + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| illegal(pos, "truncated properties length"))?;
        let prop_len = usize::try_from(prop_len).map_err(|_| illegal(pos, "negative props"))?;
        let props_start = body_end + 2;
        let props = rest
            .get(props_start..props_start + prop_len)
            .ok_or_else(|| illegal(pos, "truncated properties"))?;
        let props = std::str::from_utf8(props).map_err(|_| illegal(pos, "properties not UTF-8"))?;
        let entry_size = props_start + prop_len;
        if usize::try_from(total_size).ok() != Some(entry_size) {
            return Err(illegal(pos, "total size does not match its fields"));
        }
        entries.push(BatchEntry {
            flag,
            body: entry_body,
            properties: props,
        });
        pos += entry_size;
    }
    if entries.is_empty() {
        return Err(illegal(0, "no messages"));
    }
    Ok(entries)
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The offset message id (REMOTING.md §4.3): upper-case hex of store IP, port (i32) and
/// commitlog offset (i64).
pub fn offset_msg_id(store_host: SocketAddr, offset: CommitLogOffset) -> String {
    let mut bytes = Vec::with_capacity(28);
    match store_host.ip() {
        IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    bytes.extend_from_slice(&i32::from(store_host.port()).to_be_bytes());
    bytes.extend_from_slice(&offset.0.to_be_bytes());
    hex_upper(&bytes)
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

/// A broker-made UNIQ_KEY in the client's format (REMOTING.md §4.3): IP, pid (low 16 bits),
/// a per-shard id in place of the class-loader hash, ms since the start of the month, counter.
pub fn generate_uniq_key(shard: &Shard) -> String {
    let mut bytes = Vec::with_capacity(28);
    match shard.context().advertised_addr.ip() {
        IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    let pid = std::process::id() & 0xFFFF;
    bytes.extend_from_slice(&u16::try_from(pid).unwrap_or(0).to_be_bytes());
    bytes.extend_from_slice(&(0x5045_0000_u32 | u32::from(shard.id())).to_be_bytes());
    let now = now_ms();
    let since_month = now - month_start_ms(now);
    bytes.extend_from_slice(&i32::try_from(since_month).unwrap_or(0).to_be_bytes());
    bytes.extend_from_slice(&shard.next_uniq_counter().to_be_bytes());
    hex_upper(&bytes)
}

/// Start of the (UTC) month containing `ms`.
fn month_start_ms(ms: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    let days = ms.div_euclid(DAY_MS);
    // Civil-from-days (Howard Hinnant's algorithm), then back to day 1 of that month.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    (days - (day_of_month - 1)) * DAY_MS
}

/// A message's properties (REMOTING.md §4.4) as an ordered list, for the few edits the broker
/// makes; `encode` writes `name \x01 value \x02` pairs.
pub struct Properties {
    pairs: Vec<(String, String)>,
}

impl Properties {
    pub fn parse(s: &str) -> Self {
        Properties {
            pairs: engine::properties::parse(s)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.pairs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => {
                v.clear();
                v.push_str(value);
            }
            None => self.pairs.push((name.to_string(), value.to_string())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| k != name);
    }

    pub fn encode(&self) -> String {
        let len: usize = self.pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut s = String::with_capacity(len);
        for (k, v) in &self.pairs {
            s.push_str(k);
            s.push('\u{1}');
            s.push_str(v);
            s.push('\u{2}');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_msg_id_is_32_hex_chars_for_ipv4() {
        let addr: SocketAddr = "10.0.0.1:10911".parse().expect("addr");
        let id = offset_msg_id(addr, CommitLogOffset(0x1234));
        assert_eq!(id, "0A00000100002A9F0000000000001234");
    }

    #[test]
    fn batch_body_decodes_and_rejects_garbage() {
        let mut body = Vec::new();
        for (b, p) in [(&b"hello"[..], "TAGS\u{1}a\u{2}"), (&b"x"[..], "")] {
            let total = 22 + b.len() + p.len();
            body.extend_from_slice(&i32::try_from(total).expect("small").to_be_bytes());
            body.extend_from_slice(&0i32.to_be_bytes());
            body.extend_from_slice(&0i32.to_be_bytes());
            body.extend_from_slice(&7i32.to_be_bytes());
            body.extend_from_slice(&i32::try_from(b.len()).expect("small").to_be_bytes());
            body.extend_from_slice(b);
            body.extend_from_slice(&i16::try_from(p.len()).expect("small").to_be_bytes());
            body.extend_from_slice(p.as_bytes());
        }
        let bytes = Bytes::from(body.clone());
        let entries = decode_batch(&bytes).expect("valid batch");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].body, b"hello");
        assert_eq!(entries[0].flag, 7);
        assert_eq!(entries[0].properties, "TAGS\u{1}a\u{2}");
        for cut in 1..body.len() {
            let _ = decode_batch(&Bytes::from(body[..cut].to_vec()));
        }
        assert!(decode_batch(&Bytes::from(body[..body.len() - 1].to_vec())).is_err());
        assert!(decode_batch(&Bytes::from_static(&[0xff; 30])).is_err());
    }

    #[test]
    fn properties_edit_keeps_order() {
        let mut p = Properties::parse("TAGS\u{1}a\u{2}KEYS\u{1}k\u{2}");
        p.set("CLUSTER", "c");
        p.set("TAGS", "b");
        p.remove("KEYS");
        assert_eq!(p.encode(), "TAGS\u{1}b\u{2}CLUSTER\u{1}c\u{2}");
    }

    #[test]
    fn month_start_is_day_one() {
        // 2024-03-15T12:00:00Z -> 2024-03-01T00:00:00Z
        assert_eq!(month_start_ms(1_710_504_000_000), 1_709_251_200_000);
    }
}
