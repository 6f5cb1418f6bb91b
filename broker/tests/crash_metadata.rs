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
//!   rename), and the broker opens them again.

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
