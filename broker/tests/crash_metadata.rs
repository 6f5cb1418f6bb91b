//! The broker's metadata after a SIGKILL, on the real `petrel` binary:
//! - `topics.json` is written before UPDATE_AND_CREATE_TOPIC (and an auto-creating send) is
//!   answered, so every topic and topic update a client saw succeed survives a SIGKILL;
//! - consumer offsets are written by the housekeeping pass (every 5 s, when something changed)
//!   and at shutdown. RocketMQ promises what its own broker does (ConsumerOffsetManager is
//!   persisted every `flushConsumerOffsetInterval`): an offset committed before the last
//!   completed persist survives a crash; one committed after it may come back as the value
//!   before. The test waits for the persist by reading `consumerOffset.json` itself (no blind
//!   sleep), then kills;
//! - both files are valid JSON right after the kill (written through a temp file and a
//!   rename), and the broker opens them again; also when the kill lands in the middle of an
//!   offsets write (the test watches the directory and kills at the first sign of one);
//! - offsets committed just before a SIGTERM are written by the shutdown itself;
//! - a topic auto-created on one shard is in every other shard's `topics.json` once the
//!   creating send is answered (each shard writes it before it re-registers, and the send
//!   waits for the route to list every shard), so a SIGKILL right after the answer keeps the
//!   topic's queues on every shard.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::paths::*;
use common::*;

/// (group, topic, queue) -> offset.
type Offsets = BTreeMap<(String, String, i32), i64>;

/// The offsets `consumerOffset.json` holds now, when it parses and holds every key of `want`
/// with its value; None while it does not (yet).
fn persisted_if_complete(broker: &Broker, want: &Offsets) -> Result<Option<serde_json::Value>> {
    let path = config_dir(broker).join("consumerOffset.json");
    if !path.exists() {
        return Ok(None);
    }
    let file = read_json(&path)?;
    let table = &file["offsetTable"];
    let complete = want.iter().all(|((group, topic, queue), offset)| {
        table[format!("{topic}@{group}")][queue.to_string()].as_i64() == Some(*offset)
    });
    Ok(complete.then_some(file))
}

/// A send that auto-creates a topic on shard 0 of two, then SIGKILL at once: after the restart
/// the nameserver's route of the topic still lists both shards, read from each shard's own
/// `topics.json` (the other shard learned the topic from shard 0, not from a client).
#[test]
fn auto_created_topic_survives_sigkill_on_every_shard() -> Result<()> {
    let mut broker = Broker::start_sharded(2)?;
    let mut c = broker.client()?;
    for i in 0..5 {
        let topic = format!("MetaSpread{i}");
        assert_success(&c.send_message(&topic, 0, b"x", "")?);
        sigkill(&broker)?;
        for shard in 0..2 {
            let path = broker
                .store_dir
                .join(format!("shard-{shard}"))
                .join("config")
                .join("topics.json");
            let file = read_json(&path)?;
            assert!(
                file["topicConfigTable"][&topic].is_object(),
                "round {i}: shard {shard}'s topics.json lacks {topic} right after the \
                 creating send was answered: {file}"
            );
        }
        broker.crash_restart()?;
        let names = route_broker_names(broker.namesrv_addr(), &topic)?;
        assert_eq!(
            names,
            ["test-broker_0", "test-broker_1"],
            "round {i}: the route of {topic} after the restart"
        );
        c = broker.client()?;
    }
    Ok(())
}

/// Topics created and updated through the admin request and a send, and offsets committed and
/// seen persisted, are all there after SIGKILL and a restart on the same store; offsets
/// committed after that persist come back as either value; the files are valid JSON.
#[test]
fn topics_and_persisted_offsets_survive_sigkill() -> Result<()> {
    let mut broker = Broker::start()?;
    let mut c = broker.client()?;
    create_topic(&mut c, "MetaA", 4, 6)?;
    create_topic(&mut c, "MetaB", 2, 6)?;
    // An update: more queues, read-only.
    create_topic(&mut c, "MetaA", 12, 4)?;
    // Auto-created by a send (from TBW102, 4 queues).
    assert_success(&c.send_message("MetaAuto", 0, b"x", "")?);

    let mut first = Offsets::new();
    for (g, group) in ["ga", "gb", "gc"].iter().enumerate() {
        for (topic, queues) in [("MetaA", 12), ("MetaB", 2), ("MetaAuto", 4)] {
            for queue in 0..queues {
                let offset = 1000 * (g as i64 + 1) + 10 * i64::from(queue) + 3;
                commit_offset(&mut c, group, topic, queue, offset)?;
                first.insert((group.to_string(), topic.to_string(), queue), offset);
            }
        }
    }
    let started = Instant::now();
    let persisted = wait_until(
        "consumerOffset.json holding every committed offset",
        Duration::from_secs(30),
        || persisted_if_complete(&broker, &first),
    )?;
    eprintln!(
        "offsets persisted {:?} after the last commit (data version {})",
        started.elapsed(),
        persisted["dataVersion"]
    );

    // Committed after the persist seen above: may or may not make the next one.
    let mut second = Offsets::new();
    for queue in 0..12 {
        commit_offset(&mut c, "ga", "MetaA", queue, 5000 + i64::from(queue))?;
        second.insert(
            ("ga".to_string(), "MetaA".to_string(), queue),
            5000 + i64::from(queue),
        );
    }
    drop(c);

    sigkill(&broker)?;
    let dir = config_dir(&broker);
    let topics_file = read_json(&dir.join("topics.json"))?;
    let table = &topics_file["topicConfigTable"];
    assert_eq!(table["MetaA"]["writeQueueNums"], 12, "{topics_file}");
    assert_eq!(table["MetaA"]["perm"], 4, "{topics_file}");
    assert_eq!(table["MetaB"]["readQueueNums"], 2, "{topics_file}");
    assert!(table["MetaAuto"].is_object(), "{topics_file}");
    read_json(&dir.join("consumerOffset.json"))?;

    broker.crash_restart()?;
    let mut c = broker.client()?;
    let table = topic_table(&mut c)?;
    assert_eq!(table["MetaA"]["readQueueNums"], 12, "{table}");
    assert_eq!(table["MetaA"]["writeQueueNums"], 12, "{table}");
    assert_eq!(table["MetaA"]["perm"], 4, "{table}");
    assert_eq!(table["MetaB"]["writeQueueNums"], 2, "{table}");
    assert_eq!(table["MetaAuto"]["writeQueueNums"], 4, "{table}");
    let pulled = c.pull("g", "MetaAuto", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&pulled);
    assert_eq!(decode_records(&pulled.body)?.len(), 1);

    let mut lost_later = 0;
    for ((group, topic, queue), offset) in &first {
        let got = committed_offset(&mut c, group, topic, *queue)?;
        let key = (group.clone(), topic.clone(), *queue);
        match second.get(&key) {
            None => assert_eq!(
                got,
                Some(*offset),
                "{topic}@{group} queue {queue}: persisted before the kill"
            ),
            Some(later) => {
                assert!(
                    got == Some(*offset) || got == Some(*later),
                    "{topic}@{group} queue {queue}: {got:?}, want {offset} or {later}"
                );
                lost_later += usize::from(got == Some(*offset));
            }
        }
    }
    eprintln!(
        "{} persisted offsets back; {lost_later} of {} commits made after the persist were lost \
         to the kill",
        first.len(),
        second.len()
    );
    Ok(())
}

/// Offsets committed just before a graceful stop are written by the shutdown itself: all of
/// them are back after SIGTERM and a restart, even though no housekeeping pass ran (the
/// restart follows the commits at once, and the file on disk did not hold them before).
#[test]
fn offsets_committed_just_before_sigterm_are_written_at_shutdown() -> Result<()> {
    let mut broker = Broker::start()?;
    let mut c = broker.client()?;
    create_topic(&mut c, "StopTopic", 8, 6)?;
    let mut want = Offsets::new();
    for queue in 0..8 {
        commit_offset(&mut c, "gs", "StopTopic", queue, 700 + i64::from(queue))?;
        want.insert(
            ("gs".into(), "StopTopic".into(), queue),
            700 + i64::from(queue),
        );
    }
    let already = persisted_if_complete(&broker, &want)?.is_some();
    drop(c);
    let status = broker.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "exit {status}");
    let on_disk = persisted_if_complete(&broker, &want)?;
    assert!(
        on_disk.is_some(),
        "consumerOffset.json after SIGTERM lacks offsets (written before the stop: {already}): \
         {:?}",
        std::fs::read_to_string(config_dir(&broker).join("consumerOffset.json"))
    );
    broker.start_again()?;
    let mut c = broker.client()?;
    for ((group, topic, queue), offset) in &want {
        let got = committed_offset(&mut c, group, topic, *queue).context("query")?;
        assert_eq!(got, Some(*offset), "{topic}@{group} queue {queue}");
    }
    Ok(())
}

/// What the watcher looks at in the config directory: the offsets file's identity (inode,
/// size, mtime) and the temp files (name, inode, size) of writes under way or left by a kill.
#[derive(PartialEq)]
struct DirState {
    file: Option<(u64, u64, std::time::SystemTime)>,
    temps: Vec<(String, u64, u64)>,
}

fn offsets_dir_state(dir: &std::path::Path) -> DirState {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::metadata(dir.join("consumerOffset.json"))
        .ok()
        .map(|m| {
            (
                m.ino(),
                m.size(),
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
            )
        });
    let mut temps: Vec<(String, u64, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let m = e.metadata().ok()?;
                    name.starts_with("consumerOffset.json.")
                        .then(|| (name, m.ino(), m.size()))
                })
                .collect()
        })
        .unwrap_or_default();
    temps.sort();
    DirState { file, temps }
}

/// SIGKILL at the first sign of an offsets write (a temp file appearing, or the file itself
/// changing), three times, while a client keeps committing so every housekeeping pass writes
/// a large table: the file left behind is always valid JSON, the broker opens it, and the
/// offsets it answers are the file's. The kill goes through a shell that is already running
/// (`read; kill -KILL`), so it lands within about a hundred microseconds of the sighting.
#[test]
fn sigkill_at_the_moment_offsets_are_written_never_leaves_a_torn_file() -> Result<()> {
    const GROUPS: usize = 300;
    const QUEUES: i32 = 16;
    let mut broker = Broker::start()?;
    {
        let mut c = broker.client()?;
        create_topic(&mut c, "TornTopic", QUEUES, 6)?;
        commit_offset(&mut c, "g0", "TornTopic", 0, 1)?;
    }
    let dir = config_dir(&broker);
    // A first version of the file exists before any kill.
    wait_until("the first offsets file", Duration::from_secs(30), || {
        Ok(dir.join("consumerOffset.json").exists().then_some(()))
    })?;
    let mut mid_write = 0;
    for round in 0..3i64 {
        let pid = broker.pid().context("pid")?;
        let mut killer = std::process::Command::new("sh")
            .args(["-c", &format!("read _ && kill -KILL {pid}")])
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        let mut c = broker.client()?;
        let committer = std::thread::spawn(move || {
            // Until the kill closes the connection.
            let mut n = 0i64;
            loop {
                let group = format!("g{}", n % GROUPS as i64);
                let queue = i32::try_from(n % i64::from(QUEUES)).unwrap_or(0);
                if commit_offset(&mut c, &group, "TornTopic", queue, round * 1_000_000 + n).is_err()
                {
                    return n;
                }
                n += 1;
            }
        });
        let before = offsets_dir_state(&dir);
        let until = Instant::now() + Duration::from_secs(20);
        let saw_tmp = loop {
            let now = offsets_dir_state(&dir);
            if now != before {
                break now.temps != before.temps;
            }
            if Instant::now() > until {
                let _ = killer.kill();
                anyhow::bail!("round {round}: no offsets write within 20 s");
            }
        };
        std::io::Write::write_all(killer.stdin.as_mut().context("stdin")?, b"go\n")?;
        killer.wait()?;
        sigkill(&broker)?; // already dead: waits until it is
        let commits = committer
            .join()
            .map_err(|_| anyhow::anyhow!("committer panicked"))?;
        let file = read_json(&dir.join("consumerOffset.json"))
            .with_context(|| format!("round {round}: after a kill mid-write"))?;
        let strays = std::fs::read_dir(&dir)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .count();
        mid_write += usize::from(saw_tmp);
        eprintln!(
            "round {round}: killed at a {} after {commits} commits; file valid (data version \
             {}); {strays} temp files left",
            if saw_tmp {
                "temp file"
            } else {
                "change of the file"
            },
            file["dataVersion"]
        );
        broker.crash_restart()?;
        let mut c = broker.client()?;
        for (key, queues) in file["offsetTable"]
            .as_object()
            .context("offsetTable")?
            .iter()
            .take(20)
        {
            let group = key.strip_prefix("TornTopic@").context("key")?;
            for (queue, offset) in queues.as_object().context("queues")? {
                let got = committed_offset(&mut c, group, "TornTopic", queue.parse()?)?;
                assert_eq!(
                    got,
                    offset.as_i64(),
                    "{key} queue {queue}: the file's value"
                );
            }
        }
    }
    eprintln!("{mid_write} of 3 kills landed while a temp file existed");
    Ok(())
}
