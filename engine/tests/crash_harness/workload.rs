//! The harness's producers: every put's bytes are kept (`Written`, by unique key) before the
//! put is tried, and the records of a put whose ticket came back Ok are kept as `Acked`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use engine::disk::sim::SimRng;
use engine::{PutError, PutMessage, Store};

pub const TOPICS: &[&str] = &["A", "Bee", "%RETRY%group"];
pub const QUEUES: u32 = 3;
pub const TAGS: &[&str] = &["t0", "t1", "TagWithALongerName"];

/// One message as it was handed to `put` (acknowledged or not).
#[derive(Debug)]
pub struct Written {
    pub topic: &'static str,
    pub queue: u32,
    pub body: Vec<u8>,
    pub properties: String,
    pub tag: &'static str,
    pub flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
}

impl Written {
    /// The message to put.
    pub fn msg(&self) -> PutMessage<'_> {
        let mut m = crate::common::msg(self.topic, self.queue, &self.body, &self.properties);
        m.flag = self.flag;
        m.born_timestamp_ms = self.born_timestamp_ms;
        m.born_host = self.born_host;
        m.reconsume_times = self.reconsume_times;
        m
    }
}

/// A record whose put was acknowledged (its ticket came back Ok under SYNC or ASYNC flush).
#[derive(Clone, Debug)]
pub struct Acked {
    pub offset: u64,
    pub key: String,
    pub bytes: Vec<u8>,
    pub queue_offset: u64,
}

/// Everything the producers of one seed wrote and had acknowledged.
#[derive(Default)]
pub struct Ledger {
    /// Every message ever handed to `put`, by its unique key (`KEYS` property).
    pub written: RefCell<HashMap<String, Rc<Written>>>,
    pub acked: RefCell<Vec<Acked>>,
    next_key: Cell<u64>,
}

/// The `KEYS` property of a record's properties string.
pub fn key_of(properties: &str) -> Option<&str> {
    properties
        .split('\u{2}')
        .find_map(|kv| kv.strip_prefix("KEYS\u{1}"))
}

impl Ledger {
    fn new_message(&self, rng: &mut SimRng, topic: &'static str, queue: u32) -> Rc<Written> {
        let n = self.next_key.get();
        self.next_key.set(n + 1);
        let cap = if rng.below(10) == 0 { 4096 } else { 600 };
        let len = rng.below(cap) as usize;
        let fill = rng.next_u64() as u8;
        let tag = TAGS[rng.below(TAGS.len() as u64) as usize];
        let key = format!("k{n}-{}", rng.below(1 << 20));
        let extra: String = (0..rng.below(40))
            .map(|i| char::from(b'a' + ((fill as u64 + i) % 26) as u8))
            .collect();
        let w = Rc::new(Written {
            topic,
            queue,
            body: (0..len).map(|i| fill.wrapping_add(i as u8)).collect(),
            properties: format!("TAGS\u{1}{tag}\u{2}KEYS\u{1}{key}\u{2}EXTRA\u{1}{extra}\u{2}"),
            tag,
            flag: rng.below(1 << 16) as i32,
            born_timestamp_ms: 1_600_000_000_000 + rng.below(1 << 30) as i64,
            born_host: SocketAddr::from((
                [10, 0, 0, rng.below(250) as u8 + 1],
                (1024 + n % 60_000) as u16,
            )),
            reconsume_times: rng.below(17) as i32,
        });
        self.written.borrow_mut().insert(key, w.clone());
        w
    }
}

/// Puts single messages and batches until `stop`, counting puts handed to the store.
pub async fn producer(
    store: Rc<Store>,
    mut rng: SimRng,
    ledger: Rc<Ledger>,
    stop: Rc<Cell<bool>>,
    puts: Rc<Cell<u64>>,
    alive: Rc<Cell<u32>>,
) {
    alive.set(alive.get() + 1);
    produce(store, &mut rng, &ledger, stop, puts).await;
    alive.set(alive.get() - 1);
}

async fn produce(
    store: Rc<Store>,
    rng: &mut SimRng,
    ledger: &Ledger,
    stop: Rc<Cell<bool>>,
    puts: Rc<Cell<u64>>,
) {
    while !stop.get() {
        let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
        let queue = rng.below(u64::from(QUEUES)) as u32;
        let n = if rng.below(8) == 0 {
            1 + rng.below(4) as usize
        } else {
            1
        };
        let written: Vec<Rc<Written>> = (0..n)
            .map(|_| ledger.new_message(rng, topic, queue))
            .collect();
        let msgs: Vec<PutMessage<'_>> = written.iter().map(|w| w.msg()).collect();
        let put = if n == 1 {
            store
                .put(&msgs[0])
                .map(|r| (vec![r.commit_log_offset], r.queue_offset, r.ticket))
        } else {
            store
                .put_batch(&msgs)
                .map(|r| (r.commit_log_offsets, r.first_queue_offset, r.ticket))
        };
        let (offsets, first_qo, ticket) = match put {
            Ok(x) => x,
            Err(PutError::BufferFull) => {
                futures_lite::future::yield_now().await;
                continue;
            }
            Err(_) => return,
        };
        puts.set(puts.get() + n as u64);
        let mut records = Vec::new();
        for (i, (off, w)) in offsets.iter().zip(&written).enumerate() {
            let Ok(bytes) = store.read_message(*off).await else {
                return;
            };
            let key = key_of(&w.properties).unwrap_or_default().to_string();
            records.push(Acked {
                offset: off.0,
                key,
                bytes: bytes.to_vec(),
                queue_offset: first_qo.0 + i as u64,
            });
        }
        if ticket.await.is_ok() {
            ledger.acked.borrow_mut().extend(records);
        } else {
            return;
        }
    }
}
