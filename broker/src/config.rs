//! `BrokerConfig`: RocketMQ's `broker.conf` (Java properties, `key=value`), then command-line
//! overrides, validated into one value every shard reads.
//!
//! Precedence, lowest first: built-in defaults, the `NAMESRV_ADDR` environment variable, the
//! file (`-c broker.conf`), command-line flags. An unknown key is a warning (the broker
//! starts); a value that does not parse or is out of range is a [`ConfigError`] (the binary
//! exits with code 2).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `brokerClusterName` | `DefaultCluster` | cluster the shards register in |
//! | `brokerName` | `petrel` | shard `i` registers as `<brokerName>_<i>` (brokerId 0) |
//! | `brokerIP1` | this host's primary IPv4 (the source address of its default route), else `127.0.0.1` | address advertised to clients |
//! | `bindAddress` | `0.0.0.0` | address the listeners bind (RocketMQ 5's `bindAddress`) |
//! | `listenPort` | `10911` | shard `i` listens on `listenPort + i` |
//! | `namesrvAddr` | unset (`NAMESRV_ADDR` env) | `host:port;host:port`; unset = embedded nameserver |
//! | `namesrvListenPort` | `9876` | port of the embedded nameserver (Petrel key) |
//! | `shards` | allowed CPUs (`sched_getaffinity`) | shard (executor) count (Petrel key) |
//! | `storePathRootDir` | `$HOME/petrel-store` | shard `i` stores under `<dir>/shard-<i>` |
//! | `flushDiskType` | `SYNC_FLUSH` | or `ASYNC_FLUSH` |
//! | `syncFlushTimeout` | `5000` | ms before a send answers FLUSH_DISK_TIMEOUT |
//! | `flushIntervalCommitLog` | `500` | ms between flushes under ASYNC_FLUSH |
//! | `autoCreateTopicEnable` | `true` | create unknown topics from `TBW102` |
//! | `enablePropertyFilter` | `true` (Java: `false`) | serve SQL92 subscriptions; `false` answers them SYSTEM_ERROR as Java does |
//! | `defaultTopicQueueNums` | `8` | queues of `TBW102` (auto-created topics take min(4, this) per shard) |
//! | `maxMessageSize` | `4194304` | largest body in bytes |
//! | `fileReservedTime` | `72` | hours a commitlog segment is kept |
//! | `deleteWhen` | `04` | hour of day (`04`, or `04;16`: the first is used) when expired segments go |
//! | `diskMaxUsedSpaceRatio` | `75` | percent of disk use above which old segments are deleted early |
//! | `diskSpaceWarningLevelRatio` | `0.90` | disk use ratio above which writes are refused |
//! | `mappedFileSizeCommitLog` | `1073741824` | commitlog segment size in bytes (multiple of 4096) |
//! | `connectionInFlightMax` | `4096` | requests in flight per connection before SYSTEM_BUSY (Petrel key) |
//! | `transactionTimeOut` | `6000` | ms before an undecided half (transactional) message is first checked back |
//! | `transactionCheckInterval` | `30000` | ms between two check-back rounds |
//! | `transactionCheckMax` | `15` | check-backs of one half message before it is discarded |
//! | `startupTimeoutMs` | `10000` | every shard must be up and registered with the nameserver(s) within this, or `petrel` exits non-zero (Petrel key) |
//! | `registerNameServerPeriod` | `30000` | ms between two registrations with the nameserver(s); held to 10000..=60000 as RocketMQ does |
//! | `metricsPort` | `0` (off) | shard `i` serves Prometheus text on `http://bindAddress:metricsPort+i/metrics` (Petrel key) |
//!
//! Other RocketMQ keys that Petrel knows but does not use (e.g. `brokerId`, `brokerRole`) are
//! accepted with a warning that they are ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use engine::{FlushMode, StoreConfig};

/// Largest shard count accepted.
pub const SHARDS_MAX: u16 = 256;
/// Default per-connection bound on requests in flight.
pub const CONNECTION_IN_FLIGHT_MAX_DEFAULT: usize = 4096;
/// Java's `transactionTimeOut` default (6 s).
pub const TRANSACTION_TIMEOUT_MS_DEFAULT: u64 = 6_000;
/// Every shard up and registered within this many ms, or the process exits non-zero.
pub const STARTUP_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Java 5.x's `transactionCheckInterval` default (30 s; 4.x used 60 s).
pub const TRANSACTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// Java's `transactionCheckMax` default.
pub const TRANSACTION_CHECK_MAX_DEFAULT: u32 = 15;
/// RocketMQ's `registerNameServerPeriod` default (30 s) and the bounds its broker holds the
/// value to (`BrokerController`: `max(10000, min(period, 60000))`).
pub const REGISTER_PERIOD_MS_DEFAULT: u64 = 30_000;
pub const REGISTER_PERIOD_MS_MIN: u64 = 10_000;
pub const REGISTER_PERIOD_MS_MAX: u64 = 60_000;
/// Longest accepted transactionTimeOut / transactionCheckInterval (one day).
pub const TRANSACTION_TIME_MS_MAX: u64 = 86_400_000;

/// A configuration value that cannot be used. Exit code 2 in the binary.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a key=value line: {text:?}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

/// flushDiskType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushDiskType {
    SyncFlush,
    AsyncFlush,
}

/// The validated broker configuration (shared read-only by all shards).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_ip1: IpAddr,
    pub bind_address: IpAddr,
    pub listen_port: u16,
    /// `None`: the nameserver is embedded on `namesrv_listen_port`.
    pub namesrv_addr: Option<Vec<String>>,
    pub namesrv_listen_port: u16,
    pub shards: u16,
    pub store_path_root_dir: PathBuf,
    pub flush_disk_type: FlushDiskType,
    pub sync_flush_timeout_ms: u64,
    pub flush_interval_commit_log_ms: u64,
    pub auto_create_topic_enable: bool,
    /// enablePropertyFilter: SQL92 property filtering on pull. Java defaults to false; Petrel
    /// to true, since the filter costs nothing unless a consumer subscribes with SQL92.
    pub enable_property_filter: bool,
    pub default_topic_queue_nums: u32,
    pub max_message_size: u32,
    pub file_reserved_time_hours: u32,
    pub delete_when_hour: u8,
    /// diskMaxUsedSpaceRatio, percent.
    pub disk_max_used_space_ratio_percent: u32,
    /// diskSpaceWarningLevelRatio, 0..1.
    pub disk_space_warning_level_ratio: f64,
    pub mapped_file_size_commit_log: u64,
    pub connection_in_flight_max: usize,
    /// transactionTimeOut: age (ms, from the born time) before an undecided half message is
    /// checked back with its producer (`transaction.rs`).
    pub transaction_timeout_ms: u64,
    /// transactionCheckInterval: ms between two check-back rounds.
    pub transaction_check_interval_ms: u64,
    /// transactionCheckMax: check-backs of one half message before it is discarded.
    pub transaction_check_max: u32,
    /// metricsPort: shard `i` serves its metrics on `metricsPort + i` (`crate::metrics`);
    /// 0 = no metrics listener.
    pub metrics_port: u16,
    /// startupTimeoutMs: the bound on bringing every shard up and registered (`runtime`).
    pub startup_timeout_ms: u64,
    /// registerNameServerPeriod: ms between two registrations (`runtime::registrar`), already
    /// held to `REGISTER_PERIOD_MS_MIN..=REGISTER_PERIOD_MS_MAX`.
    pub register_name_server_period_ms: u64,
}

/// What [`BrokerConfig::set`] did with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOutcome {
    Applied,
    /// A RocketMQ key Petrel does not use.
    Ignored,
    Unknown,
}

/// RocketMQ broker keys that are accepted and ignored (with a warning).
const IGNORED_KEYS: &[&str] = &[
    "brokerId",
    "brokerRole",
    "brokerIP2",
    "haListenPort",
    "storePathCommitLog",
    "storePathConsumeQueue",
    "mapedFileSizeCommitLog",
    "mappedFileSizeConsumeQueue",
    "brokerPermission",
    "traceTopicEnable",
    "clusterTopicEnable",
    "brokerTopicEnable",
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "waitTimeMillsInSendQueue",
    "transientStorePoolEnable",
    "slaveReadEnable",
    "aclEnable",
];

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "petrel".into(),
            broker_ip1: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: 10911,
            namesrv_addr: None,
            namesrv_listen_port: 9876,
            shards: 1,
            store_path_root_dir: PathBuf::from("petrel-store"),
            flush_disk_type: FlushDiskType::SyncFlush,
            sync_flush_timeout_ms: 5000,
            flush_interval_commit_log_ms: 500,
            auto_create_topic_enable: true,
            enable_property_filter: true,
            default_topic_queue_nums: 8,
            max_message_size: 4 * 1024 * 1024,
            file_reserved_time_hours: 72,
            delete_when_hour: 4,
            disk_max_used_space_ratio_percent: 75,
            disk_space_warning_level_ratio: 0.90,
            mapped_file_size_commit_log: 1 << 30,
            connection_in_flight_max: CONNECTION_IN_FLIGHT_MAX_DEFAULT,
            transaction_timeout_ms: TRANSACTION_TIMEOUT_MS_DEFAULT,
            transaction_check_interval_ms: TRANSACTION_CHECK_INTERVAL_MS_DEFAULT,
            transaction_check_max: TRANSACTION_CHECK_MAX_DEFAULT,
            metrics_port: 0,
            startup_timeout_ms: STARTUP_TIMEOUT_MS_DEFAULT,
            register_name_server_period_ms: REGISTER_PERIOD_MS_DEFAULT,
        }
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|e| invalid(key, value, e.to_string()))
}

/// Java `Boolean.parseBoolean` is lax; we only take true/false (any case) to catch typos.
fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// `host:port;host:port` (RocketMQ's separator), each with a port.
pub fn parse_namesrv_addr(key: &str, value: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let addrs: Vec<String> = value
        .split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Ok(None);
    }
    for a in &addrs {
        let Some((host, port)) = a.rsplit_once(':') else {
            return Err(invalid(key, value, format!("{a:?} has no :port")));
        };
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(invalid(key, value, format!("{a:?} is not host:port")));
        }
    }
    Ok(Some(addrs))
}

impl BrokerConfig {
    /// Defaults for this machine: `shards` = allowed CPUs, `brokerIP1` = primary IPv4,
    /// `storePathRootDir` = `$HOME/petrel-store`.
    pub fn machine_defaults() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        Self {
            shards: u16::try_from(crate::runtime::allowed_cpus().len().max(1)).unwrap_or(1),
            broker_ip1: primary_ipv4().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            store_path_root_dir: home.join("petrel-store"),
            ..Self::default()
        }
    }

    /// Apply one `key=value`. Unknown keys are reported, not errors.
    pub fn set(&mut self, key: &str, value: &str) -> Result<KeyOutcome, ConfigError> {
        let v = value.trim();
        match key {
            "brokerClusterName" => self.broker_cluster_name = non_empty_name(key, v)?,
            "brokerName" => self.broker_name = non_empty_name(key, v)?,
            "brokerIP1" => self.broker_ip1 = parse_num(key, v)?,
            "bindAddress" => self.bind_address = parse_num(key, v)?,
            "listenPort" => self.listen_port = non_zero_port(key, v)?,
            "namesrvAddr" => self.namesrv_addr = parse_namesrv_addr(key, v)?,
            "namesrvListenPort" => self.namesrv_listen_port = non_zero_port(key, v)?,
            "shards" => {
                let n: u16 = parse_num(key, v)?;
                if n == 0 || n > SHARDS_MAX {
                    return Err(invalid(key, v, format!("must be 1..={SHARDS_MAX}")));
                }
                self.shards = n;
            }
            "storePathRootDir" => {
                if v.is_empty() {
                    return Err(invalid(key, v, "must not be empty"));
                }
                self.store_path_root_dir = expand_home(v);
            }
            "flushDiskType" => {
                self.flush_disk_type = match v {
                    "SYNC_FLUSH" => FlushDiskType::SyncFlush,
                    "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
                    _ => return Err(invalid(key, v, "expected SYNC_FLUSH or ASYNC_FLUSH")),
                }
            }
            "syncFlushTimeout" => self.sync_flush_timeout_ms = positive(key, v)?,
            "flushIntervalCommitLog" => self.flush_interval_commit_log_ms = positive(key, v)?,
            "autoCreateTopicEnable" => self.auto_create_topic_enable = parse_bool(key, v)?,
            "enablePropertyFilter" => self.enable_property_filter = parse_bool(key, v)?,
            "defaultTopicQueueNums" => {
                let n: u32 = parse_num(key, v)?;
                if n == 0 || n > 1024 {
                    return Err(invalid(key, v, "must be 1..=1024"));
                }
                self.default_topic_queue_nums = n;
            }
            "maxMessageSize" => {
                let n: u32 = parse_num(key, v)?;
                if n == 0 || n > 1 << 30 {
                    return Err(invalid(key, v, "must be 1..=1073741824 bytes"));
                }
                self.max_message_size = n;
            }
            "fileReservedTime" => self.file_reserved_time_hours = parse_num(key, v)?,
            "deleteWhen" => {
                let first = v.split(';').next().unwrap_or_default().trim();
                let h: u8 = parse_num(key, first)?;
                if h > 23 {
                    return Err(invalid(key, v, "hour must be 00..23"));
                }
                self.delete_when_hour = h;
            }
            "diskMaxUsedSpaceRatio" => {
                let p: u32 = parse_num(key, v)?;
                if !(10..=95).contains(&p) {
                    return Err(invalid(key, v, "percent must be 10..=95"));
                }
                self.disk_max_used_space_ratio_percent = p;
            }
            "diskSpaceWarningLevelRatio" => {
                let r: f64 = parse_num(key, v)?;
                if !(r > 0.0 && r <= 1.0) {
                    return Err(invalid(key, v, "ratio must be in (0, 1]"));
                }
                self.disk_space_warning_level_ratio = r;
            }
            "mappedFileSizeCommitLog" => {
                let n: u64 = parse_num(key, v)?;
                if n == 0 || !n.is_multiple_of(engine::PAGE_SIZE_BYTES) {
                    return Err(invalid(key, v, "must be a positive multiple of 4096"));
                }
                self.mapped_file_size_commit_log = n;
            }
            "connectionInFlightMax" => {
                let n: usize = parse_num(key, v)?;
                if n == 0 || n > 1 << 20 {
                    return Err(invalid(key, v, "must be 1..=1048576"));
                }
                self.connection_in_flight_max = n;
            }
            "transactionTimeOut" | "transactionCheckInterval" => {
                let n = positive(key, v)?;
                if n > TRANSACTION_TIME_MS_MAX {
                    let reason = format!("must be 1..={TRANSACTION_TIME_MS_MAX} ms");
                    return Err(invalid(key, v, reason));
                }
                if key == "transactionTimeOut" {
                    self.transaction_timeout_ms = n;
                } else {
                    self.transaction_check_interval_ms = n;
                }
            }
            "transactionCheckMax" => {
                let n: u32 = parse_num(key, v)?;
                if n == 0 || n > 10_000 {
                    return Err(invalid(key, v, "must be 1..=10000"));
                }
                self.transaction_check_max = n;
            }
            "metricsPort" => self.metrics_port = parse_num(key, v)?,
            "startupTimeoutMs" => self.startup_timeout_ms = positive(key, v)?,
            "registerNameServerPeriod" => {
                let ms: u64 = parse_num(key, v)?;
                self.register_name_server_period_ms =
                    ms.clamp(REGISTER_PERIOD_MS_MIN, REGISTER_PERIOD_MS_MAX);
            }
            _ if IGNORED_KEYS.contains(&key) => return Ok(KeyOutcome::Ignored),
            _ => return Ok(KeyOutcome::Unknown),
        }
        Ok(KeyOutcome::Applied)
    }

    /// Apply a broker.conf text; returns the warnings (unknown and ignored keys).
    pub fn apply_properties(
        &mut self,
        path: &Path,
        text: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(split) = line.find(['=', ':']) else {
                return Err(ConfigError::Syntax {
                    path: path.to_owned(),
                    line: i + 1,
                    text: raw.to_owned(),
                });
            };
            let (key, value) = line.split_at(split);
            let key = key.trim();
            let value = value.get(1..).unwrap_or_default();
            match self.set(key, value)? {
                KeyOutcome::Applied => {}
                KeyOutcome::Ignored => warnings.push(format!(
                    "{}:{}: key {key} is a RocketMQ setting Petrel ignores",
                    path.display(),
                    i + 1
                )),
                KeyOutcome::Unknown => warnings.push(format!(
                    "{}:{}: unknown key {key} (ignored)",
                    path.display(),
                    i + 1
                )),
            }
        }
        Ok(warnings)
    }

    /// Read and apply a broker.conf file.
    pub fn apply_file(&mut self, path: &Path) -> Result<Vec<String>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.apply_properties(path, &text)
    }

    /// Checks the combination of values (ports fit, the store config is valid).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let last_port = u32::from(self.listen_port) + u32::from(self.shards) - 1;
        if last_port > u32::from(u16::MAX) {
            return Err(ConfigError::Inconsistent(format!(
                "listenPort {} + shards {} exceeds port 65535",
                self.listen_port, self.shards
            )));
        }
        if self.namesrv_addr.is_none() {
            let ns = self.namesrv_listen_port;
            if ns >= self.listen_port && u32::from(ns) <= last_port {
                return Err(ConfigError::Inconsistent(format!(
                    "namesrvListenPort {ns} collides with shard ports {}..={last_port}",
                    self.listen_port
                )));
            }
        }
        if self.metrics_port != 0 {
            let last_metrics = u32::from(self.metrics_port) + u32::from(self.shards) - 1;
            let overlaps_shards = u32::from(self.metrics_port) <= last_port
                && last_metrics >= u32::from(self.listen_port);
            let namesrv = u32::from(self.namesrv_listen_port);
            let overlaps_namesrv = self.namesrv_addr.is_none()
                && (u32::from(self.metrics_port)..=last_metrics).contains(&namesrv);
            if last_metrics > u32::from(u16::MAX) || overlaps_shards || overlaps_namesrv {
                return Err(ConfigError::Inconsistent(format!(
                    "metricsPort {}..={last_metrics} must fit below 65536 and not collide with \
                     the shard or nameserver ports",
                    self.metrics_port
                )));
            }
        }
        self.store_config(self.store_path_root_dir.join("shard-0"))
            .validate()
            .map_err(|e| ConfigError::Inconsistent(e.to_string()))
    }

    /// This shard's store configuration.
    pub fn store_config(&self, root_dir: PathBuf) -> StoreConfig {
        let clean = f64::from(self.disk_max_used_space_ratio_percent) / 100.0;
        StoreConfig {
            root_dir,
            segment_size_bytes: self.mapped_file_size_commit_log,
            flush_mode: match self.flush_disk_type {
                FlushDiskType::SyncFlush => FlushMode::Sync,
                FlushDiskType::AsyncFlush => FlushMode::Async,
            },
            flush_interval_ms: self.flush_interval_commit_log_ms,
            sync_flush_timeout_ms: self.sync_flush_timeout_ms,
            body_size_max: self.max_message_size,
            file_reserved_time_hours: self.file_reserved_time_hours,
            delete_when_hour: self.delete_when_hour,
            disk_clean_ratio: clean,
            disk_max_used_ratio: self.disk_space_warning_level_ratio.max(clean),
            ..StoreConfig::default()
        }
        .with_buffers_for_body(self.max_message_size)
    }

    /// Store directory of shard `i`.
    pub fn shard_store_dir(&self, shard_id: u16) -> PathBuf {
        self.store_path_root_dir.join(format!("shard-{shard_id}"))
    }

    /// Address clients use for shard `i`.
    pub fn advertised_addr(&self, shard_id: u16) -> SocketAddr {
        SocketAddr::new(self.broker_ip1, self.listen_port.saturating_add(shard_id))
    }

    /// Address shard `i` binds.
    pub fn bind_addr(&self, shard_id: u16) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.listen_port.saturating_add(shard_id))
    }

    /// Broker name of shard `i`.
    pub fn shard_broker_name(&self, shard_id: u16) -> String {
        format!("{}_{shard_id}", self.broker_name)
    }

    /// Where shards register: the configured nameservers, or the embedded one.
    pub fn registration_targets(&self) -> Vec<String> {
        match &self.namesrv_addr {
            Some(list) => list.clone(),
            None => {
                let ip = if self.bind_address.is_unspecified() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    self.bind_address
                };
                vec![SocketAddr::new(ip, self.namesrv_listen_port).to_string()]
            }
        }
    }
}

/// Keep the append buffer able to hold one maximal record (the engine validates this).
trait WithBuffers {
    fn with_buffers_for_body(self, body_size_max: u32) -> Self;
}

impl WithBuffers for StoreConfig {
    fn with_buffers_for_body(mut self, body_size_max: u32) -> Self {
        let need = (body_size_max as usize)
            .saturating_mul(2)
            .saturating_add(1 << 20);
        self.append_buffer_bytes_max = self.append_buffer_bytes_max.max(need);
        self
    }
}

fn non_empty_name(key: &str, v: &str) -> Result<String, ConfigError> {
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.%|".contains(c))
    {
        return Err(invalid(
            key,
            v,
            "must be non-empty, characters [a-zA-Z0-9_.%|-]",
        ));
    }
    Ok(v.to_owned())
}

fn non_zero_port(key: &str, v: &str) -> Result<u16, ConfigError> {
    let p: u16 = parse_num(key, v)?;
    if p == 0 {
        return Err(invalid(key, v, "port must be 1..=65535"));
    }
    Ok(p)
}

fn positive(key: &str, v: &str) -> Result<u64, ConfigError> {
    let n: u64 = parse_num(key, v)?;
    if n == 0 {
        return Err(invalid(key, v, "must be > 0"));
    }
    Ok(n)
}

fn expand_home(v: &str) -> PathBuf {
    match (v.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(v),
    }
}

/// The source address of the default route (no packet is sent: UDP connect only).
fn primary_ipv4() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_file_applies_known_keys_and_warns_on_unknown() {
        let mut c = BrokerConfig::default();
        let w = c
            .apply_properties(
                Path::new("b.conf"),
                "# comment\nbrokerName = b1\nlistenPort=20911\nflushDiskType=ASYNC_FLUSH\n\
                 namesrvAddr=127.0.0.1:9876;10.0.0.2:9876\nbrokerId=0\nfoo=bar\nshards: 3\n",
            )
            .expect("valid");
        assert_eq!(c.broker_name, "b1");
        assert_eq!(c.listen_port, 20911);
        assert_eq!(c.flush_disk_type, FlushDiskType::AsyncFlush);
        assert_eq!(c.shards, 3);
        assert_eq!(c.namesrv_addr.as_ref().map(Vec::len), Some(2));
        assert_eq!(w.len(), 2);
        assert!(w.iter().any(|m| m.contains("unknown key foo")));
        assert_eq!(c.shard_broker_name(2), "b1_2");
        assert_eq!(c.advertised_addr(2).port(), 20913);
    }

    #[test]
    fn invalid_values_are_errors() {
        let mut c = BrokerConfig::default();
        for (k, v) in [
            ("listenPort", "x"),
            ("listenPort", "0"),
            ("flushDiskType", "SOMETIMES"),
            ("autoCreateTopicEnable", "yes"),
            ("namesrvAddr", "localhost"),
            ("mappedFileSizeCommitLog", "1000"),
            ("shards", "0"),
            ("deleteWhen", "25"),
        ] {
            assert!(c.set(k, v).is_err(), "{k}={v}");
        }
        assert!(c.set("deleteWhen", "04;16").is_ok());
        assert_eq!(c.delete_when_hour, 4);
    }

    #[test]
    fn defaults_produce_a_valid_store_config() {
        let c = BrokerConfig::default();
        c.validate().expect("valid defaults");
        let s = c.store_config(PathBuf::from("/tmp/x/shard-0"));
        assert_eq!(s.flush_mode, FlushMode::Sync);
        assert!(s.disk_clean_ratio <= s.disk_max_used_ratio);
    }

    #[test]
    fn transaction_keys_apply_and_are_checked() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.transaction_timeout_ms, 6_000);
        assert_eq!(c.transaction_check_interval_ms, 30_000);
        assert_eq!(c.transaction_check_max, 15);
        c.set("transactionTimeOut", "500").expect("ok");
        c.set("transactionCheckInterval", "250").expect("ok");
        c.set("transactionCheckMax", "3").expect("ok");
        assert_eq!(c.transaction_timeout_ms, 500);
        assert_eq!(c.transaction_check_interval_ms, 250);
        assert_eq!(c.transaction_check_max, 3);
        for (k, v) in [
            ("transactionTimeOut", "0"),
            ("transactionCheckInterval", "x"),
            ("transactionCheckInterval", "86400001"),
            ("transactionCheckMax", "0"),
        ] {
            assert!(c.set(k, v).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn register_period_is_held_to_rocketmqs_bounds() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.register_name_server_period_ms, 30_000);
        for (v, held) in [("1000", 10_000), ("15000", 15_000), ("600000", 60_000)] {
            c.set("registerNameServerPeriod", v).expect("ok");
            assert_eq!(c.register_name_server_period_ms, held, "{v}");
        }
        assert!(c.set("registerNameServerPeriod", "soon").is_err());
    }

    #[test]
    fn port_overflow_is_inconsistent() {
        let mut c = BrokerConfig::default();
        c.set("listenPort", "65535").expect("ok");
        c.set("shards", "2").expect("ok");
        assert!(c.validate().is_err());
    }
}
