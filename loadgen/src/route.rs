//! Where sends go. With a nameserver, the topic's route (GET_ROUTEINFO_BY_TOPIC, REMOTING.md
//! §2.7 and §6.2) lists every master broker and its write queues; Petrel registers one
//! logical broker per core, so a route usually has several brokers on one host. If the
//! topic has no route yet, loadgen creates it on every broker the cluster knows
//! (UPDATE_AND_CREATE_TOPIC) and waits for the brokers to re-register it.
//! With a broker address alone, sends go to queues `0..queues` of that broker.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::client::Client;
use crate::codec::{self, response_code, RemotingCommand};

/// Control calls (route, create topic, config) are given this long.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a newly created topic to show in the nameserver's route.
const ROUTE_WAIT_MAX: Duration = Duration::from_secs(20);
/// Queue perm bit WRITE (REMOTING.md §7.7).
const PERM_WRITE: u64 = 2;

/// One broker and the queues of the topic loadgen sends to there.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Target {
    pub broker_name: String,
    pub addr: SocketAddr,
    pub queue_ids: Vec<u32>,
}

/// What loadgen was pointed at.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint {
    Namesrv(SocketAddr),
    Broker(SocketAddr),
}

/// Resolves `host:port` (first address).
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    s.to_socket_addrs()
        .with_context(|| format!("resolve {s}"))?
        .next()
        .ok_or_else(|| anyhow!("{s} resolves to no address"))
}

/// The targets for `topic`, creating the topic (`queue_count` queues per broker) if needed.
/// At most `queue_count` write queues per broker are used.
pub fn resolve_targets(endpoint: Endpoint, topic: &str, queue_count: u32) -> Result<Vec<Target>> {
    match endpoint {
        Endpoint::Broker(addr) => {
            create_topic(addr, topic, queue_count)?;
            Ok(vec![Target {
                broker_name: addr.to_string(),
                addr,
                queue_ids: (0..queue_count).collect(),
            }])
        }
        Endpoint::Namesrv(namesrv) => {
            if let Some(targets) = fetch_route(namesrv, topic, queue_count)? {
                return Ok(targets);
            }
            let brokers = cluster_brokers(namesrv)?;
            if brokers.is_empty() {
                bail!("the nameserver at {namesrv} knows no broker");
            }
            for (name, addr) in &brokers {
                create_topic(*addr, topic, queue_count)
                    .with_context(|| format!("create topic {topic} on {name}"))?;
            }
            let deadline = Instant::now() + ROUTE_WAIT_MAX;
            loop {
                if let Some(targets) = fetch_route(namesrv, topic, queue_count)? {
                    if targets.len() >= brokers.len() {
                        return Ok(targets);
                    }
                }
                if Instant::now() >= deadline {
                    bail!(
                        "topic {topic} was created on {} brokers but its route did not list them \
                         all within {ROUTE_WAIT_MAX:?}",
                        brokers.len()
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn call(addr: SocketAddr, request: RemotingCommand) -> Result<RemotingCommand> {
    Client::connect(addr, CONTROL_TIMEOUT)?.call(request, CONTROL_TIMEOUT)
}

fn body_json(cmd: &RemotingCommand) -> Result<Value> {
    let text = std::str::from_utf8(&cmd.body).context("route body is not UTF-8")?;
    serde_json::from_str(&quote_bare_keys(text)).context("route body is not JSON")
}

/// The route of `topic`, or None if the nameserver has none (TOPIC_NOT_EXIST).
pub fn fetch_route(
    namesrv: SocketAddr,
    topic: &str,
    queue_count: u32,
) -> Result<Option<Vec<Target>>> {
    let response = call(namesrv, codec::route_request(topic))?;
    if response.code == response_code::TOPIC_NOT_EXIST {
        return Ok(None);
    }
    if response.code != response_code::SUCCESS {
        bail!(
            "route of {topic}: {} {}",
            codec::response_code_name(response.code),
            response.remark.unwrap_or_default()
        );
    }
    let route = body_json(&response)?;
    let targets = targets_from_route(&route, queue_count)?;
    Ok(if targets.is_empty() {
        None
    } else {
        Some(targets)
    })
}

/// Master brokers with WRITE perm, their first `queue_count` write queues, sorted by name.
pub fn targets_from_route(route: &Value, queue_count: u32) -> Result<Vec<Target>> {
    let empty = Vec::new();
    let queue_datas = route["queueDatas"].as_array().unwrap_or(&empty);
    let broker_datas = route["brokerDatas"].as_array().unwrap_or(&empty);
    let mut targets = Vec::new();
    for qd in queue_datas {
        let name = qd["brokerName"].as_str().unwrap_or_default();
        let perm = qd["perm"].as_u64().unwrap_or(0);
        let write_queues = qd["writeQueueNums"].as_u64().unwrap_or(0);
        if perm & PERM_WRITE == 0 || write_queues == 0 {
            continue;
        }
        let master = broker_datas
            .iter()
            .find(|bd| bd["brokerName"].as_str() == Some(name))
            .and_then(|bd| bd["brokerAddrs"]["0"].as_str());
        let Some(master) = master else { continue };
        let n = u32::try_from(write_queues)
            .unwrap_or(u32::MAX)
            .min(queue_count.max(1));
        targets.push(Target {
            broker_name: name.to_string(),
            addr: parse_addr(master)?,
            queue_ids: (0..n).collect(),
        });
    }
    targets.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    Ok(targets)
}

/// (broker name, master address) of every broker in the cluster info (106).
pub fn cluster_brokers(namesrv: SocketAddr) -> Result<Vec<(String, SocketAddr)>> {
    let request = RemotingCommand::request(codec::request_code::GET_BROKER_CLUSTER_INFO);
    let response = call(namesrv, request)?;
    if response.code != response_code::SUCCESS {
        bail!("cluster info: {}", codec::response_code_name(response.code));
    }
    let info = body_json(&response)?;
    let mut brokers = Vec::new();
    if let Some(table) = info["brokerAddrTable"].as_object() {
        for (name, bd) in table {
            if let Some(addr) = bd["brokerAddrs"]["0"].as_str() {
                brokers.push((name.clone(), parse_addr(addr)?));
            }
        }
    }
    brokers.sort();
    Ok(brokers)
}

/// Creates (or updates) `topic` on one broker.
pub fn create_topic(broker: SocketAddr, topic: &str, queue_count: u32) -> Result<()> {
    let response = call(broker, codec::create_topic_request(topic, queue_count))?;
    if response.code != response_code::SUCCESS {
        bail!(
            "create topic {topic} on {broker}: {} {}",
            codec::response_code_name(response.code),
            response.remark.unwrap_or_default()
        );
    }
    Ok(())
}

/// The broker's `flushDiskType` from GET_BROKER_CONFIG, if it answers it.
pub fn broker_flush_mode(broker: SocketAddr) -> Option<String> {
    let request = RemotingCommand::request(codec::request_code::GET_BROKER_CONFIG);
    let response = call(broker, request).ok()?;
    if response.code != response_code::SUCCESS {
        return None;
    }
    let text = String::from_utf8_lossy(&response.body).into_owned();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "flushDiskType")
        .map(|(_, v)| v.trim().to_string())
}

/// The next offset to be written in a queue (GET_MAX_OFFSET).
pub fn max_offset(client: &mut Client, topic: &str, queue_id: u32) -> Result<u64> {
    let response = client.call(codec::max_offset_request(topic, queue_id), CONTROL_TIMEOUT)?;
    if response.code != response_code::SUCCESS {
        bail!(
            "max offset of {topic}/{queue_id}: {}",
            codec::response_code_name(response.code)
        );
    }
    response
        .ext("offset")
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| anyhow!("max offset response without a numeric `offset`"))
}

/// fastjson writes maps with integer keys bare (`{0:"a"}`, REMOTING.md §6.1); quote them so
/// a standard JSON parser accepts the text. Strings are left untouched.
pub fn quote_bare_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
            expect_key = false;
        } else if c == b'{' || c == b',' {
            expect_key = true;
        } else if expect_key && (c == b'-' || c.is_ascii_digit()) {
            let start = i;
            let mut end = i + 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            let mut after = end;
            while after < bytes.len() && bytes[after].is_ascii_whitespace() {
                after += 1;
            }
            if bytes.get(after) == Some(&b':') {
                out.push('"');
                out.push_str(&text[start..end]);
                out.push('"');
                i = end;
                expect_key = false;
                continue;
            }
            expect_key = false;
        } else if !c.is_ascii_whitespace() {
            expect_key = false;
        }
        // Copy one UTF-8 character.
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_integer_keys_are_quoted_and_strings_kept() {
        let s = r#"{"brokerAddrs":{0:"10.0.0.1:10911", 1 :"x,2:y"},"n":{"a":3}}"#;
        let fixed = quote_bare_keys(s);
        let v: Value = serde_json::from_str(&fixed).expect("valid JSON");
        assert_eq!(v["brokerAddrs"]["0"], "10.0.0.1:10911");
        assert_eq!(v["brokerAddrs"]["1"], "x,2:y");
        assert_eq!(v["n"]["a"], 3);
    }

    #[test]
    fn route_gives_masters_with_write_queues() {
        let route: Value = serde_json::from_str(
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"b_1","cluster":"c"},
                {"brokerAddrs":{"0":"127.0.0.1:10912"},"brokerName":"b_0","cluster":"c"},
                {"brokerAddrs":{"1":"127.0.0.1:10913"},"brokerName":"slave_only","cluster":"c"}],
               "filterServerTable":{},
               "queueDatas":[{"brokerName":"b_1","perm":6,"readQueueNums":8,"writeQueueNums":8,"topicSysFlag":0},
                {"brokerName":"b_0","perm":6,"readQueueNums":2,"writeQueueNums":2,"topicSysFlag":0},
                {"brokerName":"slave_only","perm":6,"readQueueNums":2,"writeQueueNums":2,"topicSysFlag":0}]}"#,
        )
        .expect("json");
        let t = targets_from_route(&route, 4).expect("targets");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].broker_name, "b_0");
        assert_eq!(t[0].queue_ids, vec![0, 1]);
        assert_eq!(t[1].queue_ids, vec![0, 1, 2, 3]);
        assert_eq!(t[1].addr.port(), 10911);
    }
}
