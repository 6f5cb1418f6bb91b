//! Nameserver request processing: one function per request code (REMOTING.md §2.7, §7.9).

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use super::route_table::{put_string_array, Registration, RouteTable, TopicRegistration};
use crate::remoting::code::remark;
use crate::remoting::header::put_json_string;
use crate::remoting::{RemotingCommand, RequestCode, ResponseCode};

/// Java 4.9.4 (`V4_9_4` ordinal): from this client version on, routes use quoted keys.
const VERSION_STANDARD_JSON: i32 = 401;

/// Answer one nameserver request. `conn_id` identifies the connection (registrations are
/// tied to it). The connection layer drops the answer to a oneway request.
pub fn process(
    table: &mut RouteTable,
    conn_id: u64,
    req: &RemotingCommand,
    now: Instant,
) -> RemotingCommand {
    let opaque = req.opaque;
    let r = match req.code {
        RequestCode::REGISTER_BROKER => register_broker(table, conn_id, req, now),
        RequestCode::UNREGISTER_BROKER => unregister_broker(table, req),
        RequestCode::GET_ROUTEINFO_BY_TOPIC => get_route(table, req),
        RequestCode::GET_BROKER_CLUSTER_INFO => {
            Ok(success(opaque).with_body(table.cluster_info_json().freeze()))
        }
        RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
            Ok(topic_list(opaque, table.topic_names(), None))
        }
        RequestCode::GET_TOPICS_BY_CLUSTER => required(req, "cluster")
            .map(|c| topic_list(opaque, table.topics_of_cluster(c).into_iter(), None)),
        RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
            let (names, addr) = table.system_topics();
            Ok(topic_list(opaque, names.into_iter(), addr))
        }
        RequestCode::DELETE_TOPIC_IN_NAMESRV => required(req, "topic").map(|topic| {
            let topic = topic.to_owned();
            table.delete_topic(&topic, req.ext("clusterName").filter(|c| !c.is_empty()));
            success(opaque)
        }),
        RequestCode::PUT_KV_CONFIG => put_kv(table, req),
        RequestCode::GET_KV_CONFIG => get_kv(table, req),
        RequestCode::DELETE_KV_CONFIG => required(req, "namespace").and_then(|ns| {
            let key = required(req, "key")?;
            table.kv_delete(ns, key);
            Ok(success(opaque))
        }),
        RequestCode::GET_KVLIST_BY_NAMESPACE => {
            required(req, "namespace").map(|ns| match table.kv_namespace(ns) {
                Some(map) => success(opaque).with_body(kv_table_json(map.iter())),
                None => RemotingCommand::response(
                    ResponseCode::QUERY_NOT_FOUND,
                    opaque,
                    Some(format!("No config item, Namespace: {ns}")),
                ),
            })
        }
        RequestCode::QUERY_DATA_VERSION => query_data_version(table, req, now),
        RequestCode::BROKER_HEARTBEAT => required(req, "brokerAddr").map(|addr| {
            table.touch(addr, now);
            success(opaque)
        }),
        RequestCode::GET_NAMESRV_CONFIG => Ok(success(opaque).with_body(Bytes::from_static(b""))),
        code => Ok(RemotingCommand::response(
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
            opaque,
            Some(remark::request_code_not_supported(code)),
        )),
    };
    r.unwrap_or_else(|remark| {
        RemotingCommand::response(ResponseCode::SYSTEM_ERROR, opaque, Some(remark))
    })
}

fn success(opaque: i32) -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, opaque, None)
}

fn required<'a>(req: &'a RemotingCommand, field: &str) -> Result<&'a str, String> {
    req.ext(field)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the custom field <{field}> is null"))
}

fn parse_field<T: std::str::FromStr>(req: &RemotingCommand, field: &str) -> Result<T, String> {
    let v = required(req, field)?;
    v.trim()
        .parse()
        .map_err(|_| format!("the custom field <{field}> is invalid: {v:?}"))
}

fn topic_list<'a>(
    opaque: i32,
    names: impl Iterator<Item = &'a str>,
    broker_addr: Option<&str>,
) -> RemotingCommand {
    let mut out = BytesMut::with_capacity(256);
    out.put_u8(b'{');
    if let Some(addr) = broker_addr {
        out.put_slice(b"\"brokerAddr\":");
        put_json_string(&mut out, addr);
        out.put_u8(b',');
    }
    out.put_slice(b"\"topicList\":");
    put_string_array(&mut out, names);
    out.put_u8(b'}');
    success(opaque).with_body(out.freeze())
}

fn kv_table_json<'a>(entries: impl Iterator<Item = (&'a String, &'a String)>) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.put_slice(b"{\"table\":{");
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_json_string(&mut out, k);
        out.put_u8(b':');
        put_json_string(&mut out, v);
    }
    out.put_slice(b"}}");
    out.freeze()
}

fn get_route(table: &RouteTable, req: &RemotingCommand) -> Result<RemotingCommand, String> {
    let topic = required(req, "topic")?;
    let quoted = req.version >= VERSION_STANDARD_JSON
        || req
            .ext("acceptStandardJsonOnly")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(match table.route_json(topic, quoted) {
        Some(body) => success(req.opaque).with_body(body.freeze()),
        None => RemotingCommand::response(
            ResponseCode::TOPIC_NOT_EXIST,
            req.opaque,
            Some(format!(
                "No topic route info in name server for the topic: {topic}\nSee http://rocketmq.apache.org/docs/faq/ for further details."
            )),
        ),
    })
}

fn register_broker(
    table: &mut RouteTable,
    conn_id: u64,
    req: &RemotingCommand,
    now: Instant,
) -> Result<RemotingCommand, String> {
    let broker_name = required(req, "brokerName")?.to_owned();
    let broker_addr = required(req, "brokerAddr")?.to_owned();
    let cluster_name = required(req, "clusterName")?.to_owned();
    let broker_id: i64 = parse_field(req, "brokerId")?;
    if req
        .ext("compressed")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(
            "compressed REGISTER_BROKER bodies are not supported; set compressedRegister=false"
                .into(),
        );
    }
    let heartbeat_timeout = req
        .ext("heartbeatTimeoutMillis")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(
            super::route_table::BROKER_EXPIRY_DEFAULT,
            Duration::from_millis,
        );
    let (data_version, topics) = parse_register_body(&req.body)?;
    table
        .register(
            Registration {
                cluster_name,
                broker_name,
                broker_addr,
                broker_id,
                zone_name: req.ext("__ZONE_NAME").map(str::to_owned),
                enable_acting_master: req
                    .ext("enableActingMaster")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                heartbeat_timeout,
                data_version,
                topics,
                conn_id,
            },
            now,
        )
        .map_err(|e| e.to_string())?;
    Ok(success(req.opaque))
}

/// RegisterBrokerBody: `{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{..},
/// "topicConfigTable":{"T":{..}}}}`. An empty body registers no topics.
pub fn parse_register_body(body: &[u8]) -> Result<(String, Vec<TopicRegistration>), String> {
    if body.is_empty() {
        return Ok(("{}".into(), Vec::new()));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("REGISTER_BROKER body is not JSON: {e}"))?;
    let wrapper = v.get("topicConfigSerializeWrapper").unwrap_or(&Value::Null);
    let data_version = wrapper
        .get("dataVersion")
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    let mut topics = Vec::new();
    if let Some(table) = wrapper.get("topicConfigTable").and_then(Value::as_object) {
        for (name, tc) in table {
            let num = |field: &str, default: u32| -> u32 {
                match tc.get(field) {
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(default),
                    Some(Value::String(s)) => s.trim().parse().unwrap_or(default),
                    _ => default,
                }
            };
            topics.push(TopicRegistration {
                topic_name: tc
                    .get("topicName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(name)
                    .to_owned(),
                read_queue_nums: num("readQueueNums", 16),
                write_queue_nums: num("writeQueueNums", 16),
                perm: num("perm", 6),
                topic_sys_flag: num("topicSysFlag", 0),
            });
        }
    }
    Ok((data_version, topics))
}

fn unregister_broker(
    table: &mut RouteTable,
    req: &RemotingCommand,
) -> Result<RemotingCommand, String> {
    let broker_name = required(req, "brokerName")?;
    let broker_addr = required(req, "brokerAddr")?;
    let broker_id: i64 = parse_field(req, "brokerId")?;
    table.unregister(broker_name, broker_addr, broker_id);
    Ok(success(req.opaque))
}

fn put_kv(table: &mut RouteTable, req: &RemotingCommand) -> Result<RemotingCommand, String> {
    let ns = required(req, "namespace")?;
    let key = required(req, "key")?;
    let value = req.ext("value").unwrap_or_default();
    if !table.kv_put(ns, key, value) {
        return Err("too many KV config entries".into());
    }
    Ok(success(req.opaque))
}

fn get_kv(table: &RouteTable, req: &RemotingCommand) -> Result<RemotingCommand, String> {
    let ns = required(req, "namespace")?;
    let key = required(req, "key")?;
    Ok(match table.kv_get(ns, key) {
        Some(v) => success(req.opaque).with_ext("value", v),
        None => RemotingCommand::response(
            ResponseCode::QUERY_NOT_FOUND,
            req.opaque,
            Some(format!("No config item, Namespace: {ns} Key: {key}")),
        ),
    })
}

fn query_data_version(
    table: &mut RouteTable,
    req: &RemotingCommand,
    now: Instant,
) -> Result<RemotingCommand, String> {
    let broker_addr = required(req, "brokerAddr")?;
    let sent: Option<Value> = serde_json::from_slice(&req.body).ok();
    let stored = table.data_version(broker_addr).map(str::to_owned);
    let stored_value: Option<Value> = stored.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let is_changed = stored_value.is_none() || sent != stored_value;
    if !is_changed {
        table.touch(broker_addr, now);
    }
    let mut resp = success(req.opaque).with_ext("changed", is_changed);
    if let Some(s) = stored {
        resp = resp.with_body(Bytes::from(s));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_body_in_java_shape_parses() {
        let body = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1},"topicConfigTable":{"T":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":"8"}}}}"#;
        let (dv, topics) = parse_register_body(body).expect("parses");
        assert!(dv.contains("\"counter\":3"));
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].write_queue_nums, 8);
        assert!(parse_register_body(b"{").is_err());
    }

    #[test]
    fn unknown_code_and_missing_kv_answer_like_java() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let r = process(
            &mut t,
            1,
            &RemotingCommand::request(9999).with_opaque(4),
            now,
        );
        assert_eq!(r.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
        assert_eq!(r.opaque, 4);
        let get = RemotingCommand::request(RequestCode::GET_KV_CONFIG)
            .with_ext("namespace", "ORDER_TOPIC_CONFIG")
            .with_ext("key", "T");
        assert_eq!(
            process(&mut t, 1, &get, now).code,
            ResponseCode::QUERY_NOT_FOUND
        );
        let route =
            RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "T");
        assert_eq!(
            process(&mut t, 1, &route, now).code,
            ResponseCode::TOPIC_NOT_EXIST
        );
    }
}
