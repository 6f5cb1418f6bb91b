//! Poisoning, flush timeout, disk full and retention, on the simulated disk.
mod common;

use std::path::PathBuf;
use std::rc::Rc;

use common::msg;
use engine::clock::ManualClock;
use engine::disk::sim::{SimDisk, SimRng};
use engine::{
    Background, CommitLogOffset, FlushError, FlushMode, GetLimit, GetStatus, PutError, QueueId,
    QueueOffset, Store, StoreConfig,
};

fn config() -> StoreConfig {
    StoreConfig {
        root_dir: PathBuf::from("/sim/faults"),
        segment_size_bytes: 128 << 10,
        body_size_max: 4096,
        append_buffer_bytes_max: 256 << 10,
        tail_cache_bytes_max: 8 << 10,
        ..Default::default()
    }
}

const HOUR_MS: i64 = 3_600_000;

#[test]
fn failed_fdatasync_poisons_the_store_and_nothing_acked_is_lost() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(1_000));
        let disk = SimDisk::new(1 << 30, clock.clone());
        let open = || {
            Store::open_with(
                config(),
                Rc::new(disk.clone()),
                clock.clone(),
                Background::Manual,
            )
        };
        let (store, _) = open().await.expect("open");
        let ok = store.put(&msg("T", 0, b"first", "")).expect("put");
        ok.ticket.await.expect("durable");
        disk.fail_next_syncs(1);
        let r = store.put(&msg("T", 0, b"second", "")).expect("put");
        assert_eq!(r.ticket.await, Err(FlushError::Poisoned));
        assert!(store.is_poisoned());
        assert!(matches!(
            store.put(&msg("T", 0, b"third", "")),
            Err(PutError::Poisoned)
        ));
        // Reads go on.
        let b = store
            .read_message(ok.commit_log_offset)
            .await
            .expect("read");
        assert_eq!(engine::record::decode(&b).expect("decode").body(), b"first");
        assert!(store.shutdown().await.is_err());
        drop(store);
        // Power loss: whatever the failed fdatasync left unsynced is kept, dropped or torn.
        let report = disk.crash(&mut SimRng::new(29));
        println!("crash: {report:?}");
        let (store, _) = open().await.expect("reopen");
        let b = store
            .read_message(CommitLogOffset(0))
            .await
            .expect("acknowledged record readable after the crash");
        assert_eq!(engine::record::decode(&b).expect("decode").body(), b"first");
        store
            .put(&msg("T", 0, b"after", ""))
            .expect("put after recovery")
            .ticket
            .await
            .expect("durable after recovery");
    });
}

#[test]
fn failed_write_poisons_the_store() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(1_000));
        let disk = SimDisk::new(1 << 30, clock.clone());
        let (store, _) =
            Store::open_with(config(), Rc::new(disk.clone()), clock, Background::Manual)
                .await
                .expect("open");
        disk.fail_next_writes(1);
        let r = store.put(&msg("T", 0, b"x", "")).expect("put");
        assert_eq!(r.ticket.await, Err(FlushError::Poisoned));
        assert!(matches!(
            store.put(&msg("T", 0, b"y", "")),
            Err(PutError::Poisoned)
        ));
    });
}

#[test]
fn ticket_reports_timeout_when_not_durable_in_time() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(1_000));
        let disk = SimDisk::new(1 << 30, clock.clone());
        let mut cfg = config();
        cfg.flush_mode = FlushMode::Async;
        cfg.flush_interval_ms = 3_600_000; // the manual clock never gets there
        cfg.sync_flush_timeout_ms = 20;
        let (store, _) = Store::open_with(cfg, Rc::new(disk), clock, Background::Manual)
            .await
            .expect("open");
        let r = store.put(&msg("T", 0, b"x", "")).expect("put");
        assert_eq!(r.ticket.await, Err(FlushError::Timeout));
        store.shutdown().await.expect("shutdown flushes anyway");
    });
}

#[test]
fn append_buffer_is_bounded() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(1_000));
        let disk = SimDisk::new(1 << 30, clock.clone());
        let (store, _) = Store::open_with(config(), Rc::new(disk), clock, Background::Manual)
            .await
            .expect("open");
        let body = vec![1u8; 4000];
        let mut full = false;
        // No await: the flusher cannot run, so the buffer fills up.
        for _ in 0..200 {
            match store.put(&msg("T", 0, &body, "")) {
                Ok(_) => {}
                Err(PutError::BufferFull) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(full, "256 KiB buffer must fill with 200 x 4 KB");
        let r = loop {
            futures_lite::future::yield_now().await;
            if let Ok(r) = store.put(&msg("T", 0, &body, "")) {
                break r;
            }
        };
        r.ticket
            .await
            .expect("durable after the flusher drained the buffer");
    });
}

#[test]
fn disk_full_refuses_writes_keeps_reads_and_recovers() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(1_000));
        let disk = SimDisk::new(64 << 20, clock.clone());
        let (store, _) =
            Store::open_with(config(), Rc::new(disk.clone()), clock, Background::Manual)
                .await
                .expect("open");
        let r = store.put(&msg("T", 0, b"before", "")).expect("put");
        r.ticket.await.expect("durable");
        disk.set_extra_used_bytes(62 << 20); // > 90% used
        let rep = store.run_retention_now().await.expect("retention");
        assert!(rep.is_disk_full);
        assert!(matches!(
            store.put(&msg("T", 0, b"x", "")),
            Err(PutError::DiskFull)
        ));
        let limit = GetLimit {
            count_max: 8,
            bytes_max: 1 << 20,
        };
        let g = store
            .get("T", QueueId(0), QueueOffset(0), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(g.status, GetStatus::Found);
        disk.set_extra_used_bytes(0);
        let rep = store.run_retention_now().await.expect("retention");
        assert!(!rep.is_disk_full);
        store
            .put(&msg("T", 0, b"after", ""))
            .expect("writes resume")
            .ticket
            .await
            .expect("durable");
    });
}

#[test]
fn retention_deletes_old_segments_at_delete_hour_without_breaking_readers() {
    common::run(|| async {
        // 03:00 UTC on day 20000.
        let day = 20_000 * 24 * HOUR_MS;
        let clock = Rc::new(ManualClock::new(day + 3 * HOUR_MS));
        let disk = SimDisk::new(1 << 40, clock.clone());
        let (store, _) = Store::open_with(
            config(),
            Rc::new(disk.clone()),
            clock.clone(),
            Background::Manual,
        )
        .await
        .expect("open");
        let body = vec![7u8; 3000];
        let mut first = None;
        for i in 0..200 {
            let r = store
                .put(&msg("T", i % 2, &body, "KEYS\u{1}k\u{2}"))
                .expect("put");
            first.get_or_insert(r.commit_log_offset);
            r.ticket.await.expect("durable");
        }
        assert!(store.max_commit_log_offset().0 > 4 * (128 << 10));
        // Not expired yet (72 h), and not the delete hour: nothing goes.
        assert_eq!(
            store
                .run_retention_now()
                .await
                .expect("retention")
                .segments_deleted,
            0
        );
        // Start a read of the oldest record and hold it at the disk, mid-read (its segment
        // looked up, the file read not done); retention deletes that segment meanwhile.
        disk.hold_reads();
        let reader = {
            let s = store.clone();
            let off = first.expect("first");
            glommio::spawn_local(async move { s.read_message(off).await })
        };
        for _ in 0..1000 {
            if disk.reads_held() > 0 {
                break;
            }
            futures_lite::future::yield_now().await;
        }
        assert_eq!(disk.reads_held(), 1, "the reader is held mid-read");
        clock.set_ms(day + 4 * 24 * HOUR_MS + 4 * HOUR_MS); // 4 days later, 04:xx
        let rep = store.run_retention_now().await.expect("retention");
        assert!(rep.segments_deleted >= 3, "{rep:?}");
        assert!(
            store.min_commit_log_offset().0 > first.expect("first").0,
            "the reader's segment was deleted while it was reading"
        );
        assert_eq!(disk.reads_held(), 1, "the reader is still mid-read");
        disk.release_reads();
        // The read completes from the file it had open.
        let b = reader
            .await
            .expect("a read under way survives the deletion of its segment");
        assert_eq!(
            engine::record::decode(&b).expect("decode").body(),
            &body[..]
        );
        assert!(store.min_commit_log_offset().0 >= 3 * (128 << 10));
        assert!(store.min_offset("T", QueueId(0)).0 > 0);
        let limit = GetLimit {
            count_max: 4,
            bytes_max: 1 << 20,
        };
        let g = store
            .get("T", QueueId(0), QueueOffset(0), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(g.status, GetStatus::OffsetTooSmall);
        let min = g.next_begin_offset;
        let g = store
            .get("T", QueueId(0), min, limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(g.status, GetStatus::Found);
        let keyed = store
            .query_by_key("T", "k", 1000, 0, i64::MAX)
            .await
            .expect("query");
        assert!(keyed.len() < 200 && !keyed.is_empty());
        store.shutdown().await.expect("shutdown");
    });
}

#[test]
fn disk_pressure_deletes_young_segments_above_high_water() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(10 * HOUR_MS)); // not the delete hour
        let disk = SimDisk::new(1 << 30, clock.clone());
        let (store, _) = Store::open_with(
            config(),
            Rc::new(disk.clone()),
            clock.clone(),
            Background::Manual,
        )
        .await
        .expect("open");
        let body = vec![1u8; 3000];
        for _ in 0..200 {
            store
                .put(&msg("T", 0, &body, ""))
                .expect("put")
                .ticket
                .await
                .expect("durable");
        }
        disk.set_extra_used_bytes((1 << 30) * 8 / 10); // 80% > clean ratio 75%
        let rep = store.run_retention_now().await.expect("retention");
        assert!(rep.segments_deleted >= 1, "{rep:?}");
    });
}
