//! `petrel admin` against a real `petrel` broker (embedded nameserver), and the metrics
//! endpoint. Each test starts its own broker on free ports with a temp store.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use common::{assert_success, free_port, props, Broker};

/// This host's disk sits near the default 90% write limit; these tests are not about that.
const DISK_TOLERANT: &[&str] = &[
    "diskSpaceWarningLevelRatio=0.99",
    "diskMaxUsedSpaceRatio=95",
];

/// Runs `petrel admin -n <namesrv> <args>`; fails unless it exits 0. Returns stdout.
fn admin(broker: &Broker, args: &[&str]) -> Result<String> {
    let out = admin_output(broker, args)?;
    if !out.status.success() {
        bail!(
            "petrel admin {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn admin_output(broker: &Broker, args: &[&str]) -> Result<std::process::Output> {
    let ns = broker.namesrv_addr().to_string();
    Command::new(env!("CARGO_BIN_EXE_petrel"))
        .arg("admin")
        .args(["-n", &ns])
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .env("RUST_LOG", "warn")
        .output()
        .context("run petrel admin")
}

/// Retries `admin` until `accept(stdout)` holds (registration with the nameserver is async).
fn admin_until(broker: &Broker, args: &[&str], accept: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = admin_output(broker, args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && accept(&stdout) {
            return Ok(stdout);
        }
        if Instant::now() > deadline {
            bail!(
                "petrel admin {args:?} never gave the expected output; last stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The data row of a table whose first columns are `prefix` (whitespace-separated).
fn row<'a>(table: &'a str, prefix: &[&str]) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() >= prefix.len() && cols[..prefix.len()] == *prefix)
}

/// Creates a topic with the CLI, sends to it, then reads it back through every query command:
/// status, key and id lookups, a consumer group's progress, the cluster list, and deletion.
#[test]
fn admin_commands_create_inspect_and_delete_a_topic() -> Result<()> {
    let broker = Broker::start_with(DISK_TOLERANT)?;
    let topic = "AdminTopic";

    let out = admin(
        &broker,
        &["update-topic", "-t", topic, "-r", "2", "-w", "2"],
    )?;
    assert!(out.contains("success"), "{out}");
    admin_until(&broker, &["topic-list"], |o| o.lines().any(|l| l == topic))?;
    let route = admin(&broker, &["topic-route", "-t", topic])?;
    assert!(
        row(&route, &["test-broker_0", "2", "2"]).is_some(),
        "{route}"
    );

    let mut client = broker.client()?;
    let mut first_msg_id = String::new();
    for (queue_id, count) in [(0, 3), (1, 2)] {
        for i in 0..count {
            let keys = if queue_id == 1 && i == 1 {
                "order-42 other"
            } else {
                "plain"
            };
            let body = format!("body-{queue_id}-{i}");
            let r = client.send_message(
                topic,
                queue_id,
                body.as_bytes(),
                &props(&[("KEYS", keys), ("TAGS", "TagA")]),
            )?;
            assert_success(&r);
            if first_msg_id.is_empty() {
                first_msg_id = r.ext("msgId").context("msgId")?.to_string();
            }
        }
    }

    let status = admin(&broker, &["topic-status", "-t", topic])?;
    let q0 = row(&status, &["test-broker_0", "0"]).context(status.clone())?;
    let q1 = row(&status, &["test-broker_0", "1"]).context(status.clone())?;
    assert_eq!((q0[2], q0[3]), ("0", "3"), "{status}");
    assert_eq!((q1[2], q1[3]), ("0", "2"), "{status}");
    assert_ne!(q0[4], "-", "last update time shown: {status}");

    let by_key = admin(
        &broker,
        &["query-msg-by-key", "-t", topic, "-k", "order-42"],
    )?;
    assert_eq!(
        by_key.lines().count(),
        2,
        "header and one message: {by_key}"
    );
    assert!(by_key.contains("order-42 other"), "{by_key}");
    let missing = admin_output(&broker, &["query-msg-by-key", "-t", topic, "-k", "nope"])?;
    assert!(!missing.status.success());

    let by_id = admin(&broker, &["query-msg-by-id", "-i", &first_msg_id])?;
    assert!(by_id.contains("body-0-0"), "{by_id}");
    assert!(by_id.contains(topic), "{by_id}");

    // A consumer group: one member (heartbeat), offsets committed on queue 0 only.
    let group = "admin-group";
    let mut consumer = broker.client()?;
    assert_success(&consumer.heartbeat("10.0.0.9@1#1", group, topic, "*")?);
    let commit = RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 2);
    assert_success(&consumer.request(commit)?);
    let progress = admin(&broker, &["consumer-progress", "-g", group])?;
    let p0 = row(&progress, &[topic, "test-broker_0", "0"]).context(progress.clone())?;
    assert_eq!((p0[3], p0[4], p0[5]), ("3", "2", "1"), "{progress}");
    let p1 = row(&progress, &[topic, "test-broker_0", "1"]).context(progress.clone())?;
    assert_eq!(
        (p1[3], p1[4]),
        ("2", "0"),
        "no commit on queue 1: {progress}"
    );
    assert!(progress.contains("Diff Total: 3"), "{progress}");

    // GET_CONSUMER_CONNECTION_LIST: the member, or CONSUMER_NOT_ONLINE.
    let conns = client.request(
        RemotingCommand::request(RequestCode::GET_CONSUMER_CONNECTION_LIST)
            .with_ext("consumerGroup", group),
    )?;
    assert_success(&conns);
    let body: serde_json::Value = serde_json::from_slice(&conns.body)?;
    assert_eq!(body["connectionSet"][0]["clientId"], "10.0.0.9@1#1");
    assert_eq!(body["messageModel"], "CLUSTERING");
    assert!(body["subscriptionTable"][topic].is_object(), "{body}");
    let none = client.request(
        RemotingCommand::request(RequestCode::GET_CONSUMER_CONNECTION_LIST)
            .with_ext("consumerGroup", "nobody"),
    )?;
    assert_eq!(none.code, ResponseCode::CONSUMER_NOT_ONLINE);

    let clusters = admin(&broker, &["cluster-list"])?;
    let b0 = row(&clusters, &["TestCluster", "test-broker_0", "0"]).context(clusters.clone())?;
    assert_eq!(b0[3], broker.addr().to_string());
    assert_eq!(b0[7], "5", "five messages put today: {clusters}");

    let deleted = admin(&broker, &["delete-topic", "-t", topic])?;
    assert!(deleted.contains("success"), "{deleted}");
    admin_until(&broker, &["topic-list"], |o| !o.lines().any(|l| l == topic))?;
    let gone = admin_output(&broker, &["topic-status", "-t", topic])?;
    assert!(
        !gone.status.success(),
        "topic-status of a deleted topic fails"
    );
    Ok(())
}

/// A bad nameserver address and a malformed message id fail with a message, not a panic.
#[test]
fn admin_errors_are_reported_with_exit_code_1() -> Result<()> {
    let port = free_port()?;
    let out = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["admin", "-n", &format!("127.0.0.1:{port}"), "topic-list"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let out = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["admin", "query-msg-by-id", "-i", "XYZ"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an offset message id"));
    Ok(())
}

/// GET /metrics on `addr`; returns the body.
fn scrape(addr: &str, path: &str) -> Result<(String, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    Ok((head.to_string(), body.to_string()))
}

fn metric(body: &str, series: &str) -> Result<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .with_context(|| format!("{series} missing in:\n{body}"))?
        .trim()
        .parse()
        .context("metric value")
}

/// Sends raise petrel_messages_put_total and the latency histogram on shard 0's endpoint.
#[test]
fn metrics_endpoint_counts_sends() -> Result<()> {
    let metrics_port = free_port()?;
    let metrics_conf = format!("metricsPort={metrics_port}");
    let mut conf = DISK_TOLERANT.to_vec();
    conf.push(&metrics_conf);
    let broker = Broker::start_with(&conf)?;
    let addr = format!("127.0.0.1:{metrics_port}");
    let (head, before) = scrape(&addr, "/metrics")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let put = "petrel_messages_put_total{shard=\"0\"}";
    let count = "petrel_send_latency_seconds_count{shard=\"0\"}";
    let put_before = metric(&before, put)?;

    let mut client = broker.client()?;
    for i in 0..3 {
        assert_success(&client.send_message("MetricsTopic", 0, format!("m{i}").as_bytes(), "")?);
    }
    let r = client.pull("metrics-group", "MetricsTopic", 0, 0, 0x4, "*", 0)?;
    assert_success(&r);

    let (_, after) = scrape(&addr, "/metrics")?;
    assert_eq!(metric(&after, put)? - put_before, 3.0, "{after}");
    assert!(metric(&after, count)? >= 3.0, "{after}");
    assert!(metric(&after, "petrel_bytes_put_total{shard=\"0\"}")? >= 6.0);
    assert_eq!(
        metric(&after, "petrel_pulled_messages_total{shard=\"0\"}")?,
        3.0
    );
    assert!(metric(&after, "petrel_commitlog_max_offset_bytes{shard=\"0\"}")? > 0.0);
    assert!(after.contains("petrel_send_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"}"));

    let (head, _) = scrape(&addr, "/nope")?;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    Ok(())
}
