//! The `petrel` binary's configuration handling, run as a real process: invalid values exit
//! with code 2, unknown keys warn and the broker starts (embedded nameserver, registration,
//! graceful SIGTERM shutdown).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use broker::remoting::{RemotingCommand, RequestCode, ResponseCode, FRAME_SIZE_MAX_DEFAULT};
use bytes::BytesMut;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn petrel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_petrel"));
    c.env_remove("NAMESRV_ADDR").env("RUST_LOG", "info");
    c
}

#[path = "common/ports.rs"]
mod ports;

/// A port p with p and p+1 free (two shards), and another free port for the nameserver.
fn free_ports() -> (u16, u16) {
    let p = ports::free_port_pair().expect("two free loopback ports");
    let ns = ports::free_port().expect("a free loopback port");
    (p, ns)
}

fn run_to_exit(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run petrel");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_value_in_broker_conf_exits_with_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, "brokerName=b\nflushDiskType=SOMETIMES\n").expect("write conf");
    let (code, stderr) = run_to_exit(petrel().arg("-c").arg(&conf));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("flushDiskType"), "{stderr}");
    assert!(stderr.contains("SYNC_FLUSH or ASYNC_FLUSH"), "{stderr}");
}

#[test]
fn invalid_flag_value_and_missing_file_exit_with_code_2() {
    let (code, stderr) = run_to_exit(petrel().args(["--listen-port", "notaport"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("listenPort"), "{stderr}");

    let (code, stderr) = run_to_exit(petrel().args(["-o", "maxMessageSize=-1"]));
    assert_eq!(code, Some(2), "{stderr}");

    let (code, stderr) = run_to_exit(petrel().args(["-c", "/nonexistent/broker.conf"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/broker.conf"), "{stderr}");

    let (code, stderr) = run_to_exit(petrel().env("NAMESRV_ADDR", "no-port-here"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("NAMESRV_ADDR"), "{stderr}");
}

fn call(port: u16, req: RemotingCommand) -> RemotingCommand {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&req.to_frame()).expect("write");
    let mut buf = BytesMut::new();
    loop {
        if let Some(r) = RemotingCommand::decode(&mut buf, FRAME_SIZE_MAX_DEFAULT).expect("frame") {
            return r;
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Running {
    proc: Proc,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Running {
    fn start(conf: &std::path::Path) -> Running {
        let mut child = petrel()
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn petrel");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            proc: Proc(child),
            lines: rx,
            log: Vec::new(),
        }
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(_) => panic!(
                    "no log line containing {needle:?}; got:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let pid = self.proc.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(s) = self.proc.0.try_wait().expect("wait") {
                break s.code();
            }
            assert!(Instant::now() < deadline, "petrel did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Every line the process wrote, up to its end of stderr (the reader thread then drops
        // its sender), not just those that happen to arrive within a quiet period.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("petrel's stderr still open 20 s after it exited")
                }
            }
        }
        code
    }
}

fn wait_registered(ns_port: u16, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(
            ns_port,
            RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO),
        );
        assert_eq!(r.code, ResponseCode::SUCCESS);
        let text = String::from_utf8(r.body.to_vec()).expect("utf8");
        if text.contains(r#""TestCluster":["cfg_0","cfg_1"]"#) {
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
            return;
        }
        assert!(Instant::now() < deadline, "shards did not register: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unknown_key_warns_and_broker_runs_registers_stops_on_sigterm_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, ns_port) = free_ports();
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "brokerClusterName=TestCluster\nbrokerName=cfg\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\n\
             listenPort={port}\nnamesrvListenPort={ns_port}\nshards=2\nstorePathRootDir={}\n\
             maxMessageSize=1048576\nmappedFileSizeCommitLog=4194304\nthisKeyDoesNotExist=1\n",
            dir.path().join("store").display()
        ),
    )
    .expect("write conf");

    // Twice on the same ports: a restart right after a stop must rebind (TIME_WAIT sockets).
    for round in 0..2 {
        let mut run = Running::start(&conf);
        run.wait_for("unknown key thisKeyDoesNotExist");
        run.wait_for(&format!("listening on 127.0.0.1:{ns_port}"));
        run.wait_for(&format!("listening on 127.0.0.1:{port}"));
        run.wait_for(&format!("listening on 127.0.0.1:{}", port + 1));
        wait_registered(ns_port, port);
        let r = call(
            ns_port,
            RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
                .with_ext("topic", "TBW102"),
        );
        assert_eq!(r.code, ResponseCode::SUCCESS, "round {round}");
        let code = run.terminate();
        assert_eq!(code, Some(0), "round {round}: {}", run.log.join("\n"));
        let stopped = run
            .log
            .iter()
            .filter(|l| l.contains("stopped (store flushed"))
            .count();
        assert_eq!(stopped, 2, "round {round}: {}", run.log.join("\n"));
    }
}
