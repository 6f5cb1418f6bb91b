//! The in-process broker under test: one real `Shard` whose store runs on a `SimDisk`, served
//! by the real connection layer (`accept_loop`) on a loopback listener, in a glommio executor
//! of the test's own. Also: the seeded crash of that disk, and bounded waits on state.
//!
//! A crash is a power loss at the I/O boundary: the `SimDisk` keeps, drops or tears every
//! unsynced sector (seeded), every handle opened before it dies, and the crashed incarnation's
//! `FencedDisk` refuses to open anything more, so its leftover tasks (a flusher woken after the
//! crash, a checkpoint pass) cannot touch the disk the next incarnation recovers from. The
//! shard's JSON config files (topics.json, ...) live on a real temp dir under /var/tmp.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::config::BrokerConfig;
use broker::remoting::connection::{accept_loop, ConnectionLimits, ConnectionTracker, StopSignal};
use broker::shard::control::{ControlEndpoints, ControlHandle};
use broker::shard::health::ShardHealth;
use broker::shard::{Shard, ShardContext};
use engine::clock::SystemClock;
use engine::disk::sim::{CrashReport, SimDisk, SimRng};
use engine::disk::{Disk, DiskFile, DiskSpace, LocalBoxFuture};
use engine::IoError;

/// Capacity of the simulated disk (far more than the tests write: no disk-full refusals).
pub const SIM_DISK_BYTES: u64 = 64 << 30;
/// Bound on every wait for something that, in a correct broker, happens in microseconds.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// The environment variable that replays a seed.
pub const SEED_ENV: &str = "PETREL_DURABILITY_SEED";

/// Runs `f` in a fresh glommio executor on its own thread, with the broker's executor settings.
pub fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(broker::runtime::IO_MEMORY_BYTES)
        .ring_depth(broker::runtime::RING_DEPTH)
        .preempt_timer(broker::runtime::PREEMPT_TIMER)
        .spawn(move || async move { f().await })
        .expect("spawn executor")
        .join()
        .expect("executor thread");
}

/// The seed of this test's crashes: `PETREL_DURABILITY_SEED` if set, else fresh. Printed, so
/// a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={s:?} is not a u64: {e}")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let mut rng = SimRng::new(nanos as u64 ^ u64::from(std::process::id()));
            rng.next_u64()
        }
    };
    println!("{test}: crash seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// A temp dir on the real filesystem for the shard's config files.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("petrel-durability-")
        .tempdir_in("/var/tmp")
        .expect("temp dir in /var/tmp")
}

/// A fresh simulated disk.
pub fn sim_disk() -> SimDisk {
    SimDisk::new(SIM_DISK_BYTES, Rc::new(SystemClock))
}

/// Waits (polling every millisecond, at most [`WAIT_LIMIT`]) until `cond` holds; panics
/// naming `what` otherwise.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "waited {WAIT_LIMIT:?} for: {what}"
        );
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// One incarnation's view of the simulated disk: every call goes to the `SimDisk` until the
/// incarnation crashes, after which it can open, create or remove nothing.
struct FencedDisk {
    disk: SimDisk,
    is_crashed: Rc<Cell<bool>>,
}

impl FencedDisk {
    fn check(&self, op: &'static str, path: &Path) -> Result<(), IoError> {
        if self.is_crashed.get() {
            let e = std::io::Error::other("this incarnation lost power");
            return Err(IoError::new(op, path, 0, e));
        }
        Ok(())
    }
}

impl Disk for FencedDisk {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, Result<Rc<dyn DiskFile>, IoError>> {
        Box::pin(async move {
            self.check("open", path)?;
            self.disk.open(path).await
        })
    }
    fn remove(&self, path: &Path) -> Result<(), IoError> {
        self.check("remove", path)?;
        self.disk.remove(path)
    }
    fn create_dir_all(&self, path: &Path) -> Result<(), IoError> {
        self.check("create_dir_all", path)?;
        self.disk.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError> {
        self.check("list_dir", path)?;
        self.disk.list_dir(path)
    }
    fn remove_dir_all(&self, path: &Path) -> Result<(), IoError> {
        self.check("remove_dir_all", path)?;
        self.disk.remove_dir_all(path)
    }
    fn space(&self, path: &Path) -> Result<DiskSpace, IoError> {
        self.disk.space(path)
    }
    fn modified_ms(&self, path: &Path) -> Result<i64, IoError> {
        self.disk.modified_ms(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.disk.exists(path)
    }
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> LocalBoxFuture<'a, Result<(), IoError>> {
        Box::pin(async move {
            self.check("sync_dir", dir)?;
            self.disk.sync_dir(dir).await
        })
    }
}

/// One running incarnation of the shard.
pub struct Node {
    pub shard: Rc<Shard>,
    pub addr: SocketAddr,
    pub disk: SimDisk,
    root: PathBuf,
    settings: Vec<(String, String)>,
    is_crashed: Rc<Cell<bool>>,
    stop: Rc<StopSignal>,
    tracker: Rc<ConnectionTracker>,
    acceptor: Option<glommio::Task<()>>,
    _control: ControlEndpoints,
}

impl Node {
    /// Opens shard 0 with its store on `disk` (recovering what is there) and config files under
    /// `root`, `settings` as broker.conf keys on top of the test defaults, and serves it on a
    /// fresh loopback port.
    pub async fn open(disk: &SimDisk, root: &Path, settings: &[(&str, &str)]) -> Node {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::open_owned(disk, root, settings).await
    }

    async fn open_owned(disk: &SimDisk, root: &Path, settings: Vec<(String, String)>) -> Node {
        let listener =
            glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let mut config = BrokerConfig::default();
        let port = addr.port().to_string();
        let root_text = root.display().to_string();
        let defaults = [
            ("brokerClusterName", "DurabilityCluster"),
            ("brokerName", "durable"),
            ("brokerIP1", "127.0.0.1"),
            ("bindAddress", "127.0.0.1"),
            ("listenPort", port.as_str()),
            // No nameserver runs: nothing here registers or auto-creates topics.
            ("namesrvAddr", "127.0.0.1:9"),
            ("storePathRootDir", root_text.as_str()),
            ("autoCreateTopicEnable", "false"),
            ("mappedFileSizeCommitLog", "1048576"),
            ("maxMessageSize", "65536"),
            ("diskMaxUsedSpaceRatio", "95"),
            ("diskSpaceWarningLevelRatio", "0.99"),
        ];
        let pairs = defaults
            .iter()
            .map(|(k, v)| (*k, *v))
            .chain(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (k, v) in pairs {
            config
                .set(k, v)
                .unwrap_or_else(|e| panic!("config {k}={v}: {e}"));
        }
        config.validate().expect("valid config");
        let is_crashed = Rc::new(Cell::new(false));
        let fenced: Rc<dyn Disk> = Rc::new(FencedDisk {
            disk: disk.clone(),
            is_crashed: is_crashed.clone(),
        });
        let (control, endpoints) = ControlHandle::new(0, 1);
        let health = Arc::new(ShardHealth::new(0, Instant::now()));
        let ctx = ShardContext::new(0, Rc::new(config), control, health).with_store_disk(fenced);
        let shard = Shard::open(ctx)
            .await
            .expect("open the shard on the SimDisk");
        let tracker = ConnectionTracker::new(0);
        let stop = Rc::new(StopSignal::default());
        let acceptor = glommio::spawn_local(accept_loop(
            listener,
            shard.clone(),
            tracker.clone(),
            ConnectionLimits::default(),
            stop.clone(),
        ));
        Node {
            shard,
            addr,
            disk: disk.clone(),
            root: root.to_path_buf(),
            settings,
            is_crashed,
            stop,
            tracker,
            acceptor: Some(acceptor),
            _control: endpoints,
        }
    }

    /// Power loss: the disk keeps, drops or tears each unsynced sector (from `rng`), this
    /// incarnation stops serving and can no longer reach the disk. Held syncs are released
    /// afterwards (they fail: their handles died), so the next incarnation can sync.
    pub async fn crash(mut self, rng: &mut SimRng) -> CrashReport {
        let report = self.disk.crash(rng);
        self.is_crashed.set(true);
        self.disk.release_syncs();
        self.disk.fail_next_syncs(0);
        self.stop.stop();
        self.tracker.close_all();
        self.shard.begin_shutdown();
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.await;
        }
        println!("crash: {report:?}");
        report
    }

    /// Crashes this incarnation and opens the next one on the same disk and config files, with
    /// the same settings unless `settings` replaces them.
    pub async fn crash_and_reopen(
        self,
        rng: &mut SimRng,
        settings: Option<&[(&str, &str)]>,
    ) -> (Node, CrashReport) {
        let disk = self.disk.clone();
        let root = self.root.clone();
        let settings = match settings {
            Some(s) => s
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            None => self.settings.clone(),
        };
        let report = self.crash(rng).await;
        let node = Self::open_owned(&disk, &root, settings).await;
        (node, report)
    }

    /// The commitlog's durable end lags its write end: something appended is not yet synced.
    pub fn has_unsynced_records(&self) -> bool {
        let store = self.shard.store();
        store.durable_commit_log_offset().0 < store.max_commit_log_offset().0
    }

    /// Records stored in `topic` (all queues), from the consume queues' max offsets.
    pub fn stored_count(&self, topic: &str, queues: u32) -> u64 {
        let store = self.shard.store();
        (0..queues)
            .map(|q| store.max_offset(topic, engine::QueueId(q)).0)
            .sum()
    }
}
