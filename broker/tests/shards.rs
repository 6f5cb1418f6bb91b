//! `petrel --shards 2`: two logical brokers in one process (DESIGN.md "Shards"). Each shard
//! registers as `<brokerName>_<i>` on `listenPort + i`, hosts the queues of every user topic,
//! and serves sends and pulls of its own queues from its own store.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use common::*;
use serde_json::Value;

/// GET_ROUTEINFO_BY_TOPIC (105) until both shards appear in the route, or fail after 15 s.
fn route_with_both_shards(broker: &Broker, topic: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last;
    loop {
        let mut ns = Client::connect(broker.namesrv_addr())?;
        let r = ns.request(
            RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic),
        )?;
        if r.code == ResponseCode::SUCCESS {
            let v: Value = serde_json::from_slice(&r.body).context("route JSON")?;
            let names: Vec<&str> = v["queueDatas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|q| q["brokerName"].as_str())
                .collect();
            if names.contains(&"test-broker_0") && names.contains(&"test-broker_1") {
                return Ok(v);
            }
            last = v.to_string();
        } else {
            last = code_of(&r);
        }
        if Instant::now() > deadline {
            bail!("route of {topic} never listed both shards; last answer: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The store port inside an offset msgId (hex: 4 bytes IPv4, 4 bytes port, 8 bytes offset).
fn msg_id_port(msg_id: &str) -> Result<u16> {
    let port = i64::from_str_radix(msg_id.get(8..16).context("short msgId")?, 16)?;
    Ok(u16::try_from(port)?)
}

/// A topic auto-created through shard 0 is hosted by both logical brokers (the nameserver
/// route lists `test-broker_0` and `test-broker_1`, each at its own port, with the topic's
/// queues); a send to either shard's address lands in that shard's store and is pulled from
/// the same shard only.
#[test]
fn two_shards_register_separately_and_serve_their_own_queues() -> Result<()> {
    let broker = Broker::start_sharded(2)?;
    let mut shard0 = Client::connect(broker.shard_addr(0))?;
    let mut shard1 = Client::connect(broker.shard_addr(1))?;

    let r = shard0.send_message("ShardTopic", 0, b"to shard 0", "")?;
    assert_success(&r);
    assert_eq!(msg_id_port(r.ext("msgId").context("msgId")?)?, broker.port);

    let route = route_with_both_shards(&broker, "ShardTopic")?;
    for i in 0..2u16 {
        let name = format!("test-broker_{i}");
        let broker_data = route["brokerDatas"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["brokerName"] == name.as_str())
            .with_context(|| format!("{name} missing from brokerDatas: {route}"))?;
        assert_eq!(broker_data["cluster"], "TestCluster", "{route}");
        assert_eq!(
            broker_data["brokerAddrs"]["0"],
            broker.shard_addr(i).to_string(),
            "{route}"
        );
        let queue_data = route["queueDatas"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["brokerName"] == name.as_str())
            .with_context(|| format!("{name} missing from queueDatas: {route}"))?;
        assert_eq!(queue_data["writeQueueNums"], 4, "{route}");
        assert_eq!(queue_data["readQueueNums"], 4, "{route}");
    }

    // Shard 1 already knows the topic (broadcast from shard 0): the send needs no auto-create.
    let r = shard1.send_message("ShardTopic", 0, b"to shard 1", "")?;
    assert_success(&r);
    assert_eq!(
        msg_id_port(r.ext("msgId").context("msgId")?)?,
        broker.port + 1
    );
    assert_eq!(ext_i64(&r, "queueOffset"), 0, "shard 1 has its own queue");

    for (client, body) in [
        (&mut shard0, &b"to shard 0"[..]),
        (&mut shard1, &b"to shard 1"[..]),
    ] {
        let r = client.pull("sg", "ShardTopic", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
        assert_success(&r);
        let records = decode_records(&r.body)?;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].body, body);
        assert_eq!(records[0].topic, "ShardTopic");
    }
    Ok(())
}
