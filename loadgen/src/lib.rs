//! `loadgen`: an open-loop latency benchmark for any RocketMQ-remoting broker (Petrel or
//! another), plus the physical floors the results are compared with.
//!
//! Why open loop: a closed-loop tool (each thread waits for its reply before it sends the
//! next request, as RocketMQ's own benchmark does) stops sending while the broker stalls, so
//! the stall shows up as one slow request instead of hundreds. Here every request has an
//! *intended* send time on a fixed-rate schedule, and its latency is measured from that
//! intended time to the response. The time the request really left (service time) and the
//! generator's own lag (actual minus intended) are reported beside it, so an overloaded
//! generator cannot pass unnoticed.
//!
//! The layout, in the order a run goes through it:
//! - [`schedule`]: intended send times and the sleep that waits for them.
//! - [`codec`]: the remoting codec (the broker crate's `RemotingCommand`), plus the request
//!   builders loadgen needs (send, batch send, pull, route, create topic).
//! - [`client`]: a blocking request/response connection for control calls and pulls.
//! - [`route`]: routes from the nameserver (GET_ROUTEINFO_BY_TOPIC), topic creation,
//!   and the list of (broker address, queue ids) targets sends go to.
//! - [`produce`]: the open-loop producer: a sender and a reader thread per connection.
//! - [`failure`]: how a failed request is charged (in the histogram, at the run's deadline).
//! - [`consume`]: long-polling PULL consumers for the end-to-end mode, and [`e2e`]: matching
//!   their receipts with the acknowledged sends (received == acknowledged).
//! - [`floor`]: 4 KiB O_DIRECT write + fdatasync latency, and the loopback TCP round trip;
//!   [`windows`]: the floors measured again between runs, and their spread.
//! - [`stats`]: latency recorders over a `histogram::Histogram` and their summaries.
//! - [`report`] and [`svg`]: JSON, markdown, and the percentile-distribution plot.
//! - [`suite`] and [`petrel`]: the embedded standard suite, which starts a `petrel` child.
//!
//! Every thread here is a plain std thread with a std `TcpStream` (TCP_NODELAY): the
//! generator must not share the runtime it measures.

pub mod client;
pub mod codec;
pub mod consume;
pub mod e2e;
pub mod failure;
pub mod floor;
pub mod idle;
pub mod petrel;
pub mod produce;
pub mod report;
pub mod route;
pub mod schedule;
pub mod stats;
pub mod suite;
pub mod svg;
pub mod sweep;
pub mod windows;
