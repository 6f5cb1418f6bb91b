//! End-to-end consumers: one thread and one connection per (broker, queue), each a
//! long-polling PULL loop (REMOTING.md §2.3, §7.1) that starts at the queue's max offset
//! taken before the producers start. Every loadgen message carries its intended send time
//! (see `codec::body`), so end-to-end latency is measured from the intended send instant to
//! the instant its pull response is read — the same clock and origin as the producer's.
//! The consumers only collect receipts (intended instant, receipt instant) of this run's
//! messages; [`crate::e2e`] matches them with the acknowledged sends and judges the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::client::Client;
use crate::codec::{self, body, response_code};
use crate::route::{self, Target, CONTROL_TIMEOUT};
use crate::schedule;

/// How long the broker may hold a pull with nothing new (bounds the time to stop).
const SUSPEND_TIMEOUT_MS: u64 = 2000;
/// Messages per pull (Java's push default).
const PULL_BATCH_MAX: u32 = 32;
/// Back-off after a pull error.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

#[derive(Clone, Debug)]
pub struct ConsumeConfig {
    pub topic: String,
    pub consumer_group: String,
    pub run_id: u64,
}

/// One message of this run as received: (intended send ns, receipt ns), both since
/// [`schedule::epoch`].
pub type Receipt = (u64, u64);

/// What the consumers saw, before it is judged against the acknowledged sends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Receipts {
    pub queues: usize,
    /// Every message of this run received (warm-up included, duplicates included).
    #[serde(skip)]
    pub receipts: Vec<Receipt>,
    /// Pull responses other than SUCCESS / PULL_NOT_FOUND / PULL_RETRY_IMMEDIATELY, and
    /// CONNECTION_ERROR for a pull that failed (that consumer then stops).
    pub pull_errors: BTreeMap<String, u64>,
}

pub struct Consumers {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    handles: Vec<JoinHandle<ConsumerOut>>,
}

struct ConsumerOut {
    receipts: Vec<Receipt>,
    pull_errors: BTreeMap<String, u64>,
}

/// Connects a consumer to every queue of `targets`, positions it at the queue's current
/// max offset, and starts pulling. Returns once every consumer is positioned.
pub fn start(targets: &[Target], cfg: &ConsumeConfig) -> Result<Consumers> {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let client_id = format!("127.0.0.1@loadgen-{}", std::process::id());
    for target in targets {
        for &queue_id in &target.queue_ids {
            let mut client = Client::connect(target.addr, CONTROL_TIMEOUT)?;
            // Registers the group and its subscription; brokers that auto-create groups on
            // pull do not need it, so its answer is not checked.
            let _ = client.call(
                codec::heartbeat_request(&client_id, &cfg.consumer_group, &cfg.topic),
                CONTROL_TIMEOUT,
            );
            let offset =
                route::max_offset(&mut client, &cfg.topic, queue_id).with_context(|| {
                    format!("position consumer on {} queue {queue_id}", target.addr)
                })?;
            let pull = PullLoop {
                client,
                cfg: cfg.clone(),
                queue_id,
                offset,
                stop: Arc::clone(&stop),
                received: Arc::clone(&received),
            };
            handles.push(
                std::thread::Builder::new()
                    .name("loadgen-consumer".into())
                    .spawn(move || pull.run())
                    .context("spawn consumer")?,
            );
        }
    }
    Ok(Consumers {
        stop,
        received,
        handles,
    })
}

impl Consumers {
    /// Loadgen messages of this run received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `expected` messages arrived or `deadline` passed.
    pub fn wait_until(&self, expected: u64, deadline: Instant) {
        while self.received() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops every consumer (each returns within one suspend timeout) and merges receipts.
    pub fn stop(self) -> Receipts {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Receipts {
            queues: self.handles.len(),
            ..Receipts::default()
        };
        for h in self.handles {
            match h.join() {
                Ok(c) => {
                    out.receipts.extend(c.receipts);
                    for (k, v) in c.pull_errors {
                        *out.pull_errors.entry(k).or_insert(0) += v;
                    }
                }
                Err(_) => *out.pull_errors.entry("PANICKED".into()).or_insert(0) += 1,
            }
        }
        out
    }
}

struct PullLoop {
    client: Client,
    cfg: ConsumeConfig,
    queue_id: u32,
    offset: u64,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
}

impl PullLoop {
    fn run(mut self) -> ConsumerOut {
        let mut out = ConsumerOut {
            receipts: Vec::new(),
            pull_errors: BTreeMap::new(),
        };
        let sub_version = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        let call_timeout = Duration::from_millis(SUSPEND_TIMEOUT_MS) + CONTROL_TIMEOUT;
        while !self.stop.load(Ordering::Relaxed) {
            let request = codec::pull_request(
                &self.cfg.consumer_group,
                &self.cfg.topic,
                self.queue_id,
                self.offset,
                PULL_BATCH_MAX,
                SUSPEND_TIMEOUT_MS,
                sub_version,
            );
            let response = match self.client.call(request, call_timeout) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("pull failed: {e:#}");
                    *out.pull_errors
                        .entry("CONNECTION_ERROR".into())
                        .or_insert(0) += 1;
                    break;
                }
            };
            let now_ns = schedule::epoch_ns(Instant::now());
            let next = response
                .ext("nextBeginOffset")
                .and_then(|s| s.parse::<u64>().ok());
            match response.code {
                response_code::SUCCESS => {
                    let mut n = 0;
                    for b in codec::stored_record_bodies(&response.body) {
                        let Some((run, ns)) = body::decode(b) else {
                            continue;
                        };
                        if run != self.cfg.run_id {
                            continue;
                        }
                        n += 1;
                        out.receipts.push((ns, now_ns));
                    }
                    self.received.fetch_add(n, Ordering::Relaxed);
                }
                response_code::PULL_NOT_FOUND | response_code::PULL_RETRY_IMMEDIATELY => {}
                other => {
                    *out.pull_errors
                        .entry(codec::response_code_name(other))
                        .or_insert(0) += 1;
                    if other != response_code::PULL_OFFSET_MOVED {
                        std::thread::sleep(ERROR_BACKOFF);
                    }
                }
            }
            if let Some(next) = next {
                self.offset = next;
            }
        }
        out
    }
}
