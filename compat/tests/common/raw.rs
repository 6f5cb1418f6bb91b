//! Minimal raw remoting requests, only to observe the broker from outside (the client under
//! test never uses these): JSON header encoding, REMOTING.md §1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

static OPAQUE: AtomicU32 = AtomicU32::new(1);

/// A response to `raw_request`.
#[derive(Debug)]
pub struct RawResponse {
    pub code: i32,
    pub remark: Option<String>,
    pub ext: serde_json::Map<String, serde_json::Value>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn ext_str(&self, k: &str) -> Option<String> {
        self.ext.get(k).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// Sends one request and returns the response.
pub fn raw_request(
    addr: &str,
    code: i32,
    ext: &[(&str, &str)],
    timeout: Duration,
) -> Result<RawResponse> {
    let sa: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let opaque = OPAQUE.fetch_add(1, Ordering::Relaxed) as i32;
    let ext_fields: serde_json::Map<String, serde_json::Value> = ext
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let header = serde_json::json!({
        "code": code, "language": "JAVA", "version": 453, "opaque": opaque, "flag": 0,
        "extFields": ext_fields,
    })
    .to_string();
    let hb = header.as_bytes();
    let mut frame = Vec::with_capacity(8 + hb.len());
    frame.extend_from_slice(&((4 + hb.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(hb.len() as u32).to_be_bytes()); // serializeType 0 = JSON
    frame.extend_from_slice(hb);
    s.write_all(&frame)?;
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).context("reading response length")?;
        let total = u32::from_be_bytes(len) as usize;
        if !(4..=64 << 20).contains(&total) {
            bail!("bad response frame length {total}");
        }
        let mut buf = vec![0u8; total];
        s.read_exact(&mut buf).context("reading response frame")?;
        let hlen = (u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) & 0x00FF_FFFF) as usize;
        if buf[0] != 0 {
            bail!(
                "response uses serializeType {} (expected JSON replies)",
                buf[0]
            );
        }
        if 4 + hlen > total {
            bail!("header length {hlen} exceeds frame {total}");
        }
        let h: serde_json::Value =
            serde_json::from_slice(&buf[4..4 + hlen]).with_context(|| {
                format!(
                    "response header is not JSON: {:?}",
                    String::from_utf8_lossy(&buf[4..4 + hlen])
                )
            })?;
        if h.get("opaque").and_then(|v| v.as_i64()) != Some(i64::from(opaque)) {
            continue; // not ours (e.g. a server-initiated request)
        }
        let rcode = h
            .get("code")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| anyhow!("no code in {h}"))?;
        let remark = h.get("remark").and_then(|v| v.as_str()).map(str::to_string);
        let ext = h
            .get("extFields")
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        return Ok(RawResponse {
            code: rcode as i32,
            remark,
            ext,
            body: buf[4 + hlen..].to_vec(),
        });
    }
}

/// GET_ROUTEINFO_BY_TOPIC (105): Ok(None) for TOPIC_NOT_EXIST (17), else the broker names.
pub fn route_brokers(namesrv: &str, topic: &str) -> Result<Option<Vec<String>>> {
    let RawResponse {
        code, remark, body, ..
    } = raw_request(namesrv, 105, &[("topic", topic)], Duration::from_secs(3))?;
    match code {
        0 => {}
        17 => return Ok(None),
        c => bail!("GET_ROUTEINFO_BY_TOPIC {topic}: code {c} remark {remark:?}"),
    }
    // The body is fastjson-style JSON; brokerName values are plain strings either way.
    let text = String::from_utf8_lossy(&body);
    let mut names = Vec::new();
    let mut rest: &str = &text;
    while let Some(i) = rest.find("brokerName") {
        rest = &rest[i + "brokerName".len()..];
        if let Some(q1) = rest
            .find(':')
            .and_then(|c| rest[c..].find('"').map(|q| c + q + 1))
        {
            if let Some(q2) = rest[q1..].find('"') {
                let n = rest[q1..q1 + q2].to_string();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    Ok(Some(names))
}

/// GET_CONSUMER_LIST_BY_GROUP (38) on one shard: the client ids of the group.
pub fn consumer_ids(broker: &str, group: &str) -> Result<Vec<String>> {
    let RawResponse {
        code, remark, body, ..
    } = raw_request(
        broker,
        38,
        &[("consumerGroup", group)],
        Duration::from_secs(3),
    )?;
    if code != 0 {
        bail!("GET_CONSUMER_LIST_BY_GROUP {group}: code {code} remark {remark:?}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("body: {:?}", String::from_utf8_lossy(&body)))?;
    Ok(v.get("consumerIdList")
        .and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// QUERY_CONSUMER_OFFSET (14) on one shard: Some(offset), or None for QUERY_NOT_FOUND (22).
pub fn committed_offset(
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>> {
    let q = queue_id.to_string();
    let r = raw_request(
        broker,
        14,
        &[("consumerGroup", group), ("topic", topic), ("queueId", &q)],
        Duration::from_secs(3),
    )?;
    match r.code {
        0 => {
            let off = r
                .ext_str("offset")
                .ok_or_else(|| anyhow!("QUERY_CONSUMER_OFFSET: no offset in {:?}", r.ext))?;
            Ok(Some(
                off.parse().with_context(|| format!("offset {off:?}"))?,
            ))
        }
        22 => Ok(None),
        c => bail!(
            "QUERY_CONSUMER_OFFSET {group} {topic} {queue_id}: code {c} remark {:?}",
            r.remark
        ),
    }
}

/// GET_MAX_OFFSET (30) of queue `queue.1` on the shard that serves broker name `queue.0`
/// (`shard_addrs[i]` serves `petrel_<i>`): the offset the next message there gets.
pub fn queue_max_offset(shard_addrs: &[String], topic: &str, queue: &(String, i32)) -> Result<i64> {
    let shard =
        super::shard_of(&queue.0).ok_or_else(|| anyhow!("unexpected broker name {}", queue.0))?;
    let addr = shard_addrs
        .get(usize::from(shard))
        .ok_or_else(|| anyhow!("no address for shard {shard}"))?;
    let q = queue.1.to_string();
    let r = raw_request(
        addr,
        30,
        &[("topic", topic), ("queueId", &q)],
        Duration::from_secs(3),
    )?;
    if r.code != 0 {
        bail!(
            "GET_MAX_OFFSET {topic} {queue:?}: code {} remark {:?}",
            r.code,
            r.remark
        );
    }
    let off = r
        .ext_str("offset")
        .ok_or_else(|| anyhow!("GET_MAX_OFFSET: no offset in {:?}", r.ext))?;
    off.parse().with_context(|| format!("offset {off:?}"))
}
