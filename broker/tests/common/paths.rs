//! Helpers for the production-path tests (`crash_metadata`, `shutdown_inflight`, `full_disk`):
//! admin and offset requests, a bounded wait on an observable, SIGKILL without a restart, and
//! a small ext4 on a loop device that is always unmounted and detached.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};

use super::{assert_success, code_of, Broker, Client};

/// UPDATE_AND_CREATE_TOPIC with `queues` read and write queues and `perm`.
pub fn create_topic(c: &mut Client, topic: &str, queues: i32, perm: i32) -> Result<()> {
    let r = c.request(
        RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC)
            .with_ext("topic", topic)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("readQueueNums", queues)
            .with_ext("writeQueueNums", queues)
            .with_ext("perm", perm)
            .with_ext("topicFilterType", "SINGLE_TAG")
            .with_ext("topicSysFlag", 0)
            .with_ext("order", "false"),
    )?;
    assert_success(&r);
    Ok(())
}

/// GET_ALL_TOPIC_CONFIG's `topicConfigTable`.
pub fn topic_table(c: &mut Client) -> Result<serde_json::Value> {
    let r = c.request(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_CONFIG))?;
    assert_success(&r);
    let v: serde_json::Value = serde_json::from_slice(&r.body).context("topic table JSON")?;
    Ok(v["topicConfigTable"].clone())
}

/// UPDATE_CONSUMER_OFFSET, answered.
pub fn commit_offset(
    c: &mut Client,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<()> {
    let r = c.request(
        RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET)
            .with_ext("consumerGroup", group)
            .with_ext("topic", topic)
            .with_ext("queueId", queue_id)
            .with_ext("commitOffset", offset),
    )?;
    assert_success(&r);
    Ok(())
}

/// QUERY_CONSUMER_OFFSET without the zero default: the committed offset, or None.
pub fn committed_offset(
    c: &mut Client,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>> {
    let r = c.request(
        RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET)
            .with_ext("consumerGroup", group)
            .with_ext("topic", topic)
            .with_ext("queueId", queue_id)
            .with_ext("setZeroIfNotFound", "false"),
    )?;
    match r.code {
        ResponseCode::QUERY_NOT_FOUND => Ok(None),
        ResponseCode::SUCCESS => Ok(Some(
            r.ext("offset")
                .context("offset field")?
                .parse()
                .context("offset")?,
        )),
        _ => bail!("query offset: {}", code_of(&r)),
    }
}

/// Calls `probe` every 20 ms until it gives a value; fails after `deadline` naming `what`.
pub fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > until {
            bail!("{what}: not seen within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs the broker's process and waits until it is dead (a zombie or gone), without
/// restarting it: the test can look at the files exactly as the kill left them. Restart with
/// `crash_restart`.
pub fn sigkill(broker: &Broker) -> Result<()> {
    let pid = broker.pid().context("broker not running")?;
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -KILL {pid} failed");
    }
    wait_until("the killed broker's exit", Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last ')'.
        let state = stat.rsplit(')').next().map(str::trim_start);
        Ok(match state {
            None | Some("") => Some(()),
            Some(s) if s.starts_with('Z') || s.starts_with('X') => Some(()),
            Some(_) => None,
        })
    })
}

/// Shard 0's metadata directory (`<store>/shard-0/config`).
pub fn config_dir(broker: &Broker) -> PathBuf {
    broker.store_dir.join("shard-0").join("config")
}

/// Reads and parses a JSON file; an error names the file and shows a torn or invalid text.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not valid JSON ({} bytes): {:?}",
            path.display(),
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })
}

/// Why a loop-device test cannot run here, if it cannot (not root, no loop devices, no tools).
pub fn loop_device_unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
    if uid != "0" {
        return Some(format!("not root (uid {uid}): cannot set up a loop device"));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control: no loop devices on this machine".to_string());
    }
    for tool in ["losetup", "mkfs.ext4", "mount", "umount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

/// A small ext4 file system in an image file on /var/tmp, attached to a loop device and mounted.
/// Dropping it unmounts, detaches and deletes everything, also when the test failed.
pub struct LoopMount {
    dir: tempfile::TempDir,
    device: Option<String>,
    is_mounted: bool,
}

impl LoopMount {
    /// Creates a `size_mib` MiB ext4 (no reserved blocks) and mounts it.
    pub fn create(size_mib: u64) -> Result<LoopMount> {
        let dir = tempfile::Builder::new()
            .prefix("petrel-full-disk-")
            .tempdir_in("/var/tmp")
            .context("temp dir on /var/tmp")?;
        let mut mount = LoopMount {
            dir,
            device: None,
            is_mounted: false,
        };
        let image = mount.image();
        let mnt = mount.mount_point();
        std::fs::create_dir(&mnt)?;
        run(
            "truncate",
            &["-s", &format!("{size_mib}M"), path_str(&image)?],
        )?;
        run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", "-E", "nodiscard", path_str(&image)?],
        )?;
        let device = run("losetup", &["--find", "--show", path_str(&image)?])?;
        let device = device.trim().to_string();
        if device.is_empty() {
            bail!("losetup printed no device");
        }
        mount.device = Some(device.clone());
        run("mount", &["-t", "ext4", &device, path_str(&mnt)?])?;
        mount.is_mounted = true;
        Ok(mount)
    }

    /// Where the file system is mounted.
    pub fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    /// The file system's size and used bytes now (`df`; used / size is the ratio the broker
    /// compares with its thresholds).
    pub fn usage(&self) -> Result<(u64, u64)> {
        let out = run(
            "df",
            &["--output=size,used", "-B1", path_str(&self.mount_point())?],
        )?;
        let line = out.lines().nth(1).context("df output")?;
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(size)), Some(Ok(used))) => Ok((size, used)),
            _ => bail!("df output {line:?}"),
        }
    }

    /// Fills the file system with a ballast file until `used / size` is about `ratio`;
    /// returns the ballast's path (delete it to free the space).
    pub fn fill_to_ratio(&self, ratio: f64) -> Result<PathBuf> {
        let (size, used) = self.usage()?;
        let want = (ratio * size as f64) as u64;
        let bytes = want.saturating_sub(used) / 4096 * 4096;
        let path = self.mount_point().join("ballast");
        run("fallocate", &["-l", &bytes.to_string(), path_str(&path)?])?;
        Ok(path)
    }

    /// A ballast file `ballast-<n>` of `bytes` (fallocated); returns its path.
    pub fn ballast(&self, n: usize, bytes: u64) -> Result<PathBuf> {
        let path = self.mount_point().join(format!("ballast-{n}"));
        run("fallocate", &["-l", &bytes.to_string(), path_str(&path)?])?;
        Ok(path)
    }

    /// Fills the file system with a ballast file until about `free` bytes are left.
    pub fn fill_leaving(&self, free: u64) -> Result<PathBuf> {
        let (size, used) = self.usage()?;
        self.fill_to_ratio(size.saturating_sub(free).max(used) as f64 / size as f64)
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let mnt = self.mount_point();
        if self.is_mounted {
            // A process still using the mount (a broker the test did not stop) would make a
            // plain umount fail: fall back to a lazy one so the device can still go.
            if run("umount", &[&mnt.to_string_lossy()]).is_err() {
                let _ = run("umount", &["-l", &mnt.to_string_lossy()]);
            }
        }
        if let Some(device) = self.device.take() {
            if let Err(e) = run("losetup", &["-d", &device]) {
                eprintln!("could not detach {device}: {e:#}");
            }
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A queue's min or max offset (GET_MIN_OFFSET / GET_MAX_OFFSET).
pub fn queue_offset(c: &mut Client, code: i32, topic: &str, queue_id: i32) -> Result<i64> {
    let r = c.request(
        RemotingCommand::request(code)
            .with_ext("topic", topic)
            .with_ext("queueId", queue_id),
    )?;
    assert_success(&r);
    Ok(super::ext_i64(&r, "offset"))
}

/// Every record of `topic`'s queue from its min offset to its max offset, pulled 32 at a
/// time; fails on a gap.
pub fn pull_all(c: &mut Client, topic: &str, queue_id: i32) -> Result<Vec<super::Record>> {
    let max = queue_offset(c, RequestCode::GET_MAX_OFFSET, topic, queue_id)?;
    let mut next = queue_offset(c, RequestCode::GET_MIN_OFFSET, topic, queue_id)?;
    let mut out = Vec::new();
    while next < max {
        let r = c.pull(
            "pull-all",
            topic,
            queue_id,
            next,
            super::PULL_FLAG_SUBSCRIPTION,
            "*",
            0,
        )?;
        if r.code != ResponseCode::SUCCESS {
            bail!(
                "pull {topic}:{queue_id} at {next} of {max}: {}",
                code_of(&r)
            );
        }
        let records = super::decode_records(&r.body)?;
        let Some(first) = records.first() else {
            bail!("pull {topic}:{queue_id} at {next} of {max}: no records");
        };
        if i64::try_from(first.queue_offset)? != next {
            bail!(
                "pull {topic}:{queue_id} at {next}: first record at {}",
                first.queue_offset
            );
        }
        next += i64::try_from(records.len())?;
        out.extend(records);
    }
    Ok(out)
}

/// A SEND_MESSAGE_V2 request (not sent).
pub fn send_request(topic: &str, queue_id: i32, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request(RequestCode::SEND_MESSAGE_V2)
        .with_ext("a", "paths-producer")
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", queue_id)
        .with_ext("f", 0)
        .with_ext("g", super::now_ms())
        .with_ext("h", 0)
        .with_ext("i", "")
        .with_ext("j", 0)
        .with_ext("k", "false")
        .with_body(bytes::Bytes::copy_from_slice(body))
}

/// A send the broker answered SEND_OK (SUCCESS): where it says the record is.
#[derive(Clone, Debug)]
pub struct Acked {
    pub queue_id: i32,
    pub queue_offset: i64,
    pub body: Vec<u8>,
}

/// What one pipelining sender saw.
#[derive(Debug, Default)]
pub struct SenderReport {
    pub acked: Vec<Acked>,
    /// Non-SUCCESS answers by response code.
    pub refused: BTreeMap<i32, usize>,
    /// Requests written but never answered because the broker closed the connection.
    pub unanswered_at_close: usize,
    /// Whether the connection ended by the broker closing it (or resetting it).
    pub was_closed: bool,
}

/// Keeps `depth` SEND_MESSAGE_V2 requests in flight on its own connection until the broker
/// closes the connection, counting each SUCCESS in `acked_count`. A request that gets neither
/// an answer nor a close within `hang_after` is an error (a hang).
pub fn pipelined_sender(
    addr: std::net::SocketAddr,
    topic: &str,
    queues: i32,
    conn: usize,
    depth: usize,
    hang_after: Duration,
    acked_count: &AtomicUsize,
) -> Result<SenderReport> {
    let mut c = Client::connect(addr)?;
    let mut report = SenderReport::default();
    let mut outstanding: HashMap<i32, (i32, Vec<u8>)> = HashMap::new();
    let mut seq = 0u64;
    loop {
        while outstanding.len() < depth {
            let queue_id = i32::try_from(seq % u64::try_from(queues)?)?;
            let body = format!("conn {conn} seq {seq}").into_bytes();
            seq += 1;
            match c.send(send_request(topic, queue_id, &body)) {
                Ok(opaque) => {
                    outstanding.insert(opaque, (queue_id, body));
                }
                Err(_) => break, // the broker closed the connection: the read below sees it
            }
        }
        let frame = match c.read_frame(hang_after) {
            Ok(Some(frame)) => frame,
            Ok(None) => bail!(
                "conn {conn}: {} requests neither answered nor closed within {hang_after:?}",
                outstanding.len()
            ),
            Err(_) => {
                report.was_closed = true;
                report.unanswered_at_close = outstanding.len();
                return Ok(report);
            }
        };
        if !frame.is_response() {
            continue;
        }
        let Some((queue_id, body)) = outstanding.remove(&frame.opaque) else {
            bail!("conn {conn}: answer to unknown opaque {}", frame.opaque);
        };
        if frame.code == ResponseCode::SUCCESS {
            let queue_offset = super::ext_i64(&frame, "queueOffset");
            assert_eq!(super::ext_i64(&frame, "queueId"), i64::from(queue_id));
            report.acked.push(Acked {
                queue_id,
                queue_offset,
                body,
            });
            acked_count.fetch_add(1, Ordering::Relaxed);
        } else {
            *report.refused.entry(frame.code).or_default() += 1;
        }
    }
}

/// Checks that every acknowledged send is in `topic` at the queue and offset its answer named,
/// with its body; returns how many records the topic holds.
pub fn assert_all_acked_present(
    c: &mut Client,
    topic: &str,
    queues: i32,
    acked: &[Acked],
) -> Result<usize> {
    let mut stored: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
    for q in 0..queues {
        for r in pull_all(c, topic, q)? {
            stored.insert((q, i64::try_from(r.queue_offset)?), r.body);
        }
    }
    let mut missing = Vec::new();
    for a in acked {
        match stored.get(&(a.queue_id, a.queue_offset)) {
            Some(body) if *body == a.body => {}
            other => missing.push(format!(
                "{:?} at {}:{} (found {:?})",
                String::from_utf8_lossy(&a.body),
                a.queue_id,
                a.queue_offset,
                other.map(|b| String::from_utf8_lossy(b).into_owned())
            )),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} of {} acknowledged sends missing after the restart, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
    Ok(stored.len())
}
