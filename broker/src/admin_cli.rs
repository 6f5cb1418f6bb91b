//! `petrel admin <command>`: a small mqadmin. A blocking std::net remoting client (the
//! broker's own codec, `crate::remoting`) asks the nameserver and the brokers, and prints
//! human-readable tables. Codes per command follow mqadmin's (REMOTING.md §8(e)):
//!
//! | command | calls |
//! |---|---|
//! | `cluster-list` | N 106; B 28 per broker address |
//! | `topic-list` | N 206 |
//! | `topic-route -t T` | N 105 |
//! | `update-topic -t T [-r N] [-w N] [-p PERM] [-c CLUSTER] [--order]` | N 106; B 17 to every master (of the cluster) |
//! | `delete-topic -t T [-c CLUSTER]` | N 106; B 215 to every master; N 216 |
//! | `topic-status -t T` | N 105; B 202 per master |
//! | `consumer-progress -g G` | N 105 on `%RETRY%G` (else N 106); B 208 per master |
//! | `query-msg-by-key -t T -k K` | N 105; B 12 per master |
//! | `query-msg-by-id -i OFFSET_MSG_ID` | B 33 to the address inside the id |
//!
//! Bodies come in fastjson's dialect (bare numeric keys, JSON objects as map keys, §6.1), so
//! they are read with the lenient parser in [`fastjson`], which turns every key into a string.
//! The client works against Java brokers too; with Petrel, each shard is one broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::processor::send::offset_msg_id;
use crate::remoting::{
    FrameError, RemotingCommand, RequestCode, ResponseCode, FRAME_SIZE_MAX_DEFAULT,
};

/// `petrel admin` arguments.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Nameserver address(es), `host:port;host:port` (the first that answers is used).
    #[arg(
        short = 'n',
        long = "namesrv-addr",
        env = "NAMESRV_ADDR",
        default_value = "127.0.0.1:9876",
        global = true
    )]
    pub namesrv_addr: String,
    /// Connect and per-request timeout, milliseconds.
    #[arg(long = "timeout-ms", default_value_t = 5000, global = true)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin commands.
#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Brokers of every cluster, with their runtime numbers (106, 28).
    ClusterList,
    /// Every topic the nameserver knows (206).
    TopicList,
    /// A topic's route: brokers and queue counts (105).
    TopicRoute {
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Create or update a topic on every master broker (106, 17).
    UpdateTopic {
        #[arg(short = 't', long)]
        topic: String,
        /// readQueueNums.
        #[arg(short = 'r', long = "read-queue-nums", default_value_t = 8)]
        read_queue_nums: u32,
        /// writeQueueNums.
        #[arg(short = 'w', long = "write-queue-nums", default_value_t = 8)]
        write_queue_nums: u32,
        /// Permission: 2 write, 4 read, 6 read-write.
        #[arg(short = 'p', long, default_value_t = 6)]
        perm: u32,
        /// Only the brokers of this cluster (default: every cluster).
        #[arg(short = 'c', long)]
        cluster: Option<String>,
        /// An orderly topic.
        #[arg(short = 'o', long)]
        order: bool,
    },
    /// Delete a topic from every master broker and the nameserver (106, 215, 216).
    DeleteTopic {
        #[arg(short = 't', long)]
        topic: String,
        /// Only the brokers of this cluster (default: every cluster).
        #[arg(short = 'c', long)]
        cluster: Option<String>,
    },
    /// Min/max offset and last store time of each queue of a topic (105, 202).
    TopicStatus {
        #[arg(short = 't', long)]
        topic: String,
    },
    /// A consumer group's committed offsets against the queues' max offsets (105, 208).
    ConsumerProgress {
        #[arg(short = 'g', long)]
        group: String,
    },
    /// Messages of a topic whose KEYS (or UNIQ_KEY) is the key (105, 12).
    QueryMsgByKey {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'k', long)]
        key: String,
        /// Most messages asked of each broker.
        #[arg(long = "max", default_value_t = 64)]
        max: u32,
    },
    /// One message by its offset message id (33 to the broker inside the id).
    QueryMsgById {
        #[arg(short = 'i', long = "msg-id")]
        msg_id: String,
    },
}

/// Why an admin command failed.
#[derive(thiserror::Error, Debug)]
pub enum AdminError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O with {addr}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("undecodable frame from {addr}")]
    Frame {
        addr: String,
        #[source]
        source: FrameError,
    },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} answered request {request_code} with code {code}: {remark}")]
    Refused {
        addr: String,
        request_code: i32,
        code: i32,
        remark: String,
    },
    #[error("cannot read the {what} from {addr}: {reason}")]
    Body {
        what: &'static str,
        addr: String,
        reason: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
}

/// Runs one command and returns what it prints.
pub fn run(args: &AdminArgs) -> Result<String, AdminError> {
    let mut admin = Admin::new(&args.namesrv_addr, Duration::from_millis(args.timeout_ms))?;
    match &args.command {
        AdminCommand::ClusterList => admin.cluster_list(),
        AdminCommand::TopicList => admin.topic_list(),
        AdminCommand::TopicRoute { topic } => admin.topic_route(topic),
        AdminCommand::UpdateTopic {
            topic,
            read_queue_nums,
            write_queue_nums,
            perm,
            cluster,
            order,
        } => admin.update_topic(
            topic,
            TopicSpec {
                read_queue_nums: *read_queue_nums,
                write_queue_nums: *write_queue_nums,
                perm: *perm,
                order: *order,
            },
            cluster.as_deref(),
        ),
        AdminCommand::DeleteTopic { topic, cluster } => {
            admin.delete_topic(topic, cluster.as_deref())
        }
        AdminCommand::TopicStatus { topic } => admin.topic_status(topic),
        AdminCommand::ConsumerProgress { group } => admin.consumer_progress(group),
        AdminCommand::QueryMsgByKey { topic, key, max } => admin.query_msg_by_key(topic, key, *max),
        AdminCommand::QueryMsgById { msg_id } => admin.query_msg_by_id(msg_id),
    }
}

/// Queue counts and flags of UPDATE_AND_CREATE_TOPIC.
#[derive(Clone, Copy, Debug)]
pub struct TopicSpec {
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub order: bool,
}

/// One open connection.
struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

/// The admin client: nameserver addresses and connections kept open per address.
pub struct Admin {
    namesrv: Vec<String>,
    timeout: Duration,
    connections: HashMap<String, Connection>,
    next_opaque: i32,
}

/// A broker as the nameserver lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BrokerInfo {
    cluster: String,
    name: String,
    /// brokerId -> address (0 = master).
    addrs: BTreeMap<i64, String>,
}

impl BrokerInfo {
    fn master(&self) -> Option<&str> {
        self.addrs.get(&0).map(String::as_str)
    }
}

impl Admin {
    /// A client for the nameserver list `a:p;b:p`.
    pub fn new(namesrv_addr: &str, timeout: Duration) -> Result<Admin, AdminError> {
        let namesrv: Vec<String> = namesrv_addr
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if namesrv.is_empty() {
            return Err(AdminError::InvalidArgument(
                "no nameserver address given (-n host:port)".to_string(),
            ));
        }
        Ok(Admin {
            namesrv,
            timeout,
            connections: HashMap::new(),
            next_opaque: 1,
        })
    }

    /// Sends `req` to `addr` and waits for its response (any code).
    pub fn call(
        &mut self,
        addr: &str,
        mut req: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        req.opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        let result = self.call_inner(addr, &req);
        if result.is_err() {
            // A failed exchange leaves the stream in an unknown state: reconnect next time.
            self.connections.remove(addr);
        }
        result
    }

    fn call_inner(
        &mut self,
        addr: &str,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        let timeout = self.timeout;
        if !self.connections.contains_key(addr) {
            let conn = connect(addr, timeout)?;
            self.connections.insert(addr.to_string(), conn);
        }
        let Some(conn) = self.connections.get_mut(addr) else {
            return Err(AdminError::Closed {
                addr: addr.to_string(),
            });
        };
        let io = |source| AdminError::Io {
            addr: addr.to_string(),
            source,
        };
        conn.stream.write_all(&req.to_frame()).map_err(io)?;
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some(cmd) = RemotingCommand::decode(&mut conn.buf, FRAME_SIZE_MAX_DEFAULT)
                .map_err(|source| AdminError::Frame {
                    addr: addr.to_string(),
                    source,
                })?
            {
                if cmd.is_response() && cmd.opaque == req.opaque {
                    return Ok(cmd);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AdminError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                });
            }
            conn.stream.set_read_timeout(Some(left)).map_err(io)?;
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(AdminError::Closed {
                        addr: addr.to_string(),
                    })
                }
                Ok(n) => conn
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(AdminError::Timeout {
                        addr: addr.to_string(),
                        timeout,
                    })
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// As `call`, but anything but SUCCESS is an error.
    pub fn call_ok(
        &mut self,
        addr: &str,
        req: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        let request_code = req.code;
        let resp = self.call(addr, req)?;
        if resp.code != ResponseCode::SUCCESS {
            return Err(refused(addr, request_code, &resp));
        }
        Ok(resp)
    }

    /// A request to the first nameserver that can be reached; returns its address too.
    fn namesrv_call(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<(String, RemotingCommand), AdminError> {
        let mut last_error = None;
        for addr in self.namesrv.clone() {
            match self.call(&addr, req.clone()) {
                Ok(resp) => return Ok((addr, resp)),
                Err(e @ (AdminError::Connect { .. } | AdminError::Closed { .. })) => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            AdminError::InvalidArgument("no nameserver address given".to_string())
        }))
    }

    fn namesrv_call_ok(
        &mut self,
        req: RemotingCommand,
    ) -> Result<(String, RemotingCommand), AdminError> {
        let (addr, resp) = self.namesrv_call(&req)?;
        if resp.code != ResponseCode::SUCCESS {
            return Err(refused(&addr, req.code, &resp));
        }
        Ok((addr, resp))
    }

    /// Every broker of the cluster table (106), optionally of one cluster.
    fn cluster_brokers(&mut self, cluster: Option<&str>) -> Result<Vec<BrokerInfo>, AdminError> {
        let (addr, resp) = self.namesrv_call_ok(RemotingCommand::request(
            RequestCode::GET_BROKER_CLUSTER_INFO,
        ))?;
        let info = parse_body(&addr, "cluster info", &resp)?;
        let mut brokers = Vec::new();
        let clusters = info.get("clusterAddrTable").and_then(Value::as_object);
        let table = info.get("brokerAddrTable").and_then(Value::as_object);
        for (cluster_name, names) in clusters.into_iter().flatten() {
            if cluster.is_some_and(|c| c != cluster_name) {
                continue;
            }
            for name in names
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let data = table.and_then(|t| t.get(name));
                brokers.push(BrokerInfo {
                    cluster: cluster_name.clone(),
                    name: name.to_string(),
                    addrs: data.map(broker_addrs).unwrap_or_default(),
                });
            }
        }
        brokers.sort();
        Ok(brokers)
    }

    /// The route of a topic (105): its brokers and queue data.
    fn route(&mut self, topic: &str) -> Result<(Vec<BrokerInfo>, Vec<Value>), AdminError> {
        let req =
            RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
        let (addr, resp) = self.namesrv_call_ok(req)?;
        let route = parse_body(&addr, "topic route", &resp)?;
        let mut brokers: Vec<BrokerInfo> = route
            .get("brokerDatas")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|b| BrokerInfo {
                cluster: str_of(b, "cluster"),
                name: str_of(b, "brokerName"),
                addrs: broker_addrs(b),
            })
            .collect();
        brokers.sort();
        let queues = route
            .get("queueDatas")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok((brokers, queues))
    }

    pub fn cluster_list(&mut self) -> Result<String, AdminError> {
        let brokers = self.cluster_brokers(None)?;
        let mut table = Table::new(&[
            "Cluster",
            "Broker",
            "BID",
            "Addr",
            "Version",
            "InTPS",
            "OutTPS",
            "InTotalToday",
            "OutTotalToday",
        ]);
        for b in &brokers {
            for (id, addr) in &b.addrs {
                let kv = self
                    .call_ok(
                        addr,
                        RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO),
                    )
                    .and_then(|resp| parse_body(addr, "runtime info", &resp));
                let kv = match kv {
                    Ok(v) => v.get("table").cloned().unwrap_or(Value::Null),
                    Err(e) => {
                        log::warn!("{}", error_text(&e));
                        Value::Null
                    }
                };
                let get = |k: &str| kv.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
                let first = |k: &str| {
                    kv.get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| s.split_whitespace().next())
                        .unwrap_or("-")
                        .to_string()
                };
                let num = |k: &str| {
                    kv.get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<i64>().ok())
                };
                let today = |now: &str, morning: &str| match (num(now), num(morning)) {
                    (Some(n), Some(m)) => (n - m).to_string(),
                    _ => "-".to_string(),
                };
                table.row(vec![
                    b.cluster.clone(),
                    b.name.clone(),
                    id.to_string(),
                    addr.clone(),
                    get("brokerVersionDesc"),
                    first("putTps"),
                    first("getTransferredTps"),
                    today("msgPutTotalTodayNow", "msgPutTotalTodayMorning"),
                    today("msgGetTotalTodayNow", "msgGetTotalTodayMorning"),
                ]);
            }
        }
        Ok(table.render())
    }

    pub fn topic_list(&mut self) -> Result<String, AdminError> {
        let req = RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER);
        let (addr, resp) = self.namesrv_call_ok(req)?;
        let list = parse_body(&addr, "topic list", &resp)?;
        let topics: BTreeSet<&str> = list
            .get("topicList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut out = String::new();
        for t in topics {
            out.push_str(t);
            out.push('\n');
        }
        Ok(out)
    }

    pub fn topic_route(&mut self, topic: &str) -> Result<String, AdminError> {
        let (brokers, queues) = self.route(topic)?;
        let mut table = Table::new(&["Broker", "Cluster", "BID", "Addr"]);
        for b in &brokers {
            for (id, addr) in &b.addrs {
                table.row(vec![
                    b.name.clone(),
                    b.cluster.clone(),
                    id.to_string(),
                    addr.clone(),
                ]);
            }
        }
        let mut qtable = Table::new(&["Broker", "ReadQueues", "WriteQueues", "Perm", "SysFlag"]);
        let mut queues = queues;
        queues.sort_by_key(|q| str_of(q, "brokerName"));
        for q in &queues {
            qtable.row(vec![
                str_of(q, "brokerName"),
                num_text(q, "readQueueNums"),
                num_text(q, "writeQueueNums"),
                perm_text(q.get("perm").and_then(Value::as_i64).unwrap_or(0)),
                num_text(q, "topicSysFlag"),
            ]);
        }
        Ok(format!("{}\n{}", table.render(), qtable.render()))
    }

    pub fn update_topic(
        &mut self,
        topic: &str,
        spec: TopicSpec,
        cluster: Option<&str>,
    ) -> Result<String, AdminError> {
        let brokers = self.cluster_brokers(cluster)?;
        let masters: Vec<(String, String)> = brokers
            .iter()
            .filter_map(|b| Some((b.name.clone(), b.master()?.to_string())))
            .collect();
        if masters.is_empty() {
            return Err(AdminError::NotFound(match cluster {
                Some(c) => format!("no master broker in cluster {c}"),
                None => "the nameserver lists no master broker".to_string(),
            }));
        }
        let mut out = String::new();
        for (name, addr) in masters {
            let req = RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC)
                .with_ext("topic", topic)
                .with_ext("defaultTopic", "TBW102")
                .with_ext("readQueueNums", spec.read_queue_nums)
                .with_ext("writeQueueNums", spec.write_queue_nums)
                .with_ext("perm", spec.perm)
                .with_ext("topicFilterType", "SINGLE_TAG")
                .with_ext("topicSysFlag", 0)
                .with_ext("order", spec.order);
            self.call_ok(&addr, req)?;
            let _ = writeln!(out, "create topic to {addr} ({name}) success.");
        }
        let _ = writeln!(
            out,
            "topic {topic}: readQueueNums {}, writeQueueNums {}, perm {}, order {}",
            spec.read_queue_nums, spec.write_queue_nums, spec.perm, spec.order
        );
        Ok(out)
    }

    pub fn delete_topic(
        &mut self,
        topic: &str,
        cluster: Option<&str>,
    ) -> Result<String, AdminError> {
        let brokers = self.cluster_brokers(cluster)?;
        let mut out = String::new();
        let mut clusters = BTreeSet::new();
        for b in &brokers {
            let Some(addr) = b.master() else {
                continue;
            };
            let addr = addr.to_string();
            let req = RemotingCommand::request(RequestCode::DELETE_TOPIC_IN_BROKER)
                .with_ext("topic", topic);
            self.call_ok(&addr, req)?;
            clusters.insert(b.cluster.clone());
            let _ = writeln!(
                out,
                "delete topic [{topic}] from broker {addr} ({}) success.",
                b.name
            );
        }
        if clusters.is_empty() {
            if let Some(c) = cluster {
                clusters.insert(c.to_string());
            }
        }
        let mut namesrv_reqs: Vec<RemotingCommand> = clusters
            .iter()
            .map(|c| {
                RemotingCommand::request(RequestCode::DELETE_TOPIC_IN_NAMESRV)
                    .with_ext("topic", topic)
                    .with_ext("clusterName", c)
            })
            .collect();
        if namesrv_reqs.is_empty() {
            namesrv_reqs.push(
                RemotingCommand::request(RequestCode::DELETE_TOPIC_IN_NAMESRV)
                    .with_ext("topic", topic),
            );
        }
        for req in namesrv_reqs {
            let (addr, _) = self.namesrv_call_ok(req)?;
            let _ = writeln!(
                out,
                "delete topic [{topic}] from nameserver {addr} success."
            );
        }
        Ok(out)
    }

    pub fn topic_status(&mut self, topic: &str) -> Result<String, AdminError> {
        let (brokers, _) = self.route(topic)?;
        let mut table = Table::new(&["Broker", "QID", "MinOffset", "MaxOffset", "LastUpdate"]);
        for b in &brokers {
            let Some(addr) = b.master() else {
                continue;
            };
            let addr = addr.to_string();
            let req = RemotingCommand::request(RequestCode::GET_TOPIC_STATS_INFO)
                .with_ext("topic", topic);
            let resp = self.call_ok(&addr, req)?;
            let stats = parse_body(&addr, "topic stats", &resp)?;
            let mut rows: Vec<(i64, Vec<String>)> = queue_entries(&stats, "offsetTable")
                .map(|(mq, v)| {
                    let qid = mq.get("queueId").and_then(Value::as_i64).unwrap_or(-1);
                    let last = v
                        .get("lastUpdateTimestamp")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    (
                        qid,
                        vec![
                            str_of(&mq, "brokerName"),
                            qid.to_string(),
                            num_text(v, "minOffset"),
                            num_text(v, "maxOffset"),
                            format_time_ms(last),
                        ],
                    )
                })
                .collect();
            rows.sort_by_key(|(qid, _)| *qid);
            for (_, row) in rows {
                table.row(row);
            }
        }
        Ok(table.render())
    }

    pub fn consumer_progress(&mut self, group: &str) -> Result<String, AdminError> {
        let retry_topic = format!("%RETRY%{group}");
        let brokers = match self.route(&retry_topic) {
            Ok((brokers, _)) => brokers,
            Err(AdminError::Refused { code, .. }) if code == ResponseCode::TOPIC_NOT_EXIST => {
                // No member ever heartbeat (no retry topic): ask every broker.
                self.cluster_brokers(None)?
            }
            Err(e) => return Err(e),
        };
        let mut table = Table::new(&[
            "Topic",
            "Broker",
            "QID",
            "BrokerOffset",
            "ConsumerOffset",
            "Diff",
            "LastTime",
        ]);
        let mut rows: Vec<((String, String, i64), Vec<String>)> = Vec::new();
        let mut diff_total = 0i64;
        let mut tps_total = 0.0f64;
        for b in &brokers {
            let Some(addr) = b.master() else {
                continue;
            };
            let addr = addr.to_string();
            let req = RemotingCommand::request(RequestCode::GET_CONSUME_STATS)
                .with_ext("consumerGroup", group);
            let resp = self.call_ok(&addr, req)?;
            let stats = parse_body(&addr, "consume stats", &resp)?;
            tps_total += stats
                .get("consumeTps")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            for (mq, v) in queue_entries(&stats, "offsetTable") {
                let broker_offset = v.get("brokerOffset").and_then(Value::as_i64).unwrap_or(0);
                let consumer_offset = v.get("consumerOffset").and_then(Value::as_i64).unwrap_or(0);
                let diff = broker_offset.saturating_sub(consumer_offset);
                diff_total = diff_total.saturating_add(diff);
                let topic = str_of(&mq, "topic");
                let broker = str_of(&mq, "brokerName");
                let qid = mq.get("queueId").and_then(Value::as_i64).unwrap_or(-1);
                let last = v.get("lastTimestamp").and_then(Value::as_i64).unwrap_or(0);
                rows.push((
                    (topic.clone(), broker.clone(), qid),
                    vec![
                        topic,
                        broker,
                        qid.to_string(),
                        broker_offset.to_string(),
                        consumer_offset.to_string(),
                        diff.to_string(),
                        format_time_ms(last),
                    ],
                ));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, row) in rows {
            table.row(row);
        }
        Ok(format!(
            "{}\nConsume TPS: {tps_total:.2}\nDiff Total: {diff_total}\n",
            table.render()
        ))
    }

    pub fn query_msg_by_key(
        &mut self,
        topic: &str,
        key: &str,
        max: u32,
    ) -> Result<String, AdminError> {
        let (brokers, _) = self.route(topic)?;
        let mut table = Table::new(&[
            "Message ID",
            "UniqKey",
            "Broker",
            "QID",
            "QueueOffset",
            "Tags",
            "Keys",
            "StoreTime",
        ]);
        let mut found = 0usize;
        for b in &brokers {
            let Some(addr) = b.master() else {
                continue;
            };
            let addr = addr.to_string();
            let req = RemotingCommand::request(RequestCode::QUERY_MESSAGE)
                .with_ext("topic", topic)
                .with_ext("key", key)
                .with_ext("maxNum", max)
                .with_ext("beginTimestamp", 0)
                .with_ext("endTimestamp", i64::MAX)
                .with_ext("_UNIQUE_KEY_QUERY", false);
            let resp = self.call(&addr, req)?;
            if resp.code == ResponseCode::QUERY_NOT_FOUND {
                continue;
            }
            if resp.code != ResponseCode::SUCCESS {
                return Err(refused(&addr, RequestCode::QUERY_MESSAGE, &resp));
            }
            for record in decode_records(&addr, &resp.body)? {
                // The index is a hash: keep only exact matches, as mqadmin does.
                let is_match = record.keys.split(' ').any(|k| k == key) || record.uniq_key == key;
                if !is_match || record.topic != topic {
                    continue;
                }
                found += 1;
                table.row(vec![
                    record.offset_msg_id.clone(),
                    record.uniq_key.clone(),
                    b.name.clone(),
                    record.queue_id.to_string(),
                    record.queue_offset.to_string(),
                    record.tags.clone(),
                    record.keys.clone(),
                    format_time_ms(record.store_timestamp_ms),
                ]);
            }
        }
        if found == 0 {
            return Err(AdminError::NotFound(format!(
                "no message of topic {topic} with key {key}"
            )));
        }
        Ok(table.render())
    }

    pub fn query_msg_by_id(&mut self, msg_id: &str) -> Result<String, AdminError> {
        let (store_host, offset) = decode_offset_msg_id(msg_id)?;
        let addr = store_host.to_string();
        let req =
            RemotingCommand::request(RequestCode::VIEW_MESSAGE_BY_ID).with_ext("offset", offset);
        let resp = self.call_ok(&addr, req)?;
        let records = decode_records(&addr, &resp.body)?;
        let Some(r) = records.first() else {
            return Err(AdminError::NotFound(format!(
                "{addr} returned no message at offset {offset}"
            )));
        };
        let mut out = String::new();
        let lines: [(&str, String); 16] = [
            ("OffsetID", r.offset_msg_id.clone()),
            ("UniqKey", r.uniq_key.clone()),
            ("Topic", r.topic.clone()),
            ("Tags", r.tags.clone()),
            ("Keys", r.keys.clone()),
            ("Queue ID", r.queue_id.to_string()),
            ("Queue Offset", r.queue_offset.to_string()),
            ("CommitLog Offset", r.commit_log_offset.to_string()),
            ("Reconsume Times", r.reconsume_times.to_string()),
            ("Born Timestamp", format_time_ms(r.born_timestamp_ms)),
            ("Store Timestamp", format_time_ms(r.store_timestamp_ms)),
            ("Born Host", r.born_host.clone()),
            ("Store Host", r.store_host.clone()),
            ("System Flag", r.sys_flag.to_string()),
            ("Properties", r.properties.clone()),
            ("Message Body", r.body_text.clone()),
        ];
        for (k, v) in lines {
            let _ = writeln!(out, "{k:<18}{v}");
        }
        Ok(out)
    }
}

fn connect(addr: &str, timeout: Duration) -> Result<Connection, AdminError> {
    let connect_error = |source| AdminError::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut last = None;
    for sa in addr.to_socket_addrs().map_err(connect_error)? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true).map_err(connect_error)?;
                stream
                    .set_write_timeout(Some(timeout))
                    .map_err(connect_error)?;
                return Ok(Connection {
                    stream,
                    buf: BytesMut::with_capacity(64 * 1024),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(connect_error(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
    })))
}

fn refused(addr: &str, request_code: i32, resp: &RemotingCommand) -> AdminError {
    AdminError::Refused {
        addr: addr.to_string(),
        request_code,
        code: resp.code,
        remark: resp.remark.clone().unwrap_or_default(),
    }
}

fn parse_body(addr: &str, what: &'static str, resp: &RemotingCommand) -> Result<Value, AdminError> {
    fastjson::parse(&resp.body).map_err(|reason| AdminError::Body {
        what,
        addr: addr.to_string(),
        reason,
    })
}

/// `error: cause: cause`.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let _ = write!(out, ": {s}");
        cur = s.source();
    }
    out
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn num_text(v: &Value, key: &str) -> String {
    v.get(key).map_or_else(
        || "-".to_string(),
        |n| match n {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    )
}

fn perm_text(perm: i64) -> String {
    let r = if perm & 4 != 0 { "R" } else { "-" };
    let w = if perm & 2 != 0 { "W" } else { "-" };
    format!("{perm} ({r}{w})")
}

/// `brokerAddrs` of a BrokerData (keys are ids, quoted or bare).
fn broker_addrs(data: &Value) -> BTreeMap<i64, String> {
    data.get("brokerAddrs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(id, addr)| Some((id.trim().parse().ok()?, addr.as_str()?.to_string())))
        .collect()
}

/// Entries of a `Map<MessageQueue, …>` body: (the key parsed back into an object, value).
fn queue_entries<'a>(body: &'a Value, field: &str) -> impl Iterator<Item = (Value, &'a Value)> {
    body.get(field)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (fastjson::parse(k.as_bytes()).unwrap_or(Value::Null), v))
}

/// What the CLI shows of a stored record.
struct MessageView {
    offset_msg_id: String,
    uniq_key: String,
    topic: String,
    tags: String,
    keys: String,
    queue_id: u32,
    queue_offset: u64,
    commit_log_offset: u64,
    reconsume_times: i32,
    born_timestamp_ms: i64,
    store_timestamp_ms: i64,
    born_host: String,
    store_host: String,
    sys_flag: i32,
    properties: String,
    body_text: String,
}

/// Shown bytes of a message body.
const BODY_SHOWN_BYTES_MAX: usize = 1024;

/// Stored records concatenated (QUERY_MESSAGE / VIEW_MESSAGE_BY_ID bodies).
fn decode_records(addr: &str, mut body: &[u8]) -> Result<Vec<MessageView>, AdminError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let view = engine::record::decode(body).map_err(|e| AdminError::Body {
            what: "stored message",
            addr: addr.to_string(),
            reason: format!("{e:?}"),
        })?;
        let props = view.properties();
        let prop = |name: &str| {
            engine::properties::get(props, name)
                .unwrap_or_default()
                .to_string()
        };
        let shown = view
            .body()
            .get(..BODY_SHOWN_BYTES_MAX)
            .unwrap_or(view.body());
        let mut body_text = String::from_utf8_lossy(shown).into_owned();
        if view.body().len() > BODY_SHOWN_BYTES_MAX {
            let _ = write!(body_text, "... ({} bytes)", view.body().len());
        }
        out.push(MessageView {
            offset_msg_id: offset_msg_id(view.store_host(), view.commit_log_offset()),
            uniq_key: prop("UNIQ_KEY"),
            topic: view.topic().to_string(),
            tags: prop("TAGS"),
            keys: prop("KEYS"),
            queue_id: view.queue_id().0,
            queue_offset: view.queue_offset().0,
            commit_log_offset: view.commit_log_offset().0,
            reconsume_times: view.reconsume_times(),
            born_timestamp_ms: view.born_timestamp_ms(),
            store_timestamp_ms: view.store_timestamp_ms(),
            born_host: view.born_host().to_string(),
            store_host: view.store_host().to_string(),
            sys_flag: view.sys_flag(),
            properties: props.replace(['\u{1}', '\u{2}'], " "),
            body_text,
        });
        let size = view.total_size() as usize;
        body = body.get(size.max(1)..).unwrap_or_default();
    }
    Ok(out)
}

/// The store address and commitlog offset inside an offset message id (32 hex chars for IPv4,
/// 56 for IPv6).
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, u64), AdminError> {
    let invalid = |why: &str| {
        AdminError::InvalidArgument(format!("{id:?} is not an offset message id: {why}"))
    };
    let id = id.trim();
    let ip_len = match id.len() {
        32 => 4,
        56 => 16,
        _ => return Err(invalid("expected 32 (IPv4) or 56 (IPv6) hex characters")),
    };
    let bytes: Vec<u8> = (0..id.len() / 2)
        .map(|i| {
            id.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("not hexadecimal"))?;
    let (ip, rest) = bytes.split_at(ip_len);
    let ip = match ip_len {
        4 => <[u8; 4]>::try_from(ip).map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        _ => <[u8; 16]>::try_from(ip).map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    }
    .map_err(|_| invalid("bad address"))?;
    let (port, offset) = rest.split_at(4);
    let port = <[u8; 4]>::try_from(port)
        .map(i32::from_be_bytes)
        .ok()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| invalid("bad port"))?;
    let offset = <[u8; 8]>::try_from(offset)
        .map(i64::from_be_bytes)
        .ok()
        .and_then(|o| u64::try_from(o).ok())
        .ok_or_else(|| invalid("bad offset"))?;
    Ok((SocketAddr::new(ip, port), offset))
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of Unix milliseconds; `-` for 0 or less.
pub fn format_time_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{milli:03}")
}

/// A left-aligned text table.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| format!("#{h}")).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (cell, w) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<w$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A lenient reader of fastjson output (REMOTING.md §6.1): like JSON, but an object key may
/// be any value (a bare number, or a JSON object for `Map<MessageQueue, …>`). Every key
/// becomes a string: strings as they are, other values as their compact JSON text.
pub mod fastjson {
    use serde_json::{Map, Value};

    /// Nesting deeper than this is refused (no unbounded recursion on input).
    pub const DEPTH_MAX: usize = 128;

    /// Parses one value; trailing whitespace only.
    pub fn parse(input: &[u8]) -> Result<Value, String> {
        let mut p = Parser { input, at: 0 };
        let v = p.value(0)?;
        p.skip_ws();
        if p.at != input.len() {
            return Err(format!("trailing bytes at {}", p.at));
        }
        Ok(v)
    }

    struct Parser<'a> {
        input: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.input.get(self.at).copied()
        }

        fn skip_ws(&mut self) {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.at += 1;
            }
        }

        fn expect(&mut self, b: u8) -> Result<(), String> {
            self.skip_ws();
            if self.peek() == Some(b) {
                self.at += 1;
                Ok(())
            } else {
                Err(format!("expected '{}' at {}", b as char, self.at))
            }
        }

        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > DEPTH_MAX {
                return Err(format!("nested deeper than {DEPTH_MAX}"));
            }
            self.skip_ws();
            match self.peek() {
                Some(b'{') => self.object(depth),
                Some(b'[') => self.array(depth),
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.literal("true", Value::Bool(true)),
                Some(b'f') => self.literal("false", Value::Bool(false)),
                Some(b'n') => self.literal("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(b) => Err(format!("unexpected '{}' at {}", b as char, self.at)),
                None => Err("unexpected end".to_string()),
            }
        }

        fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
            let end = self.at + word.len();
            if self.input.get(self.at..end) == Some(word.as_bytes()) {
                self.at = end;
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.at))
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.at;
            while self
                .peek()
                .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            {
                self.at += 1;
            }
            let text = self.input.get(start..self.at).unwrap_or_default();
            serde_json::from_slice::<serde_json::Number>(text)
                .map(Value::Number)
                .map_err(|e| format!("bad number at {start}: {e}"))
        }

        fn string(&mut self) -> Result<String, String> {
            let start = self.at;
            self.at += 1;
            loop {
                match self.peek() {
                    None => return Err(format!("unterminated string at {start}")),
                    Some(b'\\') => self.at += 2,
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(_) => self.at += 1,
                }
            }
            let text = self.input.get(start..self.at).unwrap_or_default();
            serde_json::from_slice::<String>(text)
                .map_err(|e| format!("bad string at {start}: {e}"))
        }

        fn array(&mut self, depth: usize) -> Result<Value, String> {
            self.expect(b'[')?;
            let mut items = Vec::new();
            self.skip_ws();
            if self.peek() == Some(b']') {
                self.at += 1;
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value(depth + 1)?);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b']') => {
                        self.at += 1;
                        return Ok(Value::Array(items));
                    }
                    _ => return Err(format!("expected ',' or ']' at {}", self.at)),
                }
            }
        }

        fn object(&mut self, depth: usize) -> Result<Value, String> {
            self.expect(b'{')?;
            let mut map = Map::new();
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.at += 1;
                return Ok(Value::Object(map));
            }
            loop {
                let key = match self.value(depth + 1)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                self.expect(b':')?;
                let v = self.value(depth + 1)?;
                map.insert(key, v);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        return Ok(Value::Object(map));
                    }
                    _ => return Err(format!("expected ',' or '}}' at {}", self.at)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastjson_bare_and_object_keys_become_strings() {
        let v = fastjson::parse(
            br#"{"brokerAddrs":{0:"127.0.0.1:10911",1:"x"},"offsetTable":{{"brokerName":"b","queueId":2,"topic":"T"}:{"maxOffset":5}},"t":0.0}"#,
        )
        .expect("parses");
        assert_eq!(v["brokerAddrs"]["0"], "127.0.0.1:10911");
        let (k, val) = v["offsetTable"]
            .as_object()
            .and_then(|m| m.iter().next())
            .expect("one entry");
        let key = fastjson::parse(k.as_bytes()).expect("key parses");
        assert_eq!(key["queueId"], 2);
        assert_eq!(val["maxOffset"], 5);
        assert!(fastjson::parse(b"{\"a\":1} x").is_err());
        assert!(fastjson::parse(&[b'['; 500]).is_err());
        assert!(fastjson::parse(b"\"unterminated").is_err());
    }

    #[test]
    fn offset_msg_id_round_trips() {
        let addr: SocketAddr = "127.0.0.1:10911".parse().expect("addr");
        let id = offset_msg_id(addr, engine::CommitLogOffset(123_456));
        assert_eq!(id.len(), 32);
        assert_eq!(decode_offset_msg_id(&id).expect("decodes"), (addr, 123_456));
        let v6: SocketAddr = "[::1]:9".parse().expect("addr");
        let id6 = offset_msg_id(v6, engine::CommitLogOffset(7));
        assert_eq!(decode_offset_msg_id(&id6).expect("decodes"), (v6, 7));
        assert!(decode_offset_msg_id("XYZ").is_err());
        assert!(decode_offset_msg_id(&"G".repeat(32)).is_err());
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time_ms(0), "-");
        assert_eq!(format_time_ms(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["A", "Long"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "#A   #Long\nxyz  1\n");
    }
}
