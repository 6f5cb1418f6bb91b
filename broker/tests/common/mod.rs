//! Shared setup for the processor-level tests: a real `petrel` process on ports the test picks, with its store in a temp dir, and a small blocking remoting client
//! over std sockets.
//! Every broker a test starts is stopped (SIGTERM, then kill) when its handle drops.
#![allow(dead_code)]

pub mod paths;
pub mod ports;
pub use ports::{free_port, free_port_pair};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use bytes::{Bytes, BytesMut};

pub const FRAME_SIZE_MAX: usize = 16 * 1024 * 1024;
/// What petrel logs once every shard is open and registered.
pub const READY_LINE: &str = "] ready: ";

/// One broker (one shard unless started with `start_sharded`).
pub struct Broker {
    child: Option<Child>,
    pub store_dir: PathBuf,
    /// Shard 0's port; shard `i` listens on `port + i`.
    pub port: u16,
    pub namesrv_port: u16,
    pub shards: u16,
    /// Extra command-line arguments for `petrel` (always runs the binary when set).
    args: Vec<String>,
    /// Extra environment variables for `petrel`.
    env: Vec<(String, String)>,
    conf_path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker in a fresh temp dir.
    pub fn start() -> Result<Broker> {
        Self::start_with(&[])
    }

    /// Starts a broker with extra broker.conf lines (`key=value`).
    pub fn start_with(extra_conf: &[&str]) -> Result<Broker> {
        Self::start_inner(extra_conf, 1, &[])
    }

    /// Starts the `petrel` binary with `--shards <shards>` (ports `port..port + shards`).
    pub fn start_sharded(shards: u16) -> Result<Broker> {
        Self::start_inner(&[], shards, &[])
    }

    /// Starts `shards` shards with extra broker.conf lines and environment variables.
    pub fn start_sharded_with(
        shards: u16,
        extra_conf: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Broker> {
        Self::start_inner(extra_conf, shards, env)
    }

    fn start_inner(extra_conf: &[&str], shards: u16, env: &[(&str, &str)]) -> Result<Broker> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let store_dir = dir.path().join("store");
        let conf_path = dir.path().join("broker.conf");
        let port = match shards {
            1 => free_port()?,
            2 => free_port_pair()?,
            _ => bail!("tests start 1 or 2 shards"),
        };
        let namesrv_port = free_port()?;
        let args = if shards == 1 {
            Vec::new()
        } else {
            vec!["--shards".to_string(), shards.to_string()]
        };
        let mut conf = format!(
            "brokerClusterName=TestCluster\nbrokerName=test-broker\nbrokerIP1=127.0.0.1\n\
             listenPort={port}\nnamesrvListenPort={namesrv_port}\nstorePathRootDir={}\n\
             shards=1\nflushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=8388608\nmaxMessageSize=1048576\n\
             autoCreateTopicEnable=true\ndefaultTopicQueueNums=8\n\
             diskMaxUsedSpaceRatio=95\ndiskSpaceWarningLevelRatio=0.99\nbindAddress=127.0.0.1\n",
            store_dir.display()
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(&conf_path, conf).context("write broker.conf")?;
        let mut broker = Broker {
            child: None,
            store_dir,
            port,
            namesrv_port,
            shards,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            conf_path,
            _dir: Some(dir),
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<()> {
        self.spawn_binary()
    }

    fn spawn_binary(&mut self) -> Result<()> {
        let ready_before = self.log().matches(READY_LINE).count();
        let log_path = self.conf_path.with_file_name("petrel.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("open broker log")?;
        let child = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .arg("-c")
            .arg(&self.conf_path)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn petrel")?;
        self.child = Some(child);
        self.wait_ready(ready_before + 1).with_context(|| {
            format!(
                "broker did not come up; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        })
    }

    /// Waits until the log holds `ready_lines` start-up `ready:` lines (every shard open and
    /// registered with the nameserver), or fails when petrel exits or after 30 s.
    fn wait_ready(&mut self, ready_lines: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.as_mut() {
                Some(child) => {
                    if let Some(status) = child.try_wait()? {
                        bail!("petrel exited early: {status}");
                    }
                }
                None => bail!("broker not started"),
            }
            if self.log().matches(READY_LINE).count() >= ready_lines {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("petrel not ready on port {} after 30 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.shard_addr(0)
    }

    /// Shard `i`'s address (`port + i`).
    pub fn shard_addr(&self, i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + i))
    }

    /// The embedded nameserver's address.
    pub fn namesrv_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.namesrv_port))
    }

    pub fn client(&self) -> Result<Client> {
        Client::connect(self.addr())
    }

    /// Graceful stop (SIGTERM), waiting for exit; kills after 30 s.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = i32::try_from(child.id()).context("pid")?;
        let _ = signal_term(pid);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("petrel did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's log so far (every run of this broker appends to it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.conf_path.with_file_name("petrel.log")).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then the exit status within `deadline` (killed and an error past it).
    pub fn terminate(&mut self, deadline: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("broker not running")?;
        let pid = i32::try_from(child.id()).context("pid")?;
        signal_term(pid)?;
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                bail!("petrel did not exit within {deadline:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Drops the extra environment variables for the next start.
    pub fn clear_env(&mut self) {
        self.env.clear();
    }

    /// Starts the stopped broker again on the same ports and store.
    pub fn start_again(&mut self) -> Result<()> {
        self.respawn()
    }

    /// Stops and starts again on the same ports and store.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.respawn()
    }

    /// Kills the broker without a shutdown (SIGKILL: nothing flushed or persisted beyond what
    /// already was) and starts it again on the same ports and store.
    pub fn crash_restart(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill petrel")?;
            child.wait().context("wait for petrel")?;
        }
        self.respawn()
    }

    fn respawn(&mut self) -> Result<()> {
        // The embedded nameserver's old port may still be held by TIME_WAIT connections of
        // the previous process: give it a fresh one (the broker port stays).
        let namesrv_port = free_port()?;
        let conf = std::fs::read_to_string(&self.conf_path)?.replace(
            &format!("namesrvListenPort={}\n", self.namesrv_port),
            &format!("namesrvListenPort={namesrv_port}\n"),
        );
        std::fs::write(&self.conf_path, conf)?;
        self.namesrv_port = namesrv_port;
        self.spawn()
    }
}

fn signal_term(pid: i32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -TERM {pid} failed")))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(Some(status)) = child.try_wait() {
                // It died under the test: show why.
                eprintln!(
                    "petrel exited on its own ({status}); its log:\n{}",
                    self.log()
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking remoting client.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
    /// Server-initiated requests received while waiting for responses.
    pub pushed: Vec<RemotingCommand>,
    /// Responses that arrived while waiting for another one (kept for `wait_response`).
    early: Vec<RemotingCommand>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            next_opaque: 1,
            pushed: Vec::new(),
            early: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.stream.local_addr()?)
    }

    /// Writes a request (opaque assigned here) without waiting; returns its opaque.
    pub fn send(&mut self, mut cmd: RemotingCommand) -> Result<i32> {
        let opaque = self.next_opaque;
        self.next_opaque += 1;
        cmd.opaque = opaque;
        self.stream
            .write_all(&cmd.to_frame())
            .context("write request")?;
        Ok(opaque)
    }

    /// Sends a oneway request.
    pub fn send_oneway(&mut self, mut cmd: RemotingCommand) -> Result<()> {
        cmd.mark_oneway();
        self.send(cmd).map(|_| ())
    }

    /// Sends a request and waits (up to 40 s) for its response.
    pub fn request(&mut self, cmd: RemotingCommand) -> Result<RemotingCommand> {
        let opaque = self.send(cmd)?;
        self.wait_response(opaque, Duration::from_secs(40))
    }

    /// Waits for the response with `opaque`, keeping server-initiated requests in `pushed`.
    pub fn wait_response(&mut self, opaque: i32, timeout: Duration) -> Result<RemotingCommand> {
        if let Some(i) = self.early.iter().position(|c| c.opaque == opaque) {
            return Ok(self.early.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no response for opaque {opaque} within {timeout:?}");
            }
            let cmd = self
                .read_frame(left)?
                .context("no frame before the deadline")?;
            if cmd.is_response() && cmd.opaque == opaque {
                return Ok(cmd);
            }
            if cmd.is_response() {
                self.early.push(cmd);
            } else {
                self.pushed.push(cmd);
            }
        }
    }

    /// Reads the next frame, or None after `timeout`.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Option<RemotingCommand>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(cmd) = RemotingCommand::decode(&mut self.buf, FRAME_SIZE_MAX)
                .map_err(|e| anyhow::anyhow!("bad frame from broker: {e}"))?
            {
                return Ok(Some(cmd));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e).context("read"),
            }
        }
    }

    /// Responses that arrived while this client waited for something else (none pending).
    pub fn early_responses(&self) -> &[RemotingCommand] {
        &self.early
    }

    /// Waits for a server-initiated request with `code` for which `pred` holds (already pushed
    /// or arriving); others stay in `pushed`.
    pub fn wait_pushed_matching(
        &mut self,
        code: i32,
        timeout: Duration,
        pred: impl Fn(&RemotingCommand) -> bool,
    ) -> Result<Option<RemotingCommand>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pushed.iter().position(|c| c.code == code && pred(c)) {
                return Ok(Some(self.pushed.remove(i)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let Some(cmd) = self.read_frame(left)? {
                if cmd.is_response() {
                    self.early.push(cmd);
                } else {
                    self.pushed.push(cmd);
                }
            }
        }
    }

    /// Waits for a server-initiated request with `code` (already pushed or arriving).
    pub fn wait_pushed(&mut self, code: i32, timeout: Duration) -> Result<Option<RemotingCommand>> {
        self.wait_pushed_matching(code, timeout, |_| true)
    }

    // ---- request helpers ----

    /// SEND_MESSAGE (10, long header names).
    pub fn send_message(
        &mut self,
        topic: &str,
        queue_id: i32,
        body: &[u8],
        properties: &str,
    ) -> Result<RemotingCommand> {
        let cmd = RemotingCommand::request(RequestCode::SEND_MESSAGE)
            .with_ext("producerGroup", "test-producer")
            .with_ext("topic", topic)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("defaultTopicQueueNums", 4)
            .with_ext("queueId", queue_id)
            .with_ext("sysFlag", 0)
            .with_ext("bornTimestamp", now_ms())
            .with_ext("flag", 0)
            .with_ext("properties", properties)
            .with_ext("reconsumeTimes", 0)
            .with_ext("unitMode", "false")
            .with_body(Bytes::copy_from_slice(body));
        self.request(cmd)
    }

    /// SEND_MESSAGE_V2 (310, short header names).
    pub fn send_message_v2(
        &mut self,
        topic: &str,
        queue_id: i32,
        body: &[u8],
        properties: &str,
    ) -> Result<RemotingCommand> {
        let cmd = RemotingCommand::request(RequestCode::SEND_MESSAGE_V2)
            .with_ext("a", "test-producer")
            .with_ext("b", topic)
            .with_ext("c", "TBW102")
            .with_ext("d", 4)
            .with_ext("e", queue_id)
            .with_ext("f", 0)
            .with_ext("g", now_ms())
            .with_ext("h", 0)
            .with_ext("i", properties)
            .with_ext("j", 0)
            .with_ext("k", "false")
            .with_body(Bytes::copy_from_slice(body));
        self.request(cmd)
    }

    /// PULL_MESSAGE with the given sysFlag and suspend timeout.
    #[allow(clippy::too_many_arguments)]
    pub fn pull(
        &mut self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        sys_flag: i32,
        subscription: &str,
        suspend_ms: i64,
    ) -> Result<RemotingCommand> {
        self.request(pull_request(
            group,
            topic,
            queue_id,
            offset,
            sys_flag,
            subscription,
            suspend_ms,
        ))
    }

    /// HEART_BEAT for one clustering push consumer of `topic` with `subscription`.
    pub fn heartbeat(
        &mut self,
        client_id: &str,
        group: &str,
        topic: &str,
        sub: &str,
    ) -> Result<RemotingCommand> {
        let body = serde_json::json!({
            "clientID": client_id,
            "producerDataSet": [{"groupName": "CLIENT_INNER_PRODUCER"}],
            "consumerDataSet": [{
                "groupName": group,
                "consumeType": "CONSUME_PASSIVELY",
                "messageModel": "CLUSTERING",
                "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                "unitMode": false,
                "subscriptionDataSet": [
                    {"topic": topic, "subString": sub, "tagsSet": [], "codeSet": [],
                     "subVersion": now_ms(), "expressionType": "TAG", "classFilterMode": false},
                    {"topic": format!("%RETRY%{group}"), "subString": "*", "tagsSet": [],
                     "codeSet": [], "subVersion": now_ms(), "expressionType": "TAG",
                     "classFilterMode": false}
                ]
            }],
            "heartbeatFingerprint": 0,
            "withoutSub": false
        });
        self.request(
            RemotingCommand::request(RequestCode::HEART_BEAT)
                .with_body(Bytes::from(body.to_string())),
        )
    }

    /// A request answered with one `offset` field.
    pub fn offset_request(&mut self, cmd: RemotingCommand) -> Result<(i32, Option<i64>)> {
        let r = self.request(cmd)?;
        let offset = r.ext("offset").map(str::parse).transpose()?;
        Ok((r.code, offset))
    }
}

pub fn pull_request(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    sys_flag: i32,
    subscription: &str,
    suspend_ms: i64,
) -> RemotingCommand {
    RemotingCommand::request(RequestCode::PULL_MESSAGE)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("queueOffset", offset)
        .with_ext("maxMsgNums", 32)
        .with_ext("sysFlag", sys_flag)
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", suspend_ms)
        .with_ext("subscription", subscription)
        .with_ext("subVersion", 0)
        .with_ext("expressionType", "TAG")
}

/// PullSysFlag: SUBSCRIPTION only (use the request's expression, no hold, no commit).
pub const PULL_FLAG_SUBSCRIPTION: i32 = 0x4;
pub const PULL_FLAG_SUSPEND: i32 = 0x2;
pub const PULL_FLAG_COMMIT: i32 = 0x1;

pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0)
}

/// A properties string from pairs.
pub fn props(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in pairs {
        s.push_str(k);
        s.push('\u{1}');
        s.push_str(v);
        s.push('\u{2}');
    }
    s
}

/// The broker names the nameserver at `namesrv` lists in `topic`'s queue data (empty when it
/// has no route), asked over a brand-new connection as a new client would.
pub fn route_broker_names(namesrv: SocketAddr, topic: &str) -> Result<Vec<String>> {
    let mut ns = Client::connect(namesrv)?;
    let r = ns.request(
        RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic),
    )?;
    if r.code == ResponseCode::TOPIC_NOT_EXIST {
        return Ok(Vec::new());
    }
    if r.code != ResponseCode::SUCCESS {
        bail!("route of {topic}: {}", code_of(&r));
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).context("route JSON")?;
    let mut names: Vec<String> = v["queueDatas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["brokerName"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Stops what it holds when dropped: CPU hogs, the disk writer.
pub struct Load {
    hogs: Vec<Child>,
    is_writing: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// One busy-looping process per CPU, and a thread that writes and fdatasyncs 1 MiB chunks
    /// into a file on the store's disk without pause.
    pub fn start(dir: &std::path::Path) -> Result<Load> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut hogs = Vec::new();
        for _ in 0..cpus {
            let hog = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .spawn()
                .context("spawn a busy process")?;
            hogs.push(hog);
        }
        let is_writing = Arc::new(AtomicBool::new(true));
        let flag = is_writing.clone();
        let path = dir.join("disk-load");
        let writer = std::thread::spawn(move || {
            let Ok(mut f) = std::fs::File::create(&path) else {
                return;
            };
            let chunk = vec![0x5au8; 1 << 20];
            let mut written = 0usize;
            while flag.load(Ordering::Relaxed) {
                if f.write_all(&chunk).is_err() || f.sync_data().is_err() {
                    return;
                }
                written += chunk.len();
                if written >= 64 << 20 {
                    written = 0;
                    let _ = f.set_len(0);
                    let _ = std::io::Seek::rewind(&mut f);
                }
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(Load {
            hogs,
            is_writing,
            writer: Some(writer),
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for hog in &mut self.hogs {
            let _ = hog.kill();
            let _ = hog.wait();
        }
        self.is_writing.store(false, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A decoded stored record (the fields tests look at).
#[derive(Debug, Clone)]
pub struct Record {
    pub queue_id: u32,
    pub queue_offset: u64,
    pub commit_log_offset: u64,
    pub reconsume_times: i32,
    pub store_host: SocketAddr,
    pub born_host: SocketAddr,
    pub topic: String,
    pub body: Vec<u8>,
    pub properties: String,
}

impl Record {
    pub fn property(&self, name: &str) -> Option<&str> {
        engine::properties::get(&self.properties, name)
    }
}

/// Splits a PULL/QUERY/VIEW body into records.
pub fn decode_records(body: &[u8]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let rest = &body[pos..];
        let view = engine::record::decode(rest)
            .map_err(|e| anyhow::anyhow!("bad record at byte {pos}: {e:?}"))?;
        out.push(Record {
            queue_id: view.queue_id().0,
            queue_offset: view.queue_offset().0,
            commit_log_offset: view.commit_log_offset().0,
            reconsume_times: view.reconsume_times(),
            store_host: view.store_host(),
            born_host: view.born_host(),
            topic: view.topic().to_string(),
            body: view.body().to_vec(),
            properties: view.properties().to_string(),
        });
        pos += usize::try_from(view.total_size())?;
    }
    Ok(out)
}

/// Response code name for assertion messages.
pub fn code_of(r: &RemotingCommand) -> String {
    format!(
        "code {} remark {:?} ext {:?}",
        r.code, r.remark, r.ext_fields
    )
}

/// Asserts SUCCESS with a helpful message.
pub fn assert_success(r: &RemotingCommand) {
    assert_eq!(r.code, ResponseCode::SUCCESS, "{}", code_of(r));
}

/// Header field parsed as i64.
pub fn ext_i64(r: &RemotingCommand, name: &str) -> i64 {
    r.ext(name)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing: {}", code_of(r)))
}
