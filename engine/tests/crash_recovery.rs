//! Seeded crash-recovery harness over the simulated disk.
//!
//! Each seed runs rounds of: open (recover), check the invariants, run concurrent producers
//! (single puts and batches, SYNC_FLUSH), sometimes inject a failed fdatasync or write, then
//! crash at a random moment (every unsynced 4 KiB sector is kept, dropped or torn) or shut
//! down cleanly. Invariants checked after every recovery:
//! 1. every record acknowledged under SYNC_FLUSH reads back byte-identical, and its consume
//!    queue entry points at it;
//! 2. walking the commitlog from min to end finds only valid records, each at its own offset,
//!    separated only by end-of-segment blanks: nothing after the first invalid record is served;
//! 3. every consume-queue entry points at a valid record of that topic, queue and offset;
//! 4. recovering twice (crash right after recovery) gives the same state;
//! 5. offsets never go back: the end is past every acked record.
//!
//! Replay a failure with `PETREL_SEED=<seed> cargo test -p engine --test crash_recovery`.
//! CI runs the fixed seeds plus a few random ones (more with `--features sim`).
mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use engine::clock::ManualClock;
use engine::disk::sim::{SimDisk, SimRng};
use engine::record::{decode, MAGIC_BLANK};
use engine::{
    Background, CommitLogOffset, FlushMode, GetLimit, GetStatus, PutError, PutMessage, QueueId,
    QueueOffset, Store, StoreConfig,
};

const FIXED_SEEDS: &[u64] = &[1, 2, 3, 42, 1337, 0xDEAD_BEEF, 20261122];
const TOPICS: &[&str] = &["A", "Bee", "%RETRY%group"];
const QUEUES: u32 = 3;

#[derive(Clone, Debug)]
struct Acked {
    offset: u64,
    bytes: Vec<u8>,
    topic: &'static str,
    queue: u32,
    queue_offset: u64,
}

fn config() -> StoreConfig {
    StoreConfig {
        root_dir: PathBuf::from("/sim/store"),
        segment_size_bytes: 128 << 10,
        body_size_max: 4096,
        append_buffer_bytes_max: 256 << 10,
        tail_cache_bytes_max: 16 << 10,
        ..Default::default()
    }
}

fn random_seeds() -> Vec<u64> {
    let n = if cfg!(feature = "sim") { 20 } else { 3 };
    (0..n).map(|_| rand::random::<u64>()).collect()
}

#[test]
fn crash_recovery_fixed_and_random_seeds() {
    let seeds: Vec<u64> = match std::env::var("PETREL_SEED") {
        Ok(s) => vec![s.parse().expect("PETREL_SEED must be a u64")],
        Err(_) => FIXED_SEEDS.iter().copied().chain(random_seeds()).collect(),
    };
    for seed in seeds {
        println!("crash harness: PETREL_SEED={seed}");
        let stats = common::run(move || run_seed(seed));
        println!("  seed {seed}: {stats}");
    }
}

async fn producer(
    store: Rc<Store>,
    mut rng: SimRng,
    acked: Rc<RefCell<Vec<Acked>>>,
    stop: Rc<Cell<bool>>,
    puts: Rc<Cell<u64>>,
    alive: Rc<Cell<u32>>,
) {
    alive.set(alive.get() + 1);
    produce(store, &mut rng, acked, stop, puts).await;
    alive.set(alive.get() - 1);
}

async fn produce(
    store: Rc<Store>,
    rng: &mut SimRng,
    acked: Rc<RefCell<Vec<Acked>>>,
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
        let bodies: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let cap = if rng.below(10) == 0 { 4096 } else { 600 };
                let len = rng.below(cap) as usize;
                let fill = rng.next_u64() as u8;
                (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
            })
            .collect();
        let props: Vec<String> = (0..n)
            .map(|_| {
                format!(
                    "TAGS\u{1}t{}\u{2}KEYS\u{1}k{}\u{2}",
                    rng.below(3),
                    rng.next_u64()
                )
            })
            .collect();
        let msgs: Vec<PutMessage<'_>> = bodies
            .iter()
            .zip(&props)
            .map(|(b, p)| common::msg(topic, queue, b, p))
            .collect();
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
        for (i, off) in offsets.iter().enumerate() {
            let Ok(bytes) = store.read_message(*off).await else {
                return;
            };
            records.push(Acked {
                offset: off.0,
                bytes: bytes.to_vec(),
                topic,
                queue,
                queue_offset: first_qo.0 + i as u64,
            });
        }
        if ticket.await.is_ok() {
            acked.borrow_mut().extend(records);
        } else {
            return;
        }
    }
}

/// Everything a recovery decides, for comparing two recoveries.
#[derive(Debug, PartialEq, Eq)]
struct State {
    min: u64,
    end: u64,
    queues: BTreeMap<(String, u32), (u64, u64)>,
    records: Vec<(u64, u32)>,
}

async fn walk(store: &Store, disk: &SimDisk, cfg: &StoreConfig) -> Vec<(u64, u32)> {
    let seg = cfg.segment_size_bytes;
    let end = store.max_commit_log_offset().0;
    let mut o = store.min_commit_log_offset().0;
    let mut out = Vec::new();
    while o < end {
        match store.read_message(CommitLogOffset(o)).await {
            Ok(b) => {
                let v = decode(&b).expect("served record decodes");
                assert_eq!(v.commit_log_offset().0, o, "record at its own offset");
                out.push((o, crc32fast::hash(&b)));
                o += b.len() as u64;
            }
            Err(_) => {
                // Only an end-of-segment blank may stop a walk before the end.
                let base = o - o % seg;
                let path = cfg.root_dir.join("commitlog").join(format!("{base:020}"));
                let file = disk.read_whole(&path).expect("segment file exists");
                let at = (o - base) as usize;
                let magic = i32::from_be_bytes(file[at + 4..at + 8].try_into().expect("4 bytes"));
                let size = i32::from_be_bytes(file[at..at + 4].try_into().expect("4 bytes"));
                assert_eq!(
                    magic, MAGIC_BLANK,
                    "unreadable record at {o} is not a blank"
                );
                assert_eq!(
                    size as u64,
                    base + seg - o,
                    "blank covers the rest of the segment"
                );
                o = base + seg;
            }
        }
    }
    assert_eq!(o, end, "walk ends exactly at the end");
    out
}

async fn state(store: &Store, disk: &SimDisk, cfg: &StoreConfig) -> State {
    let mut queues = BTreeMap::new();
    for t in TOPICS {
        for q in 0..QUEUES {
            let id = QueueId(q);
            queues.insert(
                (t.to_string(), q),
                (store.min_offset(t, id).0, store.max_offset(t, id).0),
            );
        }
    }
    State {
        min: store.min_commit_log_offset().0,
        end: store.max_commit_log_offset().0,
        queues,
        records: walk(store, disk, cfg).await,
    }
}

async fn check_invariants(
    store: &Store,
    disk: &SimDisk,
    cfg: &StoreConfig,
    acked: &[Acked],
) -> State {
    let s = state(store, disk, cfg).await;
    let valid: std::collections::HashSet<u64> = s.records.iter().map(|r| r.0).collect();
    // 1 + 5: acked records intact, end past them.
    for a in acked {
        assert!(
            s.end >= a.offset + a.bytes.len() as u64,
            "offsets went back"
        );
        let b = store
            .read_message(CommitLogOffset(a.offset))
            .await
            .expect("acked record readable");
        assert_eq!(&b[..], &a.bytes[..], "acked record at {} changed", a.offset);
        let limit = GetLimit {
            count_max: 1,
            bytes_max: 1 << 20,
        };
        let g = store
            .get(
                a.topic,
                QueueId(a.queue),
                QueueOffset(a.queue_offset),
                limit,
                &|_| true,
            )
            .await
            .expect("get");
        assert_eq!(g.status, GetStatus::Found, "CQ entry of acked record {a:?}");
        assert_eq!(
            &g.messages[0][..],
            &a.bytes[..],
            "CQ entry points at the acked record"
        );
    }
    // 3: every CQ entry points at a valid record of its queue.
    for ((topic, q), (min, max)) in &s.queues {
        let mut o = *min;
        while o < *max {
            let limit = GetLimit {
                count_max: 32,
                bytes_max: 1 << 20,
            };
            let g = store
                .get(topic, QueueId(*q), QueueOffset(o), limit, &|_| true)
                .await
                .expect("get");
            assert_eq!(g.status, GetStatus::Found, "{topic}/{q}@{o}");
            for (i, m) in g.messages.iter().enumerate() {
                let v = decode(m).expect("CQ points at a valid record");
                assert_eq!(v.topic(), topic);
                assert_eq!(v.queue_id(), QueueId(*q));
                assert_eq!(v.queue_offset().0, o + i as u64);
                assert!(valid.contains(&v.commit_log_offset().0));
            }
            o = g.next_begin_offset.0;
        }
    }
    s
}

async fn run_seed(seed: u64) -> String {
    let mut rng = SimRng::new(seed);
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    let disk = SimDisk::new(1 << 40, clock.clone());
    let mut cfg = config();
    let acked: Rc<RefCell<Vec<Acked>>> = Rc::new(RefCell::new(Vec::new()));
    let (mut crashes, mut torn, mut dropped, mut truncations) = (0, 0, 0, 0);
    let rounds = 6;
    for round in 0..=rounds {
        // Half the rounds run ASYNC_FLUSH: many written-but-unsynced sectors at the crash.
        cfg.flush_mode = if rng.below(2) == 0 {
            FlushMode::Sync
        } else {
            FlushMode::Async
        };
        cfg.flush_interval_ms = 1 + rng.below(20);
        let open = || {
            Store::open_with(
                cfg.clone(),
                Rc::new(disk.clone()),
                clock.clone(),
                Background::Manual,
            )
        };
        let (mut store, report) = open().await.expect("open");
        if report.truncated_at.is_some() {
            truncations += 1;
        }
        let snapshot = acked.borrow().clone();
        let s1 = check_invariants(&store, &disk, &cfg, &snapshot).await;
        if round % 2 == 1 {
            // 4: recovering twice gives the same state.
            drop(store);
            disk.crash(&mut rng);
            let (again, _) = open().await.expect("reopen");
            let s2 = state(&again, &disk, &cfg).await;
            assert_eq!(
                s1, s2,
                "second recovery differs (seed {seed}, round {round})"
            );
            store = again;
        }
        if round == rounds {
            break;
        }
        let stop = Rc::new(Cell::new(false));
        let puts = Rc::new(Cell::new(0u64));
        let alive = Rc::new(Cell::new(0u32));
        for p in 0..4 {
            let r = SimRng::new(seed ^ (round as u64 * 1000 + p + 1).wrapping_mul(0x9E37_79B9));
            glommio::spawn_local(producer(
                store.clone(),
                r,
                acked.clone(),
                stop.clone(),
                puts.clone(),
                alive.clone(),
            ))
            .detach();
        }
        let target = 20 + rng.below(400);
        let fail_at = (rng.below(4) == 0).then(|| rng.below(target));
        let started = std::time::Instant::now();
        let mut turns = 0u64;
        while puts.get() < target && !store.is_poisoned() {
            futures_lite::future::yield_now().await;
            turns += 1;
            if turns > 1000 && alive.get() == 0 {
                break; // every producer stopped (e.g. a ticket failed): crash now
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "seed {seed} round {round}: workload stalled ({} puts of {target})",
                puts.get()
            );
            clock.advance_ms(1);
            if fail_at == Some(puts.get()) {
                if rng.below(2) == 0 {
                    disk.fail_next_syncs(1);
                } else {
                    disk.fail_next_writes(1);
                }
            }
            if rng.below(100) == 0 {
                let _ = store.checkpoint_now().await;
            }
        }
        if rng.below(4) == 0 && !store.is_poisoned() {
            stop.set(true);
            for _ in 0..50 {
                futures_lite::future::yield_now().await;
            }
            store.shutdown().await.expect("clean shutdown");
        } else {
            // Crash at a random moment: often between a write and its fdatasync.
            for _ in 0..rng.below(12) {
                futures_lite::future::yield_now().await;
            }
            let c = disk.crash(&mut rng);
            torn += c.sectors_torn;
            dropped += c.sectors_dropped;
            crashes += 1;
            stop.set(true);
        }
        disk.fail_next_syncs(0);
        disk.fail_next_writes(0);
        drop(store);
        for _ in 0..50 {
            futures_lite::future::yield_now().await;
        }
    }
    format!(
        "{} acked, {crashes} crashes, {torn} torn / {dropped} dropped sectors, \
         {truncations} truncating recoveries",
        acked.borrow().len()
    )
}
