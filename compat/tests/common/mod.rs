//! Shared setup for the compatibility tests: a real `petrel` process on ports the test picks,
//! a RocketMQ client runtime (rocketmq-client-rust 1.0.0, unchanged), and small helpers to
//! collect what consumers receive with bounded waits.
//!
//! Every wait here is bounded; a test fails with a message instead of hanging.
//!
//! What the client (rocketmq-client-rust 1.0.0) needs and does, learned from its source:
//! - It never creates a Tokio runtime: the application owns one through
//!   `rocketmq_runtime::RuntimeOwner` and passes a `ClientRuntime` (built from
//!   `owner.root_context().component(..)`) to every producer/consumer builder. `ClientEnv`
//!   does that; scenarios run inside `owner.block_on`.
//! - Listener calls run in the runtime's "metadata-io" blocking lane; with the default
//!   admission on 2 cores, a 32-message pull batch overflows it and the client sends the
//!   overflow back (CONSUMER_SEND_MSG_BACK) for redelivery via %RETRY% 10 s later. `ClientEnv`
//!   widens that lane's queue so scenarios measure the broker, not this back-pressure.
//! - Client id = `<local IP>@<instance name>`; clustering consumers (and producers) switch
//!   the default instance name "DEFAULT" to `<pid>#<nanos>`, so several of them in one
//!   process are distinct clients. Broadcasting consumers keep "DEFAULT": give each one its
//!   own instance name. Broadcasting offsets live in local files
//!   (`rocketmq.client.localOffsetStoreDir`, default `~/.rocketmq_offsets`).
//! - Start-up calls: producer: GET_ROUTEINFO_BY_TOPIC (105) for TBW102 and each topic,
//!   HEART_BEAT (34) to masters; push consumer: 105 for the topic and `%RETRY%<group>`,
//!   34 to every broker in its routes, GET_CONSUMER_LIST_BY_GROUP (38) per rebalance,
//!   QUERY_CONSUMER_OFFSET (14), PULL_MESSAGE (11), UPDATE_CONSUMER_OFFSET (15, oneway, every
//!   5 s and at shutdown), UNREGISTER_CLIENT (35). Rebalance runs at start, on
//!   NOTIFY_CONSUMER_IDS_CHANGED (40) and every 20 s (`rocketmq.client.rebalance.waitInterval`).
//! - `DefaultLitePullConsumer` with `auto_commit(false)`: `commit_with_map(offsets, true)`
//!   stores the offsets and persists them with oneway UPDATE_CONSUMER_OFFSET; a new consumer
//!   of the group reads them back with QUERY_CONSUMER_OFFSET.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use rocketmq_client_rust::{
    ClientConfig, ClientRuntime, ClientRuntimeConfig, DefaultMQProducer, DefaultMQPushConsumer,
    MQPushConsumer, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

mod inbox;
mod raw;
mod restart;
mod seeds;
mod sentinel;
#[allow(unused_imports)] // each test binary uses a different subset
pub use {inbox::*, raw::*, restart::*, seeds::*, sentinel::*};

/// Number of shards every test broker runs (each one is a logical broker `petrel_<i>`).
pub const SHARDS: u16 = 2;
/// Client-side send timeout: longer than the broker's syncFlushTimeout (5 s), so a slow disk
/// shows as the broker's FLUSH_DISK_TIMEOUT answer rather than as a client timeout.
pub const SEND_TIMEOUT_MS: u64 = 15_000;
/// brokerName in the test broker.conf; shard i registers as `petrel_<i>`.
pub const BROKER_NAME: &str = "petrel";

// ------------------------------------------------------------------------------------------
// The petrel process
// ------------------------------------------------------------------------------------------

/// Locates the `petrel` binary: `$PETREL_BIN`, else next to this test executable
/// (`<target>/<profile>/petrel`, which `cargo build --workspace` produces), else
/// `<workspace>/target/{debug,release}/petrel`.
pub fn petrel_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("PETREL_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("PETREL_BIN={} is not a file", p.display());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/<profile>/deps/<test-binary>
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("petrel"));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(&dir).join("debug/petrel"));
    }
    candidates.push(workspace.join("target/debug/petrel"));
    candidates.push(workspace.join("target/release/petrel"));
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "petrel binary not found (looked at {:?}); run `cargo build -p broker --bin petrel` \
         or set PETREL_BIN",
        candidates
    )
}

/// The filesystem type of the mount that holds `path` (longest mount-point prefix).
fn fs_type(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let path = path.canonicalize().ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut it = line.split_whitespace();
        let (Some(_dev), Some(mnt), Some(fstype)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if path.starts_with(mnt) && best.as_ref().is_none_or(|(n, _)| mnt.len() > *n) {
            best = Some((mnt.len(), fstype.to_string()));
        }
    }
    best.map(|(_, t)| t)
}

/// Where test stores go. O_DIRECT needs a real disk filesystem (not tmpfs): `$COMPAT_TMPDIR`
/// if set, else `/var/tmp`, else `<workspace>/target/compat-tmp`.
pub fn store_base_dir() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("COMPAT_TMPDIR") {
        return Ok(PathBuf::from(d));
    }
    let candidates = [
        PathBuf::from("/var/tmp"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compat-tmp"),
    ];
    for c in &candidates {
        let _ = std::fs::create_dir_all(c);
        match fs_type(c).as_deref() {
            Some("tmpfs") | Some("ramfs") | None => continue,
            Some(_) => return Ok(c.clone()),
        }
    }
    bail!("no directory on a real disk filesystem for the test store (tried {candidates:?}); set COMPAT_TMPDIR")
}

static PORT_SEQ: AtomicU32 = AtomicU32::new(0);

/// Picks `count` consecutive free loopback ports below the kernel's ephemeral range
/// (32768+), so that no client's outgoing connection can take them before petrel binds.
pub fn free_port_block(count: u16) -> Result<u16> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761)
        ^ PORT_SEQ
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(40_503);
    let mut x = seed | 1;
    for _ in 0..500 {
        // xorshift
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let base = 20_000 + (x % 12_000) as u16;
        let mut held = Vec::new();
        for i in 0..count {
            match TcpListener::bind(("127.0.0.1", base + i)) {
                Ok(l) => held.push(l),
                Err(_) => break,
            }
        }
        if held.len() == usize::from(count) {
            return Ok(base);
        }
    }
    bail!("no block of {count} free loopback ports found")
}

/// A `petrel` child process with its own temp store dir and ports. Killed on drop.
pub struct Petrel {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub namesrv_port: u16,
    pub listen_port: u16,
    starts: u32,
}

impl Petrel {
    /// Starts a fresh broker (embedded nameserver, `SHARDS` shards, SYNC_FLUSH) and waits
    /// until every shard is registered in the nameserver.
    pub fn start() -> Result<Petrel> {
        let bin = petrel_bin()?;
        let base = store_base_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("compat-petrel-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a temp dir under {}", base.display()))?;
        let namesrv_port = free_port_block(1)?;
        let listen_port = free_port_block(SHARDS)?;
        let mut p = Petrel {
            child: None,
            bin,
            dir,
            namesrv_port,
            listen_port,
            starts: 0,
        };
        p.write_conf()?;
        p.spawn()?;
        p.wait_ready(Duration::from_secs(60))?;
        Ok(p)
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    pub fn shard_addr(&self, shard: u16) -> String {
        format!("127.0.0.1:{}", self.listen_port + shard)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("broker.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("petrel-{}.log", self.starts))
    }

    fn write_conf(&self) -> Result<()> {
        let conf = format!(
            "# written by compat/tests/common\n\
             brokerClusterName=PetrelCompat\n\
             brokerName={BROKER_NAME}\n\
             brokerIP1=127.0.0.1\n\
             bindAddress=127.0.0.1\n\
             listenPort={}\n\
             namesrvListenPort={}\n\
             storePathRootDir={}\n\
             shards={SHARDS}\n\
             flushDiskType=SYNC_FLUSH\n\
             autoCreateTopicEnable=true\n\
             defaultTopicQueueNums=4\n\
             mappedFileSizeCommitLog=16777216\n",
            self.listen_port,
            self.namesrv_port,
            self.store_dir().display()
        );
        std::fs::write(self.conf_path(), conf).context("writing broker.conf")
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let log = File::create(self.log_path()).context("creating the petrel log file")?;
        let log2 = log.try_clone()?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.conf_path())
            .env(
                "RUST_LOG",
                std::env::var("PETREL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("NAMESRV_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Last `max` bytes of the current log (for failure messages).
    pub fn log_tail(&self, max: usize) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        if s.len() > max {
            let mut cut = s.len() - max;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s = format!("...{}", &s[cut..]);
        }
        s
    }

    /// Waits until the nameserver answers and lists every shard in the TBW102 route (the
    /// route a producer uses for a topic that does not exist yet).
    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last_err: String;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "petrel exited during start-up ({status}); log:\n{}",
                        self.log_tail(6000)
                    );
                }
            }
            match route_brokers(&self.namesrv_addr(), "TBW102") {
                Ok(Some(names)) => {
                    let all = (0..SHARDS).all(|i| names.contains(&format!("{BROKER_NAME}_{i}")));
                    let ports_up = (0..SHARDS).all(|i| {
                        TcpStream::connect_timeout(
                            &self.shard_addr(i).parse::<SocketAddr>().expect("addr"),
                            Duration::from_millis(500),
                        )
                        .is_ok()
                    });
                    if all && ports_up {
                        return Ok(());
                    }
                    last_err = format!("TBW102 route lists {names:?}, shard ports up: {ports_up}");
                }
                Ok(None) => last_err = "TBW102 route: TOPIC_NOT_EXIST".into(),
                Err(e) => last_err = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                let threads = self
                    .child
                    .as_ref()
                    .map(|c| thread_states(c.id()))
                    .unwrap_or_default();
                bail!(
                    "petrel not ready after {limit:?}: {last_err}; its threads (name, state, wchan): \
                     {threads}; log:\n{}",
                    self.log_tail(6000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit. Returns the exit status text.
    pub fn stop_graceful(&mut self, limit: Duration) -> Result<String> {
        let Some(mut child) = self.child.take() else {
            bail!("petrel is not running")
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.to_string());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "petrel did not exit within {limit:?} of SIGTERM; log:\n{}",
                    self.log_tail(6000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash): nothing is flushed or unregistered.
    pub fn kill_hard(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL petrel")?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts petrel again on the same store dir and ports, and waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("restart() while petrel is still running");
        }
        // The shard ports may be in TIME_WAIT for a moment; petrel must still bind them
        // (SO_REUSEADDR). Retry the spawn a few times if it exits immediately.
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Prints the last 20 kB of the broker's logs to stderr.
    pub fn print_log_tail(&self) {
        let logs = self.all_logs();
        let mut cut = logs.len().saturating_sub(20_000);
        while !logs.is_char_boundary(cut) {
            cut += 1;
        }
        eprintln!(
            "==== petrel log (tail) ====\n{}\n==== end of petrel log ====",
            &logs[cut..]
        );
    }

    /// The whole log of every start of this broker (for failure messages).
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.dir.path().join(format!("petrel-{i}.log"));
            if let Ok(s) = std::fs::read_to_string(&p) {
                out.push_str(&format!("---- petrel start #{i} ----\n{s}"));
            }
        }
        out
    }
}

/// "name state wchan" of every thread of a process (to see where a stuck start waits).
fn thread_states(pid: u32) -> String {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("?");
            out.push(format!(
                "{} {} {}",
                read("comm").trim(),
                state,
                read("wchan").trim()
            ));
        }
    }
    out.join("; ")
}

/// Returns the scenario's result, printing the broker's log first when it failed (a test
/// that returns `Err` does not panic, so `Drop` cannot tell).
pub fn finish<T>(broker: &Petrel, r: Result<T>) -> Result<T> {
    if r.is_err() && std::env::var_os("COMPAT_SHOW_LOG").is_none() {
        broker.print_log_tail();
    }
    r
}

impl Drop for Petrel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("COMPAT_SHOW_LOG").is_some() {
            self.print_log_tail();
        }
        if std::env::var_os("COMPAT_KEEP_STORE").is_some() {
            let path = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("tmp"));
            eprintln!("keeping {}", path.keep().display());
        }
    }
}

// ------------------------------------------------------------------------------------------
// The client side
// ------------------------------------------------------------------------------------------

static ENV_ONCE: Once = Once::new();

/// Process-wide client settings that the crate reads from the environment.
fn init_client_env() {
    ENV_ONCE.call_once(|| {
        // Broadcasting consumers keep offsets in local files; keep them out of $HOME.
        let dir =
            std::env::temp_dir().join(format!("petrel-compat-offsets-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        std::env::set_var("rocketmq.client.localOffsetStoreDir", &dir);
        // A namesrv address from the user's environment must not leak into the tests.
        std::env::remove_var("NAMESRV_ADDR");
    });
}

/// One Tokio runtime (owned by rocketmq-runtime, as the crate requires) plus one
/// `ClientRuntime`, the lifecycle owner of every producer/consumer built from it.
pub struct ClientEnv {
    owner: Option<RuntimeOwner>,
    rt: Arc<ClientRuntime>,
    /// Client logging, only when `COMPAT_CLIENT_LOG` is set (an env-filter, e.g. `debug`).
    telemetry: Option<rocketmq_observability::TelemetryRuntimeGuard>,
}

impl ClientEnv {
    pub fn new(scope: &str) -> Result<ClientEnv> {
        init_client_env();
        // The client runs every listener call in the runtime's "metadata-io" blocking lane.
        // Its default admission on a 2-core machine (4 running + 16 queued, 5 s queue timeout)
        // rejects the rest of a 32-message pull batch, and the client then sends those
        // messages back for redelivery through %RETRY% 10 s later. That is the client's own
        // back-pressure, not the broker's; give the lane room so each scenario tests the broker.
        let mut config = RuntimeConfig::for_parallelism(format!("compat-{scope}"), 2);
        config.blocking_lane_policies.metadata_io.max_queue_depth = 4096;
        config.blocking_lane_policies.metadata_io.queue_timeout = Duration::from_secs(60);
        let owner = RuntimeOwner::plan(config)
            .map_err(|e| anyhow!("runtime config: {e}"))?
            .build()
            .map_err(|e| anyhow!("runtime build: {e}"))?;
        let telemetry = std::env::var("COMPAT_CLIENT_LOG").ok().and_then(|filter| {
            let mut cfg = rocketmq_observability::TelemetryBootstrapConfig::default();
            cfg.logging.filter = filter;
            rocketmq_observability::install_global(&cfg)
                .map_err(|e| eprintln!("COMPAT_CLIENT_LOG: cannot install client logging: {e}"))
                .ok()
        });
        let handle = telemetry
            .as_ref()
            .map(|t| t.handle())
            .unwrap_or_else(TelemetryHandle::noop);
        let rt = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig {
                shutdown_timeout: Duration::from_secs(10),
                ..Default::default()
            },
            handle,
        )
        .map_err(|e| anyhow!("client runtime: {e}"))?;
        Ok(ClientEnv {
            owner: Some(owner),
            rt,
            telemetry,
        })
    }

    /// Runs the scenario on the client runtime with a hard time limit, then shuts the
    /// client runtime down (bounded).
    pub fn run<F, Fut, T>(mut self, limit: Duration, scenario: F) -> Result<T>
    where
        F: FnOnce(Arc<ClientRuntime>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let owner = self.owner.take().expect("owner");
        let rt = self.rt.clone();
        let fut = scenario(rt.clone());
        let out = owner.block_on(async move {
            let r = match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(anyhow!("scenario timed out after {limit:?}")),
            };
            let _ = tokio::time::timeout(Duration::from_secs(15), rt.shutdown()).await;
            r
        });
        let _ = owner.shutdown_runtime_blocking_with_timeout(Duration::from_secs(5));
        if let Some(t) = self.telemetry.take() {
            let _ = t.shutdown();
        }
        out
    }
}

/// Unique-per-run name suffix (topics and groups must not collide between tests).
pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

pub fn message(topic: &str, tag: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags(tag)
        .body_slice(body.as_bytes())
        .build_unchecked()
}

/// Builds and starts a producer in group `<prefix>_<unique>`.
pub async fn producer(
    rt: &Arc<ClientRuntime>,
    namesrv: &str,
    prefix: &str,
) -> Result<DefaultMQProducer> {
    let mut p = DefaultMQProducer::builder(rt.clone())
        .producer_group(unique(prefix))
        .name_server_addr(namesrv.to_string())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .build();
    p.start()
        .await
        .map_err(|e| anyhow!("producer {prefix} start: {e}"))?;
    Ok(p)
}

pub struct PushOpts<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub expression: &'a str,
    pub model: MessageModel,
    pub from: ConsumeFromWhere,
    /// Needed when several consumers of one group live in this process with the same
    /// client id (broadcasting keeps the default instance name "DEFAULT").
    pub instance_name: Option<String>,
}

impl<'a> PushOpts<'a> {
    pub fn clustering(group: &'a str, topic: &'a str) -> Self {
        PushOpts {
            group,
            topic,
            expression: "*",
            model: MessageModel::Clustering,
            from: ConsumeFromWhere::ConsumeFromFirstOffset,
            instance_name: None,
        }
    }
}

/// Builds, subscribes and starts a push consumer that records into a new Inbox.
pub async fn start_push_consumer(
    rt: &Arc<ClientRuntime>,
    namesrv: &str,
    opts: PushOpts<'_>,
) -> Result<(DefaultMQPushConsumer, Inbox)> {
    let mut cfg = ClientConfig::new();
    if let Some(name) = &opts.instance_name {
        cfg.set_instance_name(name.as_str().into());
    }
    let mut consumer = DefaultMQPushConsumer::builder(rt.clone())
        .client_config(cfg)
        .name_server_addr(namesrv.to_string())
        .consumer_group(opts.group.to_string())
        .message_model(opts.model)
        .consume_from_where(opts.from)
        .build();
    consumer
        .subscribe(opts.topic, opts.expression)
        .await
        .map_err(|e| anyhow!("subscribe {} {}: {e}", opts.topic, opts.expression))?;
    let inbox = Inbox::default();
    consumer.register_message_listener_concurrently(Recorder(inbox.clone()));
    consumer
        .start()
        .await
        .map_err(|e| anyhow!("push consumer start ({}): {e}", opts.group))?;
    Ok((consumer, inbox))
}

/// Sends `bodies` one by one with sync sends; every send must be SEND_OK.
/// Returns (body, brokerName, queueId, queueOffset) per message.
pub async fn send_sync_all(
    producer: &DefaultMQProducer,
    topic: &str,
    tag: &str,
    bodies: &[String],
) -> Result<Vec<(String, String, i32, u64)>> {
    use rocketmq_client_rust::SendStatus;
    let mut out = Vec::with_capacity(bodies.len());
    for b in bodies {
        let r = producer
            .send_with_timeout(message(topic, tag, b), SEND_TIMEOUT_MS)
            .await
            .map_err(|e| anyhow!("sync send of {b:?} to {topic} failed: {e}"))?
            .ok_or_else(|| anyhow!("sync send of {b:?} returned no SendResult"))?;
        if r.send_status != SendStatus::SendOk {
            bail!("sync send of {b:?}: status {:?}", r.send_status);
        }
        let mq = r
            .message_queue
            .clone()
            .ok_or_else(|| anyhow!("SendResult without message queue"))?;
        out.push((
            b.clone(),
            mq.broker_name().to_string(),
            mq.queue_id(),
            r.queue_offset,
        ));
    }
    Ok(out)
}

/// Counts of each body (to check exactly-once / at-least-once).
pub fn body_counts(rs: &[Received]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rs {
        *m.entry(r.body.clone()).or_insert(0) += 1;
    }
    m
}

/// Asserts that `got` holds every body in `expected` and nothing else (duplicates allowed
/// only when `allow_dupes`).
pub fn assert_same_bodies(got: &[Received], expected: &[String], allow_dupes: bool) -> Result<()> {
    let counts = body_counts(got);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|b| !counts.contains_key(*b))
        .collect();
    let unexpected: Vec<&String> = counts.keys().filter(|b| !expected.contains(b)).collect();
    let dupes: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    if !missing.is_empty() || !unexpected.is_empty() || (!allow_dupes && !dupes.is_empty()) {
        bail!(
            "received bodies differ: missing {missing:?}, unexpected {unexpected:?}, duplicated {dupes:?} \
             (got {} messages, expected {})",
            got.len(),
            expected.len()
        );
    }
    Ok(())
}

pub fn bodies(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:04}")).collect()
}

/// The shard address that serves broker name `petrel_<i>`.
pub fn shard_of(broker_name: &str) -> Option<u16> {
    broker_name
        .strip_prefix(&format!("{BROKER_NAME}_"))?
        .parse()
        .ok()
}

/// Checks, once, that the nameserver's route for `topic` lists every shard: true as soon as
/// the send that auto-created the topic was answered (the broker waits for that).
pub fn check_route_all_shards(namesrv: &str, topic: &str) -> Result<()> {
    let names = route_brokers(namesrv, topic)?.unwrap_or_default();
    if (0..SHARDS).all(|i| names.contains(&format!("{BROKER_NAME}_{i}"))) {
        return Ok(());
    }
    bail!("the route of {topic} lists {names:?}, not all {SHARDS} shards")
}
