//! Encode a stored record into the caller's buffer. Never allocates beyond the buffer's growth.

use std::net::SocketAddr;

use bytes::BufMut;

use super::{
    PutMessage, MAGIC_V1, MAGIC_V2, PROPERTIES_LEN_MAX, SYS_FLAG_BORN_HOST_V6,
    SYS_FLAG_STORE_HOST_V6, TOPIC_LEN_MAX,
};
use crate::error::PutError;

fn host_size(a: &SocketAddr) -> usize {
    match a {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

/// Checks the limits that make a message unstorable (sizes), before anything is assigned.
pub(crate) fn check(msg: &PutMessage<'_>, body_size_max: u32) -> Result<(), PutError> {
    if msg.body.len() > body_size_max as usize {
        return Err(PutError::BodyTooLarge {
            size: msg.body.len(),
            max: body_size_max,
        });
    }
    if msg.properties.len() > PROPERTIES_LEN_MAX {
        return Err(PutError::PropertiesTooLong {
            size: msg.properties.len(),
        });
    }
    if msg.topic.is_empty() || msg.topic.len() > TOPIC_LEN_MAX {
        return Err(PutError::TopicTooLong {
            size: msg.topic.len(),
        });
    }
    Ok(())
}

/// Bytes `encode` will write for `msg` (call `check` first).
pub(crate) fn encoded_size(msg: &PutMessage<'_>) -> usize {
    let topic_len_size = if msg.topic.len() > 127 { 2 } else { 1 };
    72 + host_size(&msg.born_host)
        + host_size(&msg.store_host)
        + msg.body.len()
        + topic_len_size
        + msg.topic.len()
        + 2
        + msg.properties.len()
}

fn put_host(dst: &mut impl BufMut, a: &SocketAddr) {
    match a {
        SocketAddr::V4(v4) => dst.put_slice(&v4.ip().octets()),
        SocketAddr::V6(v6) => dst.put_slice(&v6.ip().octets()),
    }
    dst.put_i32(i32::from(a.port()));
}

/// Appends one stored record for `msg` to `dst` and returns its size. The caller has checked
/// the limits (`PutError` variants) and assigned the offsets and the store timestamp.
pub fn encode(
    dst: &mut impl BufMut,
    msg: &PutMessage<'_>,
    queue_offset: u64,
    commit_log_offset: u64,
    store_timestamp_ms: i64,
) -> u32 {
    let size = encoded_size(msg);
    debug_assert!(size <= i32::MAX as usize);
    let is_v2 = msg.topic.len() > 127;
    let mut sys_flag = msg.sys_flag & !(SYS_FLAG_BORN_HOST_V6 | SYS_FLAG_STORE_HOST_V6);
    if msg.born_host.is_ipv6() {
        sys_flag |= SYS_FLAG_BORN_HOST_V6;
    }
    if msg.store_host.is_ipv6() {
        sys_flag |= SYS_FLAG_STORE_HOST_V6;
    }
    let crc = (crc32fast::hash(msg.body) & 0x7FFF_FFFF) as i32;
    dst.put_i32(size as i32);
    dst.put_i32(if is_v2 { MAGIC_V2 } else { MAGIC_V1 });
    dst.put_i32(crc);
    dst.put_i32(msg.queue_id.0 as i32);
    dst.put_i32(msg.flag);
    dst.put_i64(queue_offset as i64);
    dst.put_i64(commit_log_offset as i64);
    dst.put_i32(sys_flag);
    dst.put_i64(msg.born_timestamp_ms);
    put_host(dst, &msg.born_host);
    dst.put_i64(store_timestamp_ms);
    put_host(dst, &msg.store_host);
    dst.put_i32(msg.reconsume_times);
    dst.put_i64(msg.prepared_transaction_offset);
    dst.put_i32(msg.body.len() as i32);
    dst.put_slice(msg.body);
    if is_v2 {
        dst.put_i16(msg.topic.len() as i16);
    } else {
        dst.put_i8(msg.topic.len() as i8);
    }
    dst.put_slice(msg.topic.as_bytes());
    dst.put_i16(msg.properties.len() as i16);
    dst.put_slice(msg.properties.as_bytes());
    size as u32
}
