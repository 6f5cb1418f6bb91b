//! Put and read back records through a real Store on the real disk (glommio DmaFile), and
//! SYNC_FLUSH group commit on the simulated disk (which counts fdatasyncs).
mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use common::{config, msg, run, tempdir};
use engine::clock::ManualClock;
use engine::disk::sim::SimDisk;
use engine::{
    Background, FlushMode, GetLimit, GetStatus, QueueId, QueueOffset, Store, StoreConfig,
};

#[test]
fn put_get_reopen_on_real_disk() {
    let dir = tempdir();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let (store, report) = Store::open(config(root.clone())).await.expect("open");
        assert_eq!(report.end_offset, 0);
        let mut acked = Vec::new();
        for i in 0..500u32 {
            let body = vec![(i % 251) as u8; 100 + (i as usize * 37) % 7000];
            let props = format!("TAGS\u{1}tag{}\u{2}KEYS\u{1}k{i} common\u{2}", i % 3);
            let r = store.put(&msg("T", i % 2, &body, &props)).expect("put");
            assert_eq!(r.queue_offset.0, u64::from(i / 2));
            r.ticket.await.expect("durable");
            acked.push((r.commit_log_offset, body));
        }
        // Records span several 1 MiB segments.
        assert!(store.max_commit_log_offset().0 > 1 << 20);
        for (off, body) in &acked {
            let rec = store.read_message(*off).await.expect("read");
            let v = engine::record::decode(&rec).expect("decode");
            assert_eq!(v.body(), &body[..]);
            assert_eq!(v.commit_log_offset(), *off);
        }
        let limit = GetLimit {
            count_max: 32,
            bytes_max: 1 << 20,
        };
        let r = store
            .get("T", QueueId(0), QueueOffset(0), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(r.status, GetStatus::Found);
        assert_eq!(r.messages.len(), 32);
        assert_eq!(r.next_begin_offset, QueueOffset(32));
        let tag0 = engine::tags_hash("tag0");
        let r = store
            .get("T", QueueId(0), QueueOffset(0), limit, &|t| t == tag0)
            .await
            .expect("get");
        assert!(r
            .messages
            .iter()
            .all(|m| engine::record::decode(m).is_ok_and(|v| v.properties().contains("tag0"))));
        let r = store
            .get("T", QueueId(1), QueueOffset(250), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(r.status, GetStatus::OffsetOverflowOne);
        let r = store
            .get("nope", QueueId(1), QueueOffset(0), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(r.status, GetStatus::NoMatchedLogicQueue);
        let found = store
            .query_by_key("T", "k17", 10, 0, i64::MAX)
            .await
            .expect("query");
        assert_eq!(found.len(), 1);
        let found = store
            .query_by_key("T", "common", 1000, 0, i64::MAX)
            .await
            .expect("query");
        assert_eq!(found.len(), 500);
        let end = store.max_commit_log_offset();
        store.shutdown().await.expect("shutdown");
        drop(store);

        let (store, report) = Store::open(config(root.clone())).await.expect("reopen");
        assert!(report.was_clean, "{report:?}");
        assert_eq!(report.end_offset, end.0);
        assert_eq!(store.max_offset("T", QueueId(0)), QueueOffset(250));
        for (off, body) in acked.iter().step_by(7) {
            let rec = store.read_message(*off).await.expect("read after reopen");
            assert_eq!(
                engine::record::decode(&rec).expect("decode").body(),
                &body[..]
            );
        }
        let r = store
            .get("T", QueueId(1), QueueOffset(240), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(r.messages.len(), 10);
        let found = store
            .query_by_key("T", "k17", 10, 0, i64::MAX)
            .await
            .expect("query");
        assert_eq!(found.len(), 1);
        store.shutdown().await.expect("shutdown");
    });
}

#[test]
fn async_flush_makes_1000_puts_durable_in_fewer_flushes() {
    let dir = tempdir();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let mut cfg = config(root);
        cfg.flush_mode = FlushMode::Async;
        cfg.flush_interval_ms = 20;
        let (store, _) = Store::open(cfg).await.expect("open");
        let mut tickets = Vec::new();
        for i in 0..1000u32 {
            let body = i.to_be_bytes();
            tickets.push(store.put(&msg("A", 0, &body, "")).expect("put").ticket);
        }
        for t in tickets {
            t.await.expect("durable");
        }
        assert!(store.flush_count() < 1000);
        store.shutdown().await.expect("shutdown");
    });
}

/// SYNC_FLUSH group commit: 64 producers each put one message and wait for its ticket at the
/// same time; the flusher covers them with far fewer fdatasyncs than waiters, and no ticket
/// resolves before an fdatasync that completed after its put.
#[test]
fn sync_flush_group_commit_64_waiters_share_few_fdatasyncs() {
    const WAITERS: u64 = 64;
    run(|| async {
        let clock = Rc::new(ManualClock::new(1_000));
        let disk = SimDisk::new(1 << 30, clock.clone());
        let cfg = StoreConfig {
            root_dir: PathBuf::from("/sim/group"),
            segment_size_bytes: 1 << 20,
            body_size_max: 4096,
            flush_mode: FlushMode::Sync,
            ..Default::default()
        };
        let (store, _) = Store::open_with(cfg, Rc::new(disk.clone()), clock, Background::Manual)
            .await
            .expect("open");
        // The first segment exists before the waiters start.
        let warm = store.put(&msg("G", 0, b"warm", "")).expect("put");
        warm.ticket.await.expect("durable");
        let syncs_before = disk.syncs_done();
        let acked = Rc::new(Cell::new(0u64));
        let mut waiters = Vec::new();
        for i in 0..WAITERS {
            let (store, disk, acked) = (store.clone(), disk.clone(), acked.clone());
            waiters.push(glommio::spawn_local(async move {
                // Spread the puts over several flusher rounds.
                for _ in 0..i % 7 {
                    futures_lite::future::yield_now().await;
                }
                let body = i.to_be_bytes();
                let r = store
                    .put(&msg("G", (i % 4) as u32, &body, ""))
                    .expect("put");
                let syncs_at_put = disk.syncs_done();
                r.ticket.await.expect("durable");
                assert!(
                    disk.syncs_done() > syncs_at_put,
                    "waiter {i} acknowledged with no fdatasync completed after its put"
                );
                acked.set(acked.get() + 1);
            }));
        }
        for w in waiters {
            w.await;
        }
        let syncs = disk.syncs_done() - syncs_before;
        println!("{WAITERS} SYNC_FLUSH waiters, {syncs} fdatasyncs");
        assert_eq!(acked.get(), WAITERS);
        assert!(syncs >= 1);
        assert!(
            syncs <= WAITERS / 4,
            "{syncs} fdatasyncs for {WAITERS} waiters: group commit did not share them"
        );
        store.shutdown().await.expect("shutdown");
    });
}
