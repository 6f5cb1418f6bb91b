//! The nameserver (RocketMQ semantics, REMOTING.md §7.9): brokers register every 30 s and are
//! dropped after 120 s of silence or when the connection they registered on closes; clients
//! fetch routes by topic.
//!
//! It is a [`RequestHandler`] served by the same connection layer as the broker. Embedded, it
//! runs as tasks on shard 0's executor; `petrel namesrv` runs it alone on one executor. Its
//! state lives on that one core (no locks). Leases are judged by the [`clock::Clock`] it is
//! built with (the system clock unless a test injects another).

pub mod client;
pub mod clock;
pub mod processor;
pub mod route_table;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clock::{Clock, SystemClock};

use crate::remoting::connection::{
    accept_loop, ConnectionCtx, ConnectionLimits, ConnectionTracker, RequestHandler, StopSignal,
};
use crate::remoting::RemotingCommand;
use route_table::RouteTable;

/// How often silent brokers are looked for.
pub const EXPIRY_SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// The nameserver state plus its request handling.
pub struct Namesrv {
    table: RefCell<RouteTable>,
    clock: Rc<dyn Clock>,
}

impl Namesrv {
    /// A nameserver on the system clock.
    pub fn new() -> Rc<Self> {
        Self::with_clock(Rc::new(SystemClock))
    }

    /// A nameserver that reads the time from `clock` (registrations, heartbeats, expiry).
    pub fn with_clock(clock: Rc<dyn Clock>) -> Rc<Self> {
        Rc::new(Self {
            table: RefCell::new(RouteTable::new()),
            clock,
        })
    }

    /// The time on this nameserver's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Drop brokers silent past their timeout as of the clock's now; returns their addresses.
    pub fn expire(&self) -> Vec<String> {
        let gone = self.table.borrow_mut().expire(self.clock.now());
        for addr in &gone {
            log::warn!("nameserver: broker {addr} silent for too long, removed");
        }
        gone
    }

    /// Answer one request that came on connection `conn_id`, at the clock's now.
    pub fn process(&self, conn_id: u64, req: &RemotingCommand) -> RemotingCommand {
        processor::process(&mut self.table.borrow_mut(), conn_id, req, self.clock.now())
    }

    /// Read access for tests and metrics.
    pub fn with_table<R>(&self, f: impl FnOnce(&RouteTable) -> R) -> R {
        f(&self.table.borrow())
    }
}

impl RequestHandler for Namesrv {
    async fn handle(
        self: &Rc<Self>,
        conn: &Rc<ConnectionCtx>,
        req: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let resp = self.process(conn.id(), &req);
        if req.code == crate::remoting::RequestCode::REGISTER_BROKER
            && resp.code == crate::remoting::ResponseCode::SUCCESS
        {
            log::debug!(
                "nameserver: registered {} at {} from {}",
                req.ext("brokerName").unwrap_or_default(),
                req.ext("brokerAddr").unwrap_or_default(),
                conn.peer_addr()
            );
        }
        Some(resp)
    }

    fn connection_closed(&self, conn: &Rc<ConnectionCtx>) {
        let gone = self.table.borrow_mut().connection_closed(conn.id());
        for addr in gone {
            log::info!("nameserver: broker {addr} disconnected, removed");
        }
    }
}

/// Serve the nameserver on `listener` until `stop` (call inside a glommio executor).
pub async fn serve(
    listener: glommio::net::TcpListener,
    namesrv: Rc<Namesrv>,
    stop: Rc<StopSignal>,
) {
    let expiry = {
        let namesrv = namesrv.clone();
        let stop = stop.clone();
        glommio::spawn_local(async move {
            while !stop.is_stopped() {
                futures_lite::future::or(glommio::timer::sleep(EXPIRY_SCAN_INTERVAL), stop.wait())
                    .await;
                namesrv.expire();
            }
        })
    };
    let tracker = ConnectionTracker::new(u16::MAX);
    accept_loop(
        listener,
        namesrv,
        tracker.clone(),
        ConnectionLimits::default(),
        stop,
    )
    .await;
    tracker.close_all();
    expiry.await;
}

#[cfg(test)]
mod tests {
    use super::clock::ManualClock;
    use super::route_table::BROKER_EXPIRY_DEFAULT as LEASE;
    use super::*;
    use crate::remoting::{RequestCode, ResponseCode};

    /// The broker's own re-registration period (RocketMQ's default).
    const PERIOD: Duration = Duration::from_secs(30);
    const ADDR: &str = "10.0.0.7:10911";

    fn setup() -> (Rc<ManualClock>, Rc<Namesrv>) {
        let clock = Rc::new(ManualClock::new());
        let namesrv = Namesrv::with_clock(clock.clone());
        (clock, namesrv)
    }

    /// The REGISTER_BROKER a petrel shard sends (its heartbeat timeout included), with one
    /// topic.
    fn register(namesrv: &Namesrv) {
        let wrapper = br#"{"dataVersion":{"counter":1,"stateVersion":0,"timestamp":1},"topicConfigTable":{"LeaseTopic":{"perm":6,"readQueueNums":4,"topicName":"LeaseTopic","topicSysFlag":0,"writeQueueNums":4}}}"#;
        let req = crate::runtime::register_broker_request("LeaseCluster", "lease_0", ADDR, wrapper);
        let resp = namesrv.process(7, &req);
        assert_eq!(resp.code, ResponseCode::SUCCESS, "{:?}", resp.remark);
    }

    fn is_routed(namesrv: &Namesrv) -> bool {
        let req = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
            .with_ext("topic", "LeaseTopic");
        let code = namesrv.process(9, &req).code;
        assert!(
            code == ResponseCode::SUCCESS || code == ResponseCode::TOPIC_NOT_EXIST,
            "route answer {code}"
        );
        code == ResponseCode::SUCCESS
    }

    /// Moves the clock on by `by` one expiry scan interval at a time, scanning after each
    /// step as `serve` does; returns how far into `by` the broker was removed, if it was.
    fn run_scans(clock: &ManualClock, namesrv: &Namesrv, by: Duration) -> Option<Duration> {
        let mut ran = Duration::ZERO;
        while ran < by {
            let step = EXPIRY_SCAN_INTERVAL.min(by - ran);
            clock.advance(step);
            ran += step;
            if namesrv.expire().iter().any(|a| a == ADDR) {
                return Some(ran);
            }
        }
        None
    }

    #[test]
    fn broker_that_re_registers_every_period_outlives_many_leases() {
        let (clock, namesrv) = setup();
        let start = namesrv.now();
        register(&namesrv);
        for round in 0..20 {
            let removed = run_scans(&clock, &namesrv, PERIOD);
            assert_eq!(
                removed, None,
                "dropped in period {round} while re-registering"
            );
            register(&namesrv);
            assert!(is_routed(&namesrv));
        }
        assert!(namesrv.now() - start >= 5 * LEASE);
        assert_eq!(
            namesrv.with_table(|t| t.last_heard(ADDR)),
            Some(namesrv.now())
        );
    }

    #[test]
    fn broker_that_stops_registering_is_dropped_once_its_lease_runs_out() {
        let (clock, namesrv) = setup();
        register(&namesrv);
        // One refresh first: the lease runs from the last registration, not the first.
        assert_eq!(run_scans(&clock, &namesrv, PERIOD), None);
        register(&namesrv);
        let removed = run_scans(&clock, &namesrv, 2 * LEASE).expect("silent broker kept");
        assert!(
            removed > LEASE && removed <= LEASE + EXPIRY_SCAN_INTERVAL,
            "removed {removed:?} after its last registration (lease {LEASE:?})"
        );
        assert!(!is_routed(&namesrv));
        assert_eq!(namesrv.with_table(|t| t.last_heard(ADDR)), None);
        let info = namesrv.with_table(RouteTable::cluster_info_json);
        assert_eq!(
            std::str::from_utf8(&info).ok(),
            Some("{\"brokerAddrTable\":{},\"clusterAddrTable\":{}}")
        );
    }

    #[test]
    fn re_registration_after_expiry_brings_the_broker_back_with_a_fresh_lease() {
        let (clock, namesrv) = setup();
        register(&namesrv);
        assert!(run_scans(&clock, &namesrv, LEASE + EXPIRY_SCAN_INTERVAL).is_some());
        assert!(!is_routed(&namesrv));
        register(&namesrv);
        assert!(is_routed(&namesrv));
        // The new lease is a whole one, counted from the new registration.
        assert_eq!(run_scans(&clock, &namesrv, LEASE), None);
        assert!(is_routed(&namesrv));
        assert!(run_scans(&clock, &namesrv, EXPIRY_SCAN_INTERVAL).is_some());
        assert!(!is_routed(&namesrv));
    }
}
