//! The nameserver lease with a real `petrel` broker: the broker registers again every
//! `registerNameServerPeriod` on its own, each registration renews its lease, a broker that
//! goes silent is dropped by the nameserver's expiry scan once its lease (120 s) has run out,
//! and its next registration brings it back.
//!
//! The nameserver is the crate's own (`namesrv::serve`, real TCP) run on an executor thread of
//! this test with a `ManualClock`, so minutes of lease pass in fake time while the broker's
//! period (10 s, the least RocketMQ allows) runs in real time. The test thread drives that
//! clock and reads the route table through a command channel; clients read routes over TCP.

mod common;

use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::namesrv::clock::{Clock, ManualClock};
use broker::namesrv::route_table::BROKER_EXPIRY_DEFAULT as LEASE;
use broker::namesrv::{self, Namesrv};
use broker::remoting::connection::StopSignal;
use common::*;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// The broker's period in these tests: RocketMQ's lower bound.
const PERIOD: Duration = Duration::from_secs(10);
const PERIOD_CONF: &str = "registerNameServerPeriod=10000";
/// Fake time added before each awaited registration: less than a lease, so a broker that
/// registers once per step keeps its lease, and one that does not is dropped within two.
const STEP: Duration = Duration::from_secs(100);
/// Bound on waiting for a registration in real time: the period plus generous slack (a
/// broker left on the 30 s default would miss it).
const REGISTRATION_WAIT: Duration = Duration::from_secs(25);
/// A topic every petrel broker registers.
const TOPIC: &str = "TBW102";

enum Command {
    /// Move the clock on; answers the fake time since the start.
    Advance(Duration, mpsc::Sender<Duration>),
    /// When the broker at this address was last heard from, in fake time since the start.
    LastHeard(String, mpsc::Sender<Option<Duration>>),
}

/// A nameserver on a `ManualClock`, served on its own executor thread.
struct LeaseNamesrv {
    port: u16,
    commands: Option<mpsc::Sender<Command>>,
    handle: Option<ExecutorJoinHandle<()>>,
}

impl LeaseNamesrv {
    fn start() -> Result<LeaseNamesrv> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind nameserver")?;
        let port = listener.local_addr()?.port();
        let (commands, rx) = mpsc::channel::<Command>();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name("lease-namesrv")
            .io_memory(1 << 20)
            .spawn(move || async move {
                let clock = Rc::new(ManualClock::new());
                let start = clock.now();
                let namesrv = Namesrv::with_clock(clock.clone());
                let stop = Rc::new(StopSignal::default());
                let served = glommio::spawn_local(namesrv::serve(
                    broker::listener::into_glommio(listener),
                    namesrv.clone(),
                    stop.clone(),
                ));
                loop {
                    match rx.try_recv() {
                        Ok(Command::Advance(by, reply)) => {
                            clock.advance(by);
                            let _ = reply.send(clock.now() - start);
                        }
                        Ok(Command::LastHeard(addr, reply)) => {
                            let heard = namesrv.with_table(|t| t.last_heard(&addr));
                            let _ = reply.send(heard.map(|at| at - start));
                        }
                        Err(mpsc::TryRecvError::Empty) => {
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
                stop.stop();
                served.await;
            })
            .map_err(|e| anyhow::anyhow!("spawn the nameserver executor: {e}"))?;
        Ok(LeaseNamesrv {
            port,
            commands: Some(commands),
            handle: Some(handle),
        })
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn ask<T>(&self, command: impl FnOnce(mpsc::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .as_ref()
            .context("nameserver stopped")?
            .send(command(tx))
            .ok()
            .context("nameserver thread gone")?;
        rx.recv_timeout(Duration::from_secs(10))
            .context("nameserver thread did not answer")
    }

    /// Moves the fake clock on by `by`; returns the fake time now.
    fn advance(&self, by: Duration) -> Result<Duration> {
        self.ask(|tx| Command::Advance(by, tx))
    }

    fn last_heard(&self, broker_addr: &str) -> Result<Option<Duration>> {
        self.ask(|tx| Command::LastHeard(broker_addr.to_string(), tx))
    }

    /// Waits (real time, up to `bound`) for a registration of `broker_addr` at fake time
    /// `since` or later; returns when it was seen.
    fn wait_heard_since(
        &self,
        broker_addr: &str,
        since: Duration,
        bound: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + bound;
        loop {
            if self.last_heard(broker_addr)?.is_some_and(|at| at >= since) {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("{broker_addr}'s lease not renewed (no registration at fake {since:?} or later) within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LeaseNamesrv {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// SIGSTOP on a process this test started; SIGCONT when dropped.
struct Paused(u32);

impl Paused {
    fn new(pid: u32) -> Result<Paused> {
        signal(pid, "-STOP")?;
        Ok(Paused(pid))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

/// Waits (real time, up to `bound`) until a client asking the nameserver for `TOPIC` sees
/// `broker_name` listed (`listed`) or not.
fn wait_routed(ns: &LeaseNamesrv, broker_name: &str, listed: bool, bound: Duration) -> Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        let names = route_broker_names(ns.addr(), TOPIC)?;
        if names.iter().any(|n| n == broker_name) == listed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("route of {TOPIC} still {names:?} after {bound:?} (want {broker_name} listed: {listed})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A broker registers again each period without being asked, each registration renews its
/// lease (it outlives two leases of fake time), and the nameserver's own expiry scan, on the
/// injected clock, drops it once it falls silent (SIGSTOP) for a lease; after SIGCONT its next
/// periodic registration brings it back.
#[test]
fn broker_re_registers_each_period_and_keeps_its_lease_until_it_falls_silent() -> Result<()> {
    let ns = LeaseNamesrv::start()?;
    let ns_conf = format!("namesrvAddr=127.0.0.1:{}", ns.port);
    let broker = Broker::start_with(&[&ns_conf, PERIOD_CONF])?;
    let mut last_seen = Instant::now();
    let broker_addr = broker.addr().to_string();
    let broker_name = "test-broker_0";
    assert!(ns.last_heard(&broker_addr)?.is_some(), "not registered");
    wait_routed(&ns, broker_name, true, Duration::from_secs(5))?;

    let mut fake_now = Duration::ZERO;
    for round in 1..=3 {
        fake_now = ns.advance(STEP)?;
        let seen = ns
            .wait_heard_since(&broker_addr, fake_now, REGISTRATION_WAIT)
            .with_context(|| format!("round {round}"))?;
        let interval = seen - last_seen;
        last_seen = seen;
        // Not sooner than the period (less a margin for noticing): it is the timer, not
        // something else, that registers.
        assert!(
            interval >= PERIOD - Duration::from_secs(3),
            "round {round}: registered again after only {interval:?}"
        );
        wait_routed(&ns, broker_name, true, Duration::from_secs(5))?;
    }
    assert!(fake_now > 2 * LEASE, "only {fake_now:?} of fake time");

    // Silent: no more registrations, the connection stays open.
    let paused = Paused::new(broker.pid().context("broker pid")?)?;
    let heard = ns.last_heard(&broker_addr)?.context("registered")?;
    let now = ns.advance(Duration::ZERO)?;
    ns.advance((heard + LEASE + Duration::from_secs(1)).saturating_sub(now))?;
    // The nameserver's scan (every 5 s of real time) finds the lease run out.
    wait_routed(&ns, broker_name, false, Duration::from_secs(15))?;
    assert_eq!(ns.last_heard(&broker_addr)?, None);

    // Awake again: its next periodic registration puts it back.
    let back_since = ns.advance(Duration::ZERO)?;
    drop(paused);
    ns.wait_heard_since(&broker_addr, back_since, REGISTRATION_WAIT)
        .context("no registration after SIGCONT")?;
    wait_routed(&ns, broker_name, true, Duration::from_secs(5))?;
    Ok(())
}
