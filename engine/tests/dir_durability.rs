//! Directory entries on the simulated disk: what a killed process created but never made
//! durable (its directory sync held at the gate when it died) is made durable by the next
//! process before it relies on it, so a later power loss cannot drop it.
mod common;

use std::path::PathBuf;
use std::rc::Rc;

use common::msg;
use engine::clock::ManualClock;
use engine::disk::sim::{SimDisk, SimRng};
use engine::{Background, GetLimit, GetStatus, QueueId, QueueOffset, Store, StoreConfig};

fn config() -> StoreConfig {
    StoreConfig {
        root_dir: PathBuf::from("/sim/dirs"),
        segment_size_bytes: 128 << 10,
        body_size_max: 4096,
        ..Default::default()
    }
}

#[test]
fn consume_queue_directories_a_killed_process_left_unsynced_are_synced_by_the_next() {
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
        let r = store.put(&msg("T", 0, b"first", "")).expect("put");
        r.ticket.await.expect("durable");
        // The first checkpoint creates consumequeue/T/0; hold it at its first directory sync.
        disk.hold_dir_syncs();
        let s = store.clone();
        glommio::spawn_local(async move {
            let _ = s.checkpoint_now().await;
        })
        .detach();
        for _ in 0..1000 {
            if disk.dir_syncs_held() > 0 {
                break;
            }
            futures_lite::future::yield_now().await;
        }
        assert_eq!(
            disk.dir_syncs_held(),
            1,
            "the checkpoint waits at a directory sync"
        );
        let left = disk.unsynced_entries();
        assert!(
            left.contains(&PathBuf::from("/sim/dirs/consumequeue/T")),
            "the new topic directory is not durable yet: {left:?}"
        );
        // SIGKILL: the held sync fails, the entries stay volatile.
        disk.kill_process();
        drop(store);
        disk.release_dir_syncs();
        for _ in 0..50 {
            futures_lite::future::yield_now().await;
        }
        let (store, _) = open().await.expect("reopen after the kill");
        let r = store.put(&msg("T", 0, b"second", "")).expect("put");
        r.ticket.await.expect("durable");
        store.checkpoint_now().await.expect("checkpoint");
        let left = disk.unsynced_entries();
        assert!(
            left.is_empty(),
            "after a checkpoint that relies on them, entries are still not durable: {left:?}"
        );
        // Power loss, then both acknowledged records are found through the consume queue.
        drop(store);
        let report = disk.crash(&mut SimRng::new(3));
        println!("crash: {report:?}");
        let (store, _) = open().await.expect("recover");
        let limit = GetLimit {
            count_max: 8,
            bytes_max: 1 << 20,
        };
        let g = store
            .get("T", QueueId(0), QueueOffset(0), limit, &|_| true)
            .await
            .expect("get");
        assert_eq!(g.status, GetStatus::Found);
        let bodies: Vec<Vec<u8>> = g
            .messages
            .iter()
            .map(|m| engine::record::decode(m).expect("decode").body().to_vec())
            .collect();
        assert_eq!(bodies, vec![b"first".to_vec(), b"second".to_vec()]);
    });
}

/// The model itself: a new file (and new directories) survives a crash only by chance until
/// its parent directory is synced, and always after; its synced data goes with its entry.
#[test]
fn sim_disk_entries_are_volatile_until_their_directory_is_synced() {
    use engine::disk::Disk;
    use std::path::Path;
    common::run(|| async {
        let (mut kept, mut dropped) = (0, 0);
        for seed in 0..32 {
            for sync_dirs in [false, true] {
                let disk = SimDisk::new(1 << 30, Rc::new(ManualClock::new(1_000)));
                let file_path = Path::new("/a/b/f");
                disk.create_dir_all(Path::new("/a/b")).expect("mkdir");
                let f = disk.open(file_path).await.expect("create");
                f.write_at(0, b"data").await.expect("write");
                f.sync().await.expect("fdatasync");
                if sync_dirs {
                    for d in ["/", "/a", "/a/b"] {
                        disk.sync_dir(Path::new(d)).await.expect("sync dir");
                    }
                    assert!(disk.unsynced_entries().is_empty());
                }
                let report = disk.crash(&mut SimRng::new(seed));
                let survived = disk.read_whole(file_path);
                if sync_dirs {
                    assert_eq!(report.entries_dropped, 0);
                    let data = survived.expect("a synced entry survives");
                    assert_eq!(&data[..4], b"data");
                } else if let Some(data) = survived {
                    assert_eq!(&data[..4], b"data");
                    kept += 1;
                } else {
                    assert!(report.entries_dropped > 0 && report.files_lost == 1);
                    dropped += 1;
                }
            }
        }
        assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");
    });
}
