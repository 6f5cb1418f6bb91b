//! Starting and stopping a `petrel` child process for the embedded standard suite: loopback
//! ports chosen free, a temporary store directory on a real disk (O_DIRECT needs one), its
//! output in a log file, and a stop that asks politely (SIGTERM) before it forces (SIGKILL).
//! A `PetrelProcess` that is dropped kills its child, so no run leaves a broker behind.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::route;

/// How long a broker may take to accept connections and register its shards (petrel itself
/// exits non-zero when a shard is not up within its `startupTimeoutMs`, 10 s by default).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushDiskType {
    SyncFlush,
    AsyncFlush,
}

impl FlushDiskType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        }
    }
}

#[derive(Clone, Debug)]
pub struct PetrelOptions {
    pub binary: PathBuf,
    pub store_dir: PathBuf,
    pub flush: FlushDiskType,
    /// Extra arguments passed through unchanged.
    pub extra_args: Vec<String>,
    pub log_path: PathBuf,
}

pub struct PetrelProcess {
    child: Option<Child>,
    pub namesrv: SocketAddr,
    pub listen_port: u16,
    pub broker_count: usize,
    log_path: PathBuf,
}

/// Finds `petrel`: the given path, else next to this executable; if it is not there and
/// this is a cargo workspace build, builds it with the same profile.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--petrel {} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("locate loadgen's executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    let candidate = dir.join("petrel");
    if candidate.is_file() {
        return Ok(candidate);
    }
    let profile = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if workspace.join("Cargo.toml").is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let profile_arg = match profile.as_str() {
            "debug" => "dev".to_string(),
            other => other.to_string(),
        };
        eprintln!(
            "loadgen: building petrel (cargo build --profile {profile_arg} -p broker --bin petrel)"
        );
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args([
                "build",
                "--profile",
                &profile_arg,
                "-p",
                "broker",
                "--bin",
                "petrel",
            ])
            .status()
            .context("run cargo to build petrel")?;
        if status.success() && candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no petrel binary next to {} (build it with `cargo build --release -p broker`, or pass --petrel PATH)",
        exe.display()
    )
}

/// A loopback port `p` such that `p - 2 ..= p + span` are all free right now (petrel opens
/// `listenPort + i` per shard; RocketMQ brokers also open `listenPort - 2`).
pub fn free_port_range(span: u16) -> Result<u16> {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0").context("bind a probe port")?;
        let p = probe.local_addr().context("probe address")?.port();
        drop(probe);
        if p < 1024 + 2 || u32::from(p) + u32::from(span) > 65_000 {
            continue;
        }
        let all_free = (p - 2..=p + span).all(|q| TcpListener::bind(("127.0.0.1", q)).is_ok());
        if all_free {
            return Ok(p);
        }
    }
    bail!("found no free range of {} loopback ports", span + 3)
}

impl PetrelProcess {
    /// Starts petrel and waits until its nameserver lists every shard as a broker. A start
    /// that does not get there within [`START_TIMEOUT`] is an error (never retried: petrel's
    /// start-up contract is that every shard comes up or the process exits non-zero).
    pub fn start(opts: &PetrelOptions) -> Result<PetrelProcess> {
        let shards = expected_shards(&opts.extra_args);
        let store_dir = &opts.store_dir;
        let listen_port = free_port_range(u16::try_from(shards + 1).unwrap_or(u16::MAX))?;
        let namesrv_port = free_port_range(1)?;
        std::fs::create_dir_all(store_dir)
            .with_context(|| format!("create {}", store_dir.display()))?;
        let log = File::create(&opts.log_path)
            .with_context(|| format!("create {}", opts.log_path.display()))?;
        let log_err = log.try_clone().context("clone log handle")?;
        let mut cmd = Command::new(&opts.binary);
        // Flag names: broker/src/main.rs (keys of broker/src/config.rs). Everything on loopback.
        cmd.arg("--listen-port")
            .arg(listen_port.to_string())
            .arg("--namesrv-listen-port")
            .arg(namesrv_port.to_string())
            .arg("--store-dir")
            .arg(store_dir)
            .arg("--flush-disk-type")
            .arg(opts.flush.as_str())
            .args(["--broker-ip1", "127.0.0.1", "--bind-address", "127.0.0.1"])
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", opts.binary.display()))?;
        let mut p = PetrelProcess {
            child: Some(child),
            namesrv: SocketAddr::from(([127, 0, 0, 1], namesrv_port)),
            listen_port,
            broker_count: 0,
            log_path: opts.log_path.clone(),
        };
        // On failure `p` is dropped, which kills the child.
        p.wait_ready(shards)?;
        Ok(p)
    }

    fn wait_ready(&mut self, brokers_min: usize) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("poll petrel")? {
                    self.child = None;
                    bail!(
                        "petrel exited during start-up ({status}); log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if TcpStream::connect_timeout(&self.namesrv, Duration::from_millis(200)).is_ok() {
                if let Ok(brokers) = route::cluster_brokers(self.namesrv) {
                    if brokers.len() >= brokers_min.max(1) {
                        self.broker_count = brokers.len();
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "petrel did not register its {brokers_min} shard(s) with its nameserver within \
                     {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The broker's stall summary (`shard stalls: …`, logged at exit), if it logged one.
    pub fn stall_summary(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log_path).ok()?;
        let line = text.lines().rev().find(|l| l.contains("shard stalls:"))?;
        line.split_once("shard stalls:")
            .map(|(_, counts)| format!("shard stalls:{counts}"))
    }

    /// The last lines of the child's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, wait, then SIGKILL if needed. Returns how the child ended, with its stall
    /// counts (`petrel_shard_stalls_total`, which must read 0).
    pub fn stop(mut self) -> Result<String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<String> {
        let Some(mut child) = self.child.take() else {
            return Ok("already exited".into());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("poll petrel")? {
                let stalls = self
                    .stall_summary()
                    .unwrap_or_else(|| "no stall summary logged".into());
                return Ok(format!("exited after SIGTERM: {status}; {stalls}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let status = child.wait().context("reap petrel")?;
        Ok(format!(
            "killed after {STOP_TIMEOUT:?} without exiting on SIGTERM: {status}"
        ))
    }
}

/// Shards petrel will start: `--shards N` among the extra arguments, else one per allowed CPU
/// (petrel's default, from `sched_getaffinity`, as `available_parallelism` reads it).
fn expected_shards(extra_args: &[String]) -> usize {
    let mut it = extra_args.iter();
    while let Some(a) = it.next() {
        let value = if a == "--shards" {
            it.next().cloned()
        } else {
            a.strip_prefix("--shards=").map(str::to_string)
        };
        if let Some(n) = value.and_then(|v| v.parse::<usize>().ok()) {
            return n.max(1);
        }
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Drop for PetrelProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
