//! Property test: random sequences of put, batch put, get, segment roll (big records),
//! clean restart and crash-with-everything-synced, against a simple model (a Vec of bodies per
//! queue). Invariants: every get returns exactly the model's bodies from the requested offset;
//! min/max offsets match; nothing is lost or reordered across restarts.
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use common::seeds::SeedLog;
use engine::clock::ManualClock;
use engine::disk::sim::{SimDisk, SimRng};
use engine::{Background, GetLimit, GetStatus, QueueId, QueueOffset, Store, StoreConfig};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};

#[derive(Clone, Debug)]
enum Op {
    Put { queue: u8, len: u16 },
    Batch { queue: u8, count: u8, len: u16 },
    Roll { queue: u8 },
    Get { queue: u8, offset: u8, count: u8 },
    Restart,
    CrashSynced,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u16..600).prop_map(|(queue, len)| Op::Put { queue, len }),
        2 => (0u8..3, 1u8..6, 0u16..300).prop_map(|(queue, count, len)| Op::Batch { queue, count, len }),
        1 => (0u8..3).prop_map(|queue| Op::Roll { queue }),
        4 => (0u8..3, 0u8..40, 1u8..10).prop_map(|(queue, offset, count)| Op::Get { queue, offset, count }),
        1 => Just(Op::Restart),
        1 => Just(Op::CrashSynced),
    ]
}

fn config() -> StoreConfig {
    StoreConfig {
        root_dir: PathBuf::from("/sim/model"),
        segment_size_bytes: 96 << 10,
        body_size_max: 16 << 10,
        append_buffer_bytes_max: 256 << 10,
        tail_cache_bytes_max: 8 << 10,
        ..Default::default()
    }
}

fn body(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (n * 31 + i) as u8).collect()
}

async fn run_ops(ops: Vec<Op>) {
    let clock = Rc::new(ManualClock::new(1_000_000));
    let disk = SimDisk::new(1 << 40, clock.clone());
    let open = || {
        Store::open_with(
            config(),
            Rc::new(disk.clone()),
            clock.clone(),
            Background::Manual,
        )
    };
    let (mut store, _) = open().await.expect("open");
    let mut model: BTreeMap<u8, Vec<Vec<u8>>> = BTreeMap::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Put { queue, .. } | Op::Roll { queue } => {
                let len = if let Op::Put { len, .. } = op {
                    usize::from(len)
                } else {
                    15_000
                };
                n += 1;
                let b = body(n, len);
                let r = store
                    .put(&common::msg("M", u32::from(queue), &b, ""))
                    .expect("put");
                let q = model.entry(queue).or_default();
                assert_eq!(r.queue_offset.0, q.len() as u64);
                q.push(b);
                r.ticket.await.expect("durable");
            }
            Op::Batch { queue, count, len } => {
                let bodies: Vec<Vec<u8>> = (0..count)
                    .map(|i| body(n + usize::from(i) + 1, usize::from(len)))
                    .collect();
                n += usize::from(count);
                let msgs: Vec<_> = bodies
                    .iter()
                    .map(|b| common::msg("M", u32::from(queue), b, ""))
                    .collect();
                let r = store.put_batch(&msgs).expect("batch");
                let q = model.entry(queue).or_default();
                assert_eq!(r.first_queue_offset.0, q.len() as u64);
                q.extend(bodies);
                r.ticket.await.expect("durable");
            }
            Op::Get {
                queue,
                offset,
                count,
            } => {
                let q = model.get(&queue).cloned().unwrap_or_default();
                let limit = GetLimit {
                    count_max: u32::from(count),
                    bytes_max: 1 << 20,
                };
                let g = store
                    .get(
                        "M",
                        QueueId(u32::from(queue)),
                        QueueOffset(u64::from(offset)),
                        limit,
                        &|_| true,
                    )
                    .await
                    .expect("get");
                assert_eq!(g.max_offset.0, q.len() as u64);
                let o = usize::from(offset);
                if q.is_empty() {
                    assert!(matches!(
                        g.status,
                        GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue
                    ));
                } else if o == q.len() {
                    assert_eq!(g.status, GetStatus::OffsetOverflowOne);
                } else if o > q.len() {
                    assert_eq!(g.status, GetStatus::OffsetOverflowBadly);
                } else {
                    assert_eq!(g.status, GetStatus::Found);
                    let want: Vec<&Vec<u8>> = q.iter().skip(o).take(usize::from(count)).collect();
                    assert_eq!(g.messages.len(), want.len());
                    for (m, w) in g.messages.iter().zip(want) {
                        assert_eq!(engine::record::decode(m).expect("valid").body(), &w[..]);
                    }
                    assert_eq!(g.next_begin_offset.0, (o + g.messages.len()) as u64);
                }
            }
            Op::Restart => {
                store.shutdown().await.expect("shutdown");
                drop(store);
                store = open().await.expect("reopen").0;
            }
            Op::CrashSynced => {
                drop(store);
                disk.crash(&mut SimRng::new(n as u64));
                store = open().await.expect("reopen after crash").0;
            }
        }
    }
    for (queue, q) in &model {
        assert_eq!(
            store.max_offset("M", QueueId(u32::from(*queue))).0,
            q.len() as u64
        );
    }
}

/// Fixed proptest RNG seeds; every seed that ever failed joins this list (`common::seeds`).
const FIXED_SEEDS: &[u64] = &[1, 2];
/// Cases per seed: 48 in all with the two fixed seeds and one random one.
const CASES_PER_SEED: u32 = 16;

/// Each seed drives proptest's generator (`RngSeed::Fixed`), so a failing seed replays the
/// same cases (and shrinks to the same minimal one); seeds are printed, recorded and a failed
/// one replayed first, like the crash harness's.
#[test]
fn store_matches_model() {
    let log = SeedLog::new("store_model");
    let random_n = if cfg!(feature = "sim") { 4 } else { 1 };
    for seed in log.plan(FIXED_SEEDS, random_n) {
        log.run(seed, || {
            let config = ProptestConfig {
                cases: CASES_PER_SEED,
                rng_seed: RngSeed::Fixed(seed),
                failure_persistence: None,
                ..ProptestConfig::default()
            };
            let mut runner = TestRunner::new(config);
            let ops = proptest::collection::vec(op(), 1..60);
            let result = runner.run(&ops, |ops| {
                common::run(move || run_ops(ops));
                Ok(())
            });
            if let Err(e) = result {
                panic!("seed {seed}: {e}");
            }
        });
    }
}
