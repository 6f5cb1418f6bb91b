//! Helpers for the production-path tests (`crash_metadata`, `shutdown_inflight`, `full_disk`):
//! admin and offset requests, a bounded wait on an observable, SIGKILL without a restart, and
//! a small ext4 on a loop device that is always unmounted and detached.

use std::path::{Path, PathBuf};
use std::process::Command;
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

    /// Bytes available to a writer on the file system now (`df`'s "available").
    pub fn available_bytes(&self) -> Result<u64> {
        let out = run(
            "df",
            &["--output=avail", "-B1", path_str(&self.mount_point())?],
        )?;
        out.lines()
            .nth(1)
            .context("df output")?
            .trim()
            .parse()
            .context("df available")
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
