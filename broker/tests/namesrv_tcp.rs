//! The nameserver over real loopback TCP: a standalone `petrel namesrv` process started on a
//! port the test picks, driven by a blocking client with the crate's codec.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::remoting::{RemotingCommand, RequestCode, ResponseCode, FRAME_SIZE_MAX_DEFAULT};
use bytes::BytesMut;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "common/ports.rs"]
mod ports;

fn free_port() -> u16 {
    ports::free_port().expect("a free loopback port")
}

fn start_namesrv() -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args([
            "namesrv",
            "--port",
            &port.to_string(),
            "--bind-address",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn petrel namesrv");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nameserver did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (proc, port)
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: BytesMut::new(),
            next_opaque: 1,
        }
    }

    fn call(&mut self, mut req: RemotingCommand) -> RemotingCommand {
        req.opaque = self.next_opaque;
        self.next_opaque += 1;
        self.stream.write_all(&req.to_frame()).expect("write");
        loop {
            if let Some(resp) =
                RemotingCommand::decode(&mut self.buf, FRAME_SIZE_MAX_DEFAULT).expect("frame")
            {
                assert!(resp.is_response());
                assert_eq!(resp.opaque, req.opaque);
                return resp;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "nameserver closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn register(broker_name: &str, addr: &str, topics: &[&str], timeout_ms: u64) -> RemotingCommand {
    let table: Vec<String> = topics
        .iter()
        .map(|t| {
            format!(
                r#""{t}":{{"attributes":{{}},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"{t}","topicSysFlag":0,"writeQueueNums":4}}"#
            )
        })
        .collect();
    let wrapper = format!(
        r#"{{"dataVersion":{{"counter":1,"stateVersion":0,"timestamp":1}},"topicConfigTable":{{{}}}}}"#,
        table.join(",")
    );
    let mut req = broker::runtime::register_broker_request(
        "DefaultCluster",
        broker_name,
        addr,
        wrapper.as_bytes(),
    );
    req.ext_fields
        .insert("heartbeatTimeoutMillis".into(), timeout_ms.to_string());
    req
}

fn route(topic: &str) -> RemotingCommand {
    RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic)
}

#[test]
fn registered_broker_serves_routes_cluster_info_and_topic_list() {
    let (_p, port) = start_namesrv();
    let mut broker = Client::connect(port);
    let r = broker.call(register(
        "b_0",
        "127.0.0.1:10911",
        &["T", "TBW102"],
        120_000,
    ));
    assert_eq!(r.code, ResponseCode::SUCCESS, "{:?}", r.remark);
    let r = broker.call(register("b_1", "127.0.0.1:10912", &["T"], 120_000));
    assert_eq!(r.code, ResponseCode::SUCCESS);

    let mut client = Client::connect(port);
    let r = client.call(route("T"));
    assert_eq!(r.code, ResponseCode::SUCCESS);
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).expect("version 479 gets standard JSON");
    assert_eq!(v["queueDatas"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["brokerDatas"][0]["brokerAddrs"]["0"], "127.0.0.1:10911");
    assert_eq!(v["queueDatas"][1]["brokerName"], "b_1");
    assert_eq!(v["queueDatas"][1]["writeQueueNums"], 4);

    // An old client (version < 401) gets fastjson's bare broker-id keys.
    let mut old = route("TBW102");
    old.version = 300;
    let r = client.call(old);
    assert!(std::str::from_utf8(&r.body)
        .expect("utf8")
        .contains(r#"{0:"127.0.0.1:10911"}"#));

    let r = client.call(route("unknown-topic"));
    assert_eq!(r.code, ResponseCode::TOPIC_NOT_EXIST);
    assert!(r.remark.unwrap_or_default().contains("No topic route info"));

    let r = client.call(RemotingCommand::request(
        RequestCode::GET_BROKER_CLUSTER_INFO,
    ));
    let text = String::from_utf8(r.body.to_vec()).expect("utf8");
    assert!(
        text.contains(r#""clusterAddrTable":{"DefaultCluster":["b_0","b_1"]}"#),
        "{text}"
    );

    let r = client.call(RemotingCommand::request(
        RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    ));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["topicList"], serde_json::json!(["T", "TBW102"]));

    let r = client.call(
        RemotingCommand::request(RequestCode::GET_KV_CONFIG)
            .with_ext("namespace", "ORDER_TOPIC_CONFIG")
            .with_ext("key", "T"),
    );
    assert_eq!(r.code, ResponseCode::QUERY_NOT_FOUND);

    let r = client.call(RemotingCommand::request(12345));
    assert_eq!(r.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED);

    let r = broker.call(
        RemotingCommand::request(RequestCode::UNREGISTER_BROKER)
            .with_ext("brokerName", "b_1")
            .with_ext("brokerAddr", "127.0.0.1:10912")
            .with_ext("clusterName", "DefaultCluster")
            .with_ext("brokerId", 0),
    );
    assert_eq!(r.code, ResponseCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(&client.call(route("T")).body).expect("json");
    assert_eq!(v["queueDatas"].as_array().map(Vec::len), Some(1));
}

#[test]
fn broker_silent_past_its_heartbeat_timeout_is_dropped() {
    let (_p, port) = start_namesrv();
    let mut broker = Client::connect(port);
    // 500 ms instead of 120 s so the test does not wait two minutes; the scan runs every 5 s.
    let r = broker.call(register("quiet_0", "127.0.0.1:20911", &["Q"], 500));
    assert_eq!(r.code, ResponseCode::SUCCESS);
    let mut client = Client::connect(port);
    assert_eq!(client.call(route("Q")).code, ResponseCode::SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        if client.call(route("Q")).code == ResponseCode::TOPIC_NOT_EXIST {
            break;
        }
        assert!(Instant::now() < deadline, "broker was not expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The broker's connection is still open: expiry alone removed it.
    let r = broker.call(register("quiet_0", "127.0.0.1:20911", &["Q"], 120_000));
    assert_eq!(r.code, ResponseCode::SUCCESS);
    assert_eq!(client.call(route("Q")).code, ResponseCode::SUCCESS);
}

#[test]
fn closing_the_registration_connection_removes_the_broker() {
    let (_p, port) = start_namesrv();
    let mut client = Client::connect(port);
    {
        let mut broker = Client::connect(port);
        let r = broker.call(register("gone_0", "127.0.0.1:30911", &["G"], 120_000));
        assert_eq!(r.code, ResponseCode::SUCCESS);
        assert_eq!(client.call(route("G")).code, ResponseCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.call(route("G")).code != ResponseCode::TOPIC_NOT_EXIST {
        assert!(Instant::now() < deadline, "closed broker still routed");
        std::thread::sleep(Duration::from_millis(20));
    }
}
