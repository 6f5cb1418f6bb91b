//! `petrel`: the broker (one shard per core, embedded nameserver by default) and
//! `petrel namesrv`: a standalone nameserver.
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 2 invalid configuration or arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use broker::config::{BrokerConfig, KeyOutcome};
use broker::runtime;
use clap::{Parser, Subcommand};

/// Petrel: a RocketMQ-compatible broker, one shard per core.
///
/// Without a subcommand, runs the broker. Settings come from built-in defaults, the
/// NAMESRV_ADDR environment variable, the broker.conf file (-c), then these flags.
#[derive(Parser, Debug)]
#[command(name = "petrel", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// RocketMQ broker.conf (key=value).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Nameserver address(es), `host:port;host:port` (namesrvAddr). Unset: embedded.
    #[arg(short = 'n', long = "namesrv-addr", value_name = "ADDRS")]
    namesrv_addr: Option<String>,
    /// listenPort: shard i listens on listenPort + i.
    #[arg(long, value_name = "PORT")]
    listen_port: Option<String>,
    /// Number of shards (default: allowed CPUs).
    #[arg(long, value_name = "N")]
    shards: Option<String>,
    /// storePathRootDir: shard i stores under <dir>/shard-<i>.
    #[arg(long = "store-dir", value_name = "DIR")]
    store_dir: Option<String>,
    /// brokerIP1: the address advertised to clients.
    #[arg(long = "broker-ip1", value_name = "IP")]
    broker_ip1: Option<String>,
    /// bindAddress: the address listeners bind.
    #[arg(long = "bind-address", value_name = "IP")]
    bind_address: Option<String>,
    /// brokerName: shard i registers as <brokerName>_<i>.
    #[arg(long = "broker-name", value_name = "NAME")]
    broker_name: Option<String>,
    /// brokerClusterName.
    #[arg(long = "cluster-name", value_name = "NAME")]
    cluster_name: Option<String>,
    /// namesrvListenPort of the embedded nameserver.
    #[arg(long = "namesrv-listen-port", value_name = "PORT")]
    namesrv_listen_port: Option<String>,
    /// flushDiskType: SYNC_FLUSH or ASYNC_FLUSH.
    #[arg(long = "flush-disk-type", value_name = "TYPE")]
    flush_disk_type: Option<String>,
    /// Any broker.conf key, e.g. `-o maxMessageSize=1048576` (repeatable).
    #[arg(short = 'o', long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a standalone nameserver.
    Namesrv {
        /// Port to listen on.
        #[arg(long, default_value_t = 9876)]
        port: u16,
        /// Address to bind.
        #[arg(long = "bind-address", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind_address: IpAddr,
    },
    /// Administer a cluster through its nameserver (a small mqadmin).
    Admin(broker::admin_cli::AdminArgs),
}

/// Invalid configuration: exit code 2.
#[derive(Debug)]
struct ConfigInvalid(String);

impl std::fmt::Display for ConfigInvalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigInvalid {}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => {}
        Err(e) if e.downcast_ref::<ConfigInvalid>().is_some() => {
            eprintln!("petrel: {e:#}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("petrel: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Namesrv { port, bind_address }) => {
            let addr = SocketAddr::new(*bind_address, *port);
            return runtime::run_namesrv(addr).context("nameserver");
        }
        Some(Command::Admin(args)) => {
            let out = broker::admin_cli::run(args).context("admin")?;
            print!("{out}");
            return Ok(());
        }
        None => {}
    }
    let config = load_config(&cli).map_err(|e| anyhow::Error::new(ConfigInvalid(e)))?;
    let namesrv = match &config.namesrv_addr {
        Some(list) => format!("nameserver(s) {}", list.join(";")),
        None => format!("embedded nameserver on port {}", config.namesrv_listen_port),
    };
    log::info!(
        "petrel {}: {} shard(s), cluster {}, ports {}..{}, {namesrv}, store {}, {:?}",
        env!("CARGO_PKG_VERSION"),
        config.shards,
        config.broker_cluster_name,
        config.listen_port,
        u32::from(config.listen_port) + u32::from(config.shards) - 1,
        config.store_path_root_dir.display(),
        config.flush_disk_type,
    );
    runtime::run_broker(config).context("broker")
}

/// Defaults, then NAMESRV_ADDR, then the file, then flags. Errors are user-facing text.
fn load_config(cli: &Cli) -> Result<BrokerConfig, String> {
    let mut config = BrokerConfig::machine_defaults();
    if let Ok(env) = std::env::var("NAMESRV_ADDR") {
        if !env.trim().is_empty() {
            config
                .set("namesrvAddr", &env)
                .map_err(|e| format!("NAMESRV_ADDR: {e}"))?;
        }
    }
    if let Some(path) = &cli.config {
        let warnings = config
            .apply_file(path)
            .map_err(|e| runtime::error_chain(&e))?;
        for w in warnings {
            log::warn!("{w}");
        }
    }
    let flags: [(&str, &Option<String>); 10] = [
        ("namesrvAddr", &cli.namesrv_addr),
        ("listenPort", &cli.listen_port),
        ("shards", &cli.shards),
        ("storePathRootDir", &cli.store_dir),
        ("brokerIP1", &cli.broker_ip1),
        ("bindAddress", &cli.bind_address),
        ("brokerName", &cli.broker_name),
        ("brokerClusterName", &cli.cluster_name),
        ("namesrvListenPort", &cli.namesrv_listen_port),
        ("flushDiskType", &cli.flush_disk_type),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            config.set(key, v).map_err(|e| e.to_string())?;
        }
    }
    for kv in &cli.set {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("--set {kv:?}: expected KEY=VALUE"));
        };
        match config.set(k.trim(), v).map_err(|e| e.to_string())? {
            KeyOutcome::Applied => {}
            KeyOutcome::Ignored => {
                log::warn!("--set: key {k} is a RocketMQ setting Petrel ignores")
            }
            KeyOutcome::Unknown => log::warn!("--set: unknown key {k} (ignored)"),
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
