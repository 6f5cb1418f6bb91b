//! Broker-level durability: a real shard, whose store runs on the crash-simulating `SimDisk`,
//! driven with real SEND_MESSAGE requests over a loopback socket (the real codec and
//! connection layer), with the disk's sync gate held, failed and crashed under it.
//!
//! What "acknowledged" means here: a SEND_OK (code 0) under SYNC_FLUSH. That, and only that, is
//! RocketMQ's durability promise, and every such message must come back, with its body, after
//! any crash. FLUSH_DISK_TIMEOUT (10) is not a promise: Java's client hands it to the
//! application as `SendStatus.FLUSH_DISK_TIMEOUT`, the message is stored but its flush did not
//! finish in time, so a crash may lose it (it may also survive: both are accepted, and the test
//! prints which). Under ASYNC_FLUSH SEND_OK is no promise either; a message counts as
//! acknowledged there only once the test has seen the store's durable offset pass it.
//!
//! Every crash draws its torn and dropped sectors from a seeded generator; the seed is printed
//! and `PETREL_DURABILITY_SEED=<seed>` replays it. Absence of an answer is shown with a sentinel
//! (a later request on the same connection answered first), never by sleeping.

#[path = "durability/client.rs"]
mod client;
#[path = "durability/harness.rs"]
mod harness;
#[path = "durability/ledger.rs"]
mod ledger;

use std::cell::Cell;
use std::rc::Rc;

use broker::remoting::ResponseCode;
use engine::disk::sim::SimRng;

use client::{show, Client};
use harness::{run, seed, sim_disk, tempdir, wait_until, Node};
use ledger::{Ledger, Verified};

const TOPIC: &str = "DurableTopic";
const QUEUES: u32 = 4;
/// A syncFlushTimeout no test reaches unless it means to.
const PATIENT: (&str, &str) = ("syncFlushTimeout", "60000");
const SYNC: (&str, &str) = ("flushDiskType", "SYNC_FLUSH");

/// Sends `n` messages and records each SEND_OK.
async fn send_acknowledged(c: &mut Client, ledger: &mut Ledger, n: usize) {
    for _ in 0..n {
        let p = ledger.next_send();
        let r = c.request(p.request.clone()).await;
        ledger.acknowledged(&p, &r);
    }
}

/// Holds syncs and sends `n` messages that the broker appends but cannot make durable, so the
/// crash that follows has unsynced sectors to drop or tear. Returns once all are appended and a
/// sync waits at the gate, after a sentinel round trip on the same connection; an answer read
/// by then is recorded like any other (a correct broker has sent none).
async fn sends_behind_a_held_sync(node: &Node, c: &mut Client, ledger: &mut Ledger, n: u64) {
    node.disk.hold_syncs();
    let stored = node.stored_count(TOPIC, QUEUES);
    let mut pending = Vec::new();
    for _ in 0..n {
        let p = ledger.next_send();
        let opaque = c.send(p.request.clone()).await;
        pending.push((opaque, p));
    }
    wait_until(
        "the in-flight sends are appended and a sync is held",
        || node.stored_count(TOPIC, QUEUES) == stored + n && node.disk.syncs_held() >= 1,
    )
    .await;
    c.max_offset(TOPIC, 0).await;
    let mut answered = 0;
    for (opaque, p) in &pending {
        if let Some(r) = c.take_response(*opaque) {
            answered += 1;
            if r.code == ResponseCode::SUCCESS {
                ledger.acknowledged(p, &r);
            }
        }
    }
    println!("{n} sends in flight behind a held sync, {answered} answered before the crash");
}

/// Opens a fresh shard, creates the topic, returns it with a client.
async fn start(
    disk: &engine::disk::sim::SimDisk,
    dir: &std::path::Path,
    settings: &[(&str, &str)],
) -> (Node, Client) {
    let node = Node::open(disk, dir, settings).await;
    let mut c = Client::connect(node.addr).await;
    c.create_topic(TOPIC, QUEUES).await;
    (node, c)
}

/// Crashes `node` (seeded), reopens it on the same disk (with `settings` if given), and checks
/// every acknowledged message came back.
async fn crash_and_verify(
    node: Node,
    rng: &mut SimRng,
    seed: u64,
    ledger: &Ledger,
    settings: Option<&[(&str, &str)]>,
) -> (Node, Client, Verified) {
    let (node, _report) = node.crash_and_reopen(rng, settings).await;
    let mut c = Client::connect(node.addr).await;
    let verified = ledger.verify(&mut c, seed).await;
    (node, c, verified)
}

#[test]
fn send_ok_leaves_only_after_the_covering_fdatasync() {
    run(|| async {
        let seed = seed("send_ok_leaves_only_after_the_covering_fdatasync");
        let mut rng = SimRng::new(seed);
        let dir = tempdir();
        let disk = sim_disk();
        let (node, mut c) = start(&disk, dir.path(), &[SYNC, PATIENT]).await;
        let mut ledger = Ledger::new(TOPIC, QUEUES, "held");
        send_acknowledged(&mut c, &mut ledger, 8).await;

        disk.hold_syncs();
        let syncs_before = disk.syncs_done();
        let stored = node.stored_count(TOPIC, QUEUES);
        let p = ledger.next_send();
        let opaque = c.send(p.request.clone()).await;
        wait_until("the send is appended and a sync is held", || {
            node.stored_count(TOPIC, QUEUES) == stored + 1 && disk.syncs_held() >= 1
        })
        .await;
        // Sentinel: a request sent after the held one, answered on the same connection. The
        // record is in the store (GET_MAX_OFFSET counts it) but not durable, and its answer
        // has not been sent.
        let max = c.max_offset(TOPIC, p.queue_id).await;
        assert!(
            !c.has_response(opaque),
            "the send was answered while the fdatasync covering it was held: {}",
            c.take_response(opaque)
                .map(|r| show(&r))
                .unwrap_or_default()
        );
        assert_eq!(
            max, 3,
            "queue {} holds the 2 earlier sends and this one",
            p.queue_id
        );
        assert!(node.has_unsynced_records(), "the record is not durable yet");
        assert_eq!(
            disk.syncs_done(),
            syncs_before,
            "no sync completed while held"
        );

        disk.release_syncs();
        let r = c.wait(opaque).await;
        ledger.acknowledged(&p, &r);
        assert!(
            disk.syncs_done() > syncs_before,
            "SEND_OK came without a completed fdatasync"
        );
        assert!(
            !node.has_unsynced_records(),
            "SEND_OK came before the record was durable"
        );

        send_acknowledged(&mut c, &mut ledger, 8).await;
        sends_behind_a_held_sync(&node, &mut c, &mut ledger, 8).await;
        let (_node, mut c, _) = crash_and_verify(node, &mut rng, seed, &ledger, None).await;
        // The new incarnation accepts sends.
        let p = ledger.next_send();
        let r = c.request(p.request.clone()).await;
        ledger.acknowledged(&p, &r);
    });
}

#[test]
fn stalled_fdatasync_past_sync_flush_timeout_answers_flush_disk_timeout() {
    run(|| async {
        let seed = seed("stalled_fdatasync_past_sync_flush_timeout_answers_flush_disk_timeout");
        let mut rng = SimRng::new(seed);
        let dir = tempdir();
        let disk = sim_disk();
        // Acknowledged messages first, with a timeout no busy machine reaches.
        let (node, mut c) = start(&disk, dir.path(), &[SYNC, PATIENT]).await;
        let mut ledger = Ledger::new(TOPIC, QUEUES, "stall");
        send_acknowledged(&mut c, &mut ledger, 8).await;
        drop(c);
        // Then an incarnation with a short syncFlushTimeout.
        let short: &[(&str, &str)] = &[SYNC, ("syncFlushTimeout", "200")];
        let (node, mut c, _) = crash_and_verify(node, &mut rng, seed, &ledger, Some(short)).await;

        disk.hold_syncs();
        let p = ledger.next_send();
        let r = c.request(p.request.clone()).await;
        assert_eq!(
            r.code,
            ResponseCode::FLUSH_DISK_TIMEOUT,
            "a send whose fdatasync is stalled past syncFlushTimeout: {}",
            show(&r)
        );
        assert!(disk.syncs_held() >= 1, "the covering sync is still held");
        assert!(node.has_unsynced_records(), "the record is not durable");

        let patient: &[(&str, &str)] = &[SYNC, PATIENT];
        let (_node, _c, v) = crash_and_verify(node, &mut rng, seed, &ledger, Some(patient)).await;
        println!(
            "the FLUSH_DISK_TIMEOUT message {} the crash (either is allowed)",
            if v.unacknowledged_recovered > 0 {
                "survived"
            } else {
                "was lost in"
            }
        );
    });
}

/// A failed fdatasync poisons the store: the send it covered and every later one get
/// SERVICE_NOT_AVAILABLE (14). Java's broker (DefaultMappedFile.flush) marks its RunningFlags not
/// writeable on an IOException from force(); later sends then get SERVICE_NOT_AVAILABLE from
/// HookUtils.checkBeforePutMessage, as here. The send whose flush failed gets FLUSH_DISK_TIMEOUT
/// (10) from Java (GroupCommitService finds the flushed position short); Petrel answers 14 for it
/// too, so that a Java producer retries it on another broker (14 is in its retry codes, 10 is
/// not) instead of reporting a stored message on a store that can take no more writes.
#[test]
fn failed_fdatasync_answers_service_not_available_and_poisons_the_shard() {
    run(|| async {
        let seed = seed("failed_fdatasync_answers_service_not_available_and_poisons_the_shard");
        let mut rng = SimRng::new(seed);
        let dir = tempdir();
        let disk = sim_disk();
        let (node, mut c) = start(&disk, dir.path(), &[SYNC, PATIENT]).await;
        let mut ledger = Ledger::new(TOPIC, QUEUES, "fail");
        send_acknowledged(&mut c, &mut ledger, 8).await;

        // Every sync fails from now on, whichever file it is for: the one covering the next
        // send among them.
        disk.fail_next_syncs(u32::MAX);
        let p = ledger.next_send();
        let r = c.request(p.request.clone()).await;
        assert_eq!(
            r.code,
            ResponseCode::SERVICE_NOT_AVAILABLE,
            "a send whose fdatasync failed: {}",
            show(&r)
        );
        assert!(node.shard.store().is_poisoned(), "the store is poisoned");
        // Later sends are refused before they reach the store, with the same code and a
        // remark that says why.
        let stored = node.stored_count(TOPIC, QUEUES);
        for _ in 0..3 {
            let p = ledger.next_send();
            let r = c.request(p.request.clone()).await;
            assert_eq!(r.code, ResponseCode::SERVICE_NOT_AVAILABLE, "{}", show(&r));
            let remark = r.remark.clone().unwrap_or_default();
            assert!(
                remark.contains("poisoned"),
                "remark names the cause: {remark:?}"
            );
            ledger.refused(&p);
        }
        assert_eq!(
            node.stored_count(TOPIC, QUEUES),
            stored,
            "refused sends were not stored"
        );

        let (_node, mut c, _) = crash_and_verify(node, &mut rng, seed, &ledger, None).await;
        // Recovery clears the poison: the shard takes sends again.
        let p = ledger.next_send();
        let r = c.request(p.request.clone()).await;
        ledger.acknowledged(&p, &r);
    });
}

/// Senders in the SYNC group-commit test, each on its own connection.
const SENDERS: usize = 64;
/// fdatasyncs (of every file, checkpoint passes included) the 64 may cost at most.
const GROUP_SYNCS_MAX: u64 = 16;

#[test]
fn sync_group_commit_shares_fdatasyncs_among_64_senders() {
    run(|| async {
        let seed = seed("sync_group_commit_shares_fdatasyncs_among_64_senders");
        let mut rng = SimRng::new(seed);
        let dir = tempdir();
        let disk = sim_disk();
        let (node, mut c) = start(&disk, dir.path(), &[SYNC, PATIENT]).await;
        let mut ledger = Ledger::new(TOPIC, QUEUES, "group");
        send_acknowledged(&mut c, &mut ledger, 4).await;
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            senders.push(Client::connect(node.addr).await);
        }

        // One sync is held while all 64 sends arrive, so every one of them is appended while
        // an fdatasync is in flight: group commit must cover them with the next one or two.
        disk.hold_syncs();
        let syncs_before = disk.syncs_done();
        let flushes_before = node.shard.store().flush_count();
        let stored = node.stored_count(TOPIC, QUEUES);
        let answered = Rc::new(Cell::new(0usize));
        let mut tasks = Vec::new();
        for mut sender in senders {
            let p = ledger.next_send();
            let answered = answered.clone();
            tasks.push(glommio::spawn_local(async move {
                let r = sender.request(p.request.clone()).await;
                answered.set(answered.get() + 1);
                (p, r)
            }));
        }
        wait_until(
            "all 64 sends are appended while an fdatasync is held (a broker that serializes \
             sends behind the sync never gets there)",
            || {
                node.stored_count(TOPIC, QUEUES) == stored + SENDERS as u64
                    && disk.syncs_held() >= 1
            },
        )
        .await;
        assert_eq!(
            answered.get(),
            0,
            "no send was answered while its sync was held"
        );
        disk.release_syncs();
        for task in tasks {
            let (p, r) = task.await;
            ledger.acknowledged(&p, &r);
        }
        let syncs = disk.syncs_done() - syncs_before;
        let flushes = node.shard.store().flush_count() - flushes_before;
        println!(
            "{SENDERS} SYNC senders: {syncs} fdatasyncs on the disk, {flushes} commitlog flush rounds"
        );
        assert!(
            syncs <= GROUP_SYNCS_MAX,
            "{SENDERS} SYNC senders cost {syncs} fdatasyncs ({flushes} commitlog flush rounds): \
             no group commit"
        );
        assert!(
            !node.has_unsynced_records(),
            "every answered record is durable"
        );

        sends_behind_a_held_sync(&node, &mut c, &mut ledger, 8).await;
        let (_node, _c, v) = crash_and_verify(node, &mut rng, seed, &ledger, None).await;
        assert!(v.acknowledged >= SENDERS);
    });
}

#[test]
fn async_flush_answers_without_waiting_and_syncs_within_the_interval() {
    run(|| async {
        let seed = seed("async_flush_answers_without_waiting_and_syncs_within_the_interval");
        let mut rng = SimRng::new(seed);
        let dir = tempdir();
        let disk = sim_disk();
        let settings: &[(&str, &str)] = &[
            ("flushDiskType", "ASYNC_FLUSH"),
            ("flushIntervalCommitLog", "100"),
            PATIENT,
        ];
        let (node, mut c) = start(&disk, dir.path(), settings).await;
        let mut ledger = Ledger::new(TOPIC, QUEUES, "async");

        // With every sync held, SEND_OK still comes, for records that are not durable.
        disk.hold_syncs();
        let syncs_before = disk.syncs_done();
        let mut answered = Vec::new();
        for _ in 0..16 {
            let p = ledger.next_send();
            let r = c.request(p.request.clone()).await;
            assert_eq!(
                r.code,
                ResponseCode::SUCCESS,
                "ASYNC_FLUSH send: {}",
                show(&r)
            );
            assert!(
                node.has_unsynced_records(),
                "answered although nothing could be synced"
            );
            answered.push((p, r));
        }
        assert_eq!(
            disk.syncs_done(),
            syncs_before,
            "no sync completed while held"
        );

        // Once syncs go through, the flusher makes them durable within its interval; from then
        // on they must survive a crash.
        disk.release_syncs();
        wait_until("the ASYNC_FLUSH flusher syncs the answered records", || {
            !node.has_unsynced_records()
        })
        .await;
        assert!(disk.syncs_done() > syncs_before);
        for (p, r) in &answered {
            ledger.acknowledged(p, r);
        }

        // Answered but not yet synced (not a promise under ASYNC_FLUSH) when the power goes.
        disk.hold_syncs();
        for _ in 0..8 {
            let p = ledger.next_send();
            let r = c.request(p.request.clone()).await;
            assert_eq!(r.code, ResponseCode::SUCCESS, "{}", show(&r));
        }
        let (_node, _c, v) = crash_and_verify(node, &mut rng, seed, &ledger, None).await;
        println!(
            "{} of the 8 answered-but-unsynced ASYNC_FLUSH messages survived",
            v.unacknowledged_recovered
        );
    });
}
