//! Disk usage on the simulated disk: a usage-driven retention pass deletes only the segments it
//! needs even while their handles are still open, and running out of space while creating a
//! segment refuses puts as disk full (never poisons), keeps what was appended, and resumes
//! once space is back.
mod common;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use common::msg;
use engine::clock::ManualClock;
use engine::disk::sim::{SimDisk, SimRng};
use engine::disk::{Disk, Preallocation};
use engine::{
    Background, DurabilityTicket, GetLimit, GetStatus, PutError, QueueId, QueueOffset, Store,
    StoreConfig,
};
use futures_lite::future;

const HOUR_MS: i64 = 3_600_000;
const SEGMENT_BYTES: u64 = 128 << 10;
const DISK_BYTES: u64 = 64 << 20;
const ROOT: &str = "/sim/retention";

fn config() -> StoreConfig {
    StoreConfig {
        root_dir: PathBuf::from(ROOT),
        segment_size_bytes: SEGMENT_BYTES,
        body_size_max: 4096,
        append_buffer_bytes_max: 256 << 10,
        tail_cache_bytes_max: 8 << 10,
        // Tickets are awaited after a stall; only a real failure may fail them.
        sync_flush_timeout_ms: 60_000,
        ..Default::default()
    }
}

fn body(seq: usize) -> Vec<u8> {
    let mut b = format!("retention {seq} ").into_bytes();
    b.resize(3000, b'a' + (seq % 26) as u8);
    b
}

fn used_bytes(disk: &SimDisk) -> u64 {
    let s = disk.space(Path::new(ROOT)).expect("space");
    s.total_bytes - s.free_bytes
}

async fn open(disk: &SimDisk, clock: &Rc<ManualClock>, cfg: StoreConfig) -> Rc<Store> {
    let (store, _) = Store::open_with(
        cfg,
        Rc::new(disk.clone()),
        clock.clone(),
        Background::Manual,
    )
    .await
    .expect("open");
    store
}

/// Every body of queue T/0 from `from` (or its min offset), in order.
async fn bodies(store: &Store, from: u64) -> Vec<Vec<u8>> {
    let limit = GetLimit {
        count_max: 10_000,
        bytes_max: 64 << 20,
    };
    let mut out = Vec::new();
    let mut next = from.max(store.min_offset("T", QueueId(0)).0);
    loop {
        let g = store
            .get("T", QueueId(0), QueueOffset(next), limit, &|_| true)
            .await
            .expect("get");
        if g.status != GetStatus::Found {
            return out;
        }
        for m in &g.messages {
            out.push(engine::record::decode(m).expect("decode").body().to_vec());
        }
        next = g.next_begin_offset.0;
    }
}

/// Panics unless `got` is `want` (reporting counts and the first difference, not the bodies).
fn assert_same(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    if got == want {
        return;
    }
    let first_diff = got.iter().zip(want).position(|(g, w)| g != w);
    panic!(
        "{what}: {} records, want {}; first difference at {first_diff:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn sim_disk_counts_a_removed_file_until_its_last_handle_closes() {
    common::run(|| async {
        let disk = SimDisk::new(1 << 20, Rc::new(ManualClock::new(1_000)));
        disk.create_dir_all(Path::new("/d")).expect("mkdir");
        let path = Path::new("/d/f");
        let f = disk.open(path).await.expect("open");
        f.preallocate(256 << 10, Preallocation::ZeroFill)
            .await
            .expect("fits");
        assert_eq!(used_bytes(&disk), 256 << 10);
        // Past the capacity: ENOSPC, and the file is unchanged.
        let e = f
            .preallocate(2 << 20, Preallocation::ZeroFill)
            .await
            .expect_err("does not fit");
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert_eq!(f.size().await.expect("size"), 256 << 10);
        let e = f.write_at(1 << 20, &[1; 4096]).await.expect_err("no room");
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOSPC), "{e}");
        disk.remove(path).expect("remove");
        assert!(!disk.exists(path));
        assert_eq!(
            used_bytes(&disk),
            256 << 10,
            "still open: still taking space"
        );
        drop(f);
        assert_eq!(used_bytes(&disk), 0, "last handle closed");
        // A killed process closes its handles too.
        let g = disk.open(path).await.expect("open");
        g.preallocate(4096, Preallocation::Fallocate)
            .await
            .expect("fits");
        disk.remove(path).expect("remove");
        assert_eq!(used_bytes(&disk), 4096);
        disk.kill_process();
        assert_eq!(used_bytes(&disk), 0);
    });
}

/// Above the clean ratio, young segments go, oldest first, but only as many as bring usage
/// back under it: here exactly two, although a reader still holds the oldest one open (so
/// its space is not back, neither during that pass nor the next).
#[test]
fn a_usage_driven_pass_deletes_only_the_segments_it_needs_while_handles_are_open() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(10 * HOUR_MS)); // not the delete hour
        let disk = SimDisk::new(DISK_BYTES, clock.clone());
        let store = open(&disk, &clock, config()).await;
        let mut sent = Vec::new();
        // About 10 segments of 3 KiB records.
        for seq in 0..430 {
            let b = body(seq);
            let r = store.put(&msg("T", 0, &b, "")).expect("put");
            r.ticket.await.expect("durable");
            sent.push((r.commit_log_offset.0, b));
        }
        let active = store.max_commit_log_offset().0 / SEGMENT_BYTES;
        assert!(active >= 9, "{active} segments before the active one");
        let oldest_body = sent.first().map(|s| s.1.clone()).expect("sent");

        // A reader of the oldest segment, held mid-read with the segment open.
        disk.hold_reads();
        let reader = {
            let store = store.clone();
            glommio::spawn_local(async move { bodies(&store, 0).await })
        };
        while disk.reads_held() == 0 {
            future::yield_now().await;
        }

        // Usage one and a half segments above the clean ratio (0.75): two must go.
        let clean_line = (DISK_BYTES as f64 * store.config().disk_clean_ratio) as u64;
        let target = clean_line + SEGMENT_BYTES + SEGMENT_BYTES / 2;
        disk.set_extra_used_bytes(target - used_bytes(&disk));
        let rep = store.run_retention_now().await.expect("retention");
        println!("{rep:?}");
        assert_eq!(rep.segments_deleted, 2, "{rep:?}");
        assert!(!rep.is_disk_full, "{rep:?}");
        assert_eq!(store.min_commit_log_offset().0, 2 * SEGMENT_BYTES);

        // The next pass, with the oldest segment still held open (its space not back yet):
        // nothing more is needed, nothing more goes.
        assert!(
            used_bytes(&disk) > clean_line,
            "the held segment still counts"
        );
        let rep = store.run_retention_now().await.expect("retention");
        assert_eq!(rep.segments_deleted, 0, "{rep:?}");

        // The held read still completes from its open handle.
        disk.release_reads();
        let read = reader.await;
        assert!(read.first() == Some(&oldest_body), "read under way broken");

        // The reader's handle is closed now: measured usage is below the line, nothing more goes.
        assert!(used_bytes(&disk) < clean_line);
        let rep = store.run_retention_now().await.expect("retention");
        assert_eq!(rep.segments_deleted, 0, "{rep:?}");
        let kept: Vec<Vec<u8>> = sent
            .iter()
            .filter(|(off, _)| *off >= 2 * SEGMENT_BYTES)
            .map(|(_, b)| b.clone())
            .collect();
        assert_same(&bodies(&store, 0).await, &kept, "after retention");
        store.shutdown().await.expect("shutdown");
    });
}

type Accepted = (u64, Vec<u8>, DurabilityTicket);

/// A config with the ratio guards out of the way: only ENOSPC stops puts.
fn enospc_config() -> StoreConfig {
    StoreConfig {
        disk_clean_ratio: 1.0,
        disk_max_used_ratio: 1.0,
        ..config()
    }
}

/// Opens a store and waits for its second segment to be prepared.
async fn open_ready(disk: &SimDisk, clock: &Rc<ManualClock>) -> Rc<Store> {
    let store = open(disk, clock, enospc_config()).await;
    while !store.is_next_segment_ready() {
        future::yield_now().await;
    }
    store
}

/// Leaves room for a few small files on the disk, not for another segment.
fn leave_no_room_for_a_segment(disk: &SimDisk) {
    disk.set_extra_used_bytes(DISK_BYTES - used_bytes(disk) - SEGMENT_BYTES / 2);
}

/// Puts one record; Ok(accepted) or the refusal.
fn put_one(store: &Store, seq: usize) -> Result<Accepted, PutError> {
    let b = body(seq);
    let r = store.put(&msg("T", 0, &b, ""))?;
    Ok((r.commit_log_offset.0, b, r.ticket))
}

/// Puts until one is refused, yielding after each so the flusher runs.
async fn put_until_refused(store: &Store, accepted: &mut Vec<Accepted>) -> PutError {
    for _ in 0..400 {
        match put_one(store, accepted.len()) {
            Ok(a) => accepted.push(a),
            Err(e) => return e,
        }
        future::yield_now().await;
    }
    panic!("400 puts and none refused");
}

/// Puts until accepted again once space is back (a refused put retries the preparation, at
/// most every 100 ms of the store's clock).
async fn put_until_accepted(store: &Store, clock: &ManualClock, accepted: &mut Vec<Accepted>) {
    for refused in 0..1000 {
        match put_one(store, accepted.len()) {
            Ok(a) => {
                println!("accepted again after {refused} refusals");
                accepted.push(a);
                return;
            }
            Err(PutError::DiskFull) => {}
            Err(e) => panic!("after space is back: {e:?}"),
        }
        clock.advance_ms(50);
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    panic!("still refused 1000 times after space came back");
}

/// Every accepted record becomes durable; after a shutdown and a crash all of them are there,
/// in order.
async fn assert_all_durable_and_recovered(
    store: Rc<Store>,
    accepted: Vec<Accepted>,
    disk: &SimDisk,
    clock: &Rc<ManualClock>,
) {
    let mut sent = Vec::new();
    for (off, b, t) in accepted {
        t.await.unwrap_or_else(|e| panic!("record at {off}: {e}"));
        sent.push(b);
    }
    store.shutdown().await.expect("shutdown");
    drop(store);
    disk.crash(&mut SimRng::new(7));
    let store = open(disk, clock, enospc_config()).await;
    assert_same(
        &bodies(&store, 0).await,
        &sent,
        "every accepted record, in order",
    );
    store.shutdown().await.expect("shutdown");
}

/// The third segment's preparation (in the background, while the second is written) runs out
/// of space: the put that would start it is refused as disk full with nothing appended, the
/// store is not poisoned, and once space is back puts resume without a restart.
#[test]
fn enospc_preparing_the_next_segment_refuses_the_put_that_needs_it_then_resumes() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(10 * HOUR_MS));
        let disk = SimDisk::new(DISK_BYTES, clock.clone());
        let store = open_ready(&disk, &clock).await;
        leave_no_room_for_a_segment(&disk);
        let mut accepted = Vec::new();
        let refusal = put_until_refused(&store, &mut accepted).await;
        assert!(matches!(refusal, PutError::DiskFull), "{refusal:?}");
        assert!(!store.is_poisoned());
        let third = 2 * SEGMENT_BYTES;
        println!("{} accepted", accepted.len());
        assert!(accepted.len() > 60, "two segments' worth accepted");
        assert!(
            accepted.iter().all(|a| a.0 < third),
            "nothing for the third"
        );
        assert!(store.max_commit_log_offset().0 < third);
        // Still no space: refused again (retries included), never poisoned.
        for _ in 0..3 {
            clock.advance_ms(1000);
            store.run_retention_now().await.expect("retention");
            future::yield_now().await;
            let r = put_one(&store, 9999).map(|_| ());
            assert!(matches!(r, Err(PutError::DiskFull)), "{r:?}");
        }
        assert!(!store.is_poisoned());
        disk.set_extra_used_bytes(0);
        put_until_accepted(&store, &clock, &mut accepted).await;
        assert_all_durable_and_recovered(store, accepted, &disk, &clock).await;
    });
}

/// Fills the first segment (durably) to near its end, takes the space away, then appends
/// across the second segment into the third without yielding, so records are appended for
/// the third segment before anything tried to create it; then lets the flusher run into
/// ENOSPC. Returns the accepted records.
async fn append_into_a_segment_that_cannot_be_created(
    store: &Store,
    disk: &SimDisk,
) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    while store.max_commit_log_offset().0 < SEGMENT_BYTES - 20_000 {
        let a = put_one(store, accepted.len()).expect("put");
        accepted.push(a);
    }
    while !accepted.iter().all(|a| a.2.is_durable()) {
        future::yield_now().await;
    }
    leave_no_room_for_a_segment(disk);
    while store.max_commit_log_offset().0 < 2 * SEGMENT_BYTES + 6000 {
        let a = put_one(store, accepted.len()).expect("appended without yielding");
        accepted.push(a);
    }
    for _ in 0..10_000 {
        if store.is_disk_full() {
            return accepted;
        }
        future::yield_now().await;
    }
    panic!("the flusher never ran out of space");
}

/// Records were appended for a segment before its creation ran out of space: they stay
/// readable and unacknowledged (tickets pending) while puts are refused as disk full (not
/// poisoned); once space is back, puts resume without a restart and every accepted record
/// becomes durable, in order.
#[test]
fn enospc_creating_a_segment_with_records_appended_for_it_loses_nothing() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(10 * HOUR_MS));
        let disk = SimDisk::new(DISK_BYTES, clock.clone());
        let store = open_ready(&disk, &clock).await;
        let mut accepted = append_into_a_segment_that_cannot_be_created(&store, &disk).await;
        assert!(!store.is_poisoned());
        let third = 2 * SEGMENT_BYTES;
        let stalled = accepted.iter().filter(|a| a.0 >= third).count();
        println!(
            "{} accepted, {stalled} for the third segment",
            accepted.len()
        );
        assert!(stalled >= 1, "records were appended for the third segment");
        for (off, _, t) in &accepted {
            assert_eq!(t.is_durable(), *off < third, "record at {off}");
        }
        // Still out of space: refused, not poisoned, everything readable.
        for _ in 0..3 {
            let r = put_one(&store, 9999).map(|_| ());
            assert!(matches!(r, Err(PutError::DiskFull)), "{r:?}");
            store.run_retention_now().await.expect("retention");
            future::yield_now().await;
        }
        assert!(!store.is_poisoned());
        let sent: Vec<Vec<u8>> = accepted.iter().map(|a| a.1.clone()).collect();
        assert_same(&bodies(&store, 0).await, &sent, "while out of space");

        disk.set_extra_used_bytes(0);
        put_until_accepted(&store, &clock, &mut accepted).await;
        assert!(!store.is_disk_full());
        assert_all_durable_and_recovered(store, accepted, &disk, &clock).await;
    });
}

/// Out of space at shutdown: the records waiting for the new segment cannot be made durable,
/// so shutdown reports the store poisoned. After a crash every record that was durable is
/// there, and nothing of the stalled segment.
#[test]
fn out_of_space_at_shutdown_fails_it_and_a_crash_keeps_every_durable_record() {
    common::run(|| async {
        let clock = Rc::new(ManualClock::new(10 * HOUR_MS));
        let disk = SimDisk::new(DISK_BYTES, clock.clone());
        let store = open_ready(&disk, &clock).await;
        let accepted = append_into_a_segment_that_cannot_be_created(&store, &disk).await;
        let third = 2 * SEGMENT_BYTES;
        assert!(accepted.iter().any(|a| a.0 >= third));
        let durable: Vec<Vec<u8>> = accepted
            .iter()
            .filter(|a| a.0 < third)
            .map(|a| a.1.clone())
            .collect();
        assert!(store.shutdown().await.is_err(), "cannot flush everything");
        for (off, _, t) in accepted {
            let r = t.await;
            assert_eq!(r.is_ok(), off < third, "record at {off}: {r:?}");
        }
        drop(store);
        disk.crash(&mut SimRng::new(11));
        disk.set_extra_used_bytes(0);
        let store = open(&disk, &clock, enospc_config()).await;
        assert_same(
            &bodies(&store, 0).await,
            &durable,
            "durable after the crash",
        );
        assert_eq!(store.max_commit_log_offset().0, third);
        store.shutdown().await.expect("shutdown");
    });
}
