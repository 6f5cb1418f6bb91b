//! The nameserver (RocketMQ semantics, REMOTING.md §7.9): brokers register every 30 s and are
//! dropped after 120 s of silence or when the connection they registered on closes; clients
//! fetch routes by topic.
//!
//! It is a [`RequestHandler`] served by the same connection layer as the broker. Embedded, it
//! runs as tasks on shard 0's executor; `petrel namesrv` runs it alone on one executor. Its
//! state lives on that one core (no locks).

pub mod client;
pub mod processor;
pub mod route_table;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::remoting::connection::{
    accept_loop, ConnectionCtx, ConnectionLimits, ConnectionTracker, RequestHandler, StopSignal,
};
use crate::remoting::RemotingCommand;
use route_table::RouteTable;

/// How often silent brokers are looked for.
pub const EXPIRY_SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// The nameserver state plus its request handling.
#[derive(Default)]
pub struct Namesrv {
    table: RefCell<RouteTable>,
}

impl Namesrv {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Drop brokers silent past their timeout.
    pub fn expire(&self, now: Instant) {
        let gone = self.table.borrow_mut().expire(now);
        for addr in gone {
            log::warn!("nameserver: broker {addr} silent for too long, removed");
        }
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
        let resp = processor::process(
            &mut self.table.borrow_mut(),
            conn.id(),
            &req,
            Instant::now(),
        );
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
                namesrv.expire(Instant::now());
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
