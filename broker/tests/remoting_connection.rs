//! The connection layer over real loopback sockets, with a small in-test request handler
//! served by `remoting::connection` on a glommio executor.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use broker::remoting::connection::{
    accept_loop, ConnectionCtx, ConnectionLimits, ConnectionTracker, RequestHandler, StopSignal,
};
use broker::remoting::{RemotingCommand, ResponseCode, FRAME_SIZE_MAX_DEFAULT};
use bytes::{Bytes, BytesMut};

const ECHO: i32 = 1;
const SLOW: i32 = 2;
const ASK_CLIENT: i32 = 3;
const SERVER_QUESTION: i32 = 4;
/// Lets every SLOW request (held until then, at most 10 s) answer.
const RELEASE: i32 = 5;

/// SLOW requests wait for a RELEASE (from any connection) rather than for a fixed time, so the
/// order of answers a test expects does not depend on how busy the machine is.
#[derive(Default)]
struct TestHandler {
    released: std::cell::Cell<bool>,
}

impl RequestHandler for TestHandler {
    async fn handle(
        self: &Rc<Self>,
        conn: &Rc<ConnectionCtx>,
        req: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let ok = RemotingCommand::response(ResponseCode::SUCCESS, req.opaque, None);
        match req.code {
            ECHO => Some(ok.with_ext("echo", "yes").with_body(req.body.clone())),
            SLOW => {
                let give_up = Instant::now() + Duration::from_secs(10);
                while !self.released.get() {
                    if Instant::now() > give_up {
                        return Some(RemotingCommand::response(
                            1,
                            req.opaque,
                            Some("never released".into()),
                        ));
                    }
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
                Some(ok)
            }
            RELEASE => {
                self.released.set(true);
                Some(ok)
            }
            ASK_CLIENT => {
                let question = RemotingCommand::request(SERVER_QUESTION);
                match conn.request(question, Duration::from_secs(5)).await {
                    Ok(answer) => Some(ok.with_ext("answer", answer.remark.unwrap_or_default())),
                    Err(e) => Some(RemotingCommand::response(
                        1,
                        req.opaque,
                        Some(e.to_string()),
                    )),
                }
            }
            _ => None,
        }
    }

    fn connection_closed(&self, _conn: &Rc<ConnectionCtx>) {}
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_server(in_flight_max: usize) -> Server {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .preempt_timer(Duration::from_millis(1))
            .spin_before_park(broker::runtime::SPIN_BEFORE_PARK)
            .make()
            .expect("executor");
        ex.run(async move {
            let listener =
                glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback port 0");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let signal = Rc::new(StopSignal::default());
            let s = signal.clone();
            glommio::spawn_local(async move {
                while !stop2.load(Ordering::Acquire) {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                s.stop();
            })
            .detach();
            let tracker = ConnectionTracker::new(0);
            let limits = ConnectionLimits {
                frame_size_max: FRAME_SIZE_MAX_DEFAULT,
                in_flight_max,
                idle_timeout: Duration::from_secs(30),
            };
            accept_loop(
                listener,
                Rc::new(TestHandler::default()),
                tracker.clone(),
                limits,
                signal,
            )
            .await;
            tracker.close_all();
        });
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server started");
    Server {
        addr,
        stop,
        thread: Some(thread),
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    fn send(&mut self, cmd: &RemotingCommand) {
        self.stream.write_all(&cmd.to_frame()).expect("write");
    }

    /// Next frame from the server, or None when it closed the connection.
    fn next(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Some(c) =
                RemotingCommand::decode(&mut self.buf, FRAME_SIZE_MAX_DEFAULT).expect("frame")
            {
                return Some(c);
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

fn req(code: i32, opaque: i32) -> RemotingCommand {
    RemotingCommand::request(code).with_opaque(opaque)
}

#[test]
fn pipelined_requests_are_all_answered_by_opaque() {
    let server = start_server(64);
    let mut c = Client::connect(server.addr);
    let mut batch = BytesMut::new();
    for i in 0..50 {
        req(ECHO, i)
            .with_body(Bytes::from(format!("body-{i}")))
            .encode(&mut batch);
    }
    c.stream.write_all(&batch).expect("write");
    let mut seen = [false; 50];
    for _ in 0..50 {
        let r = c.next().expect("response");
        assert!(r.is_response());
        assert_eq!(r.ext("echo"), Some("yes"));
        let i = usize::try_from(r.opaque).expect("opaque");
        assert_eq!(&r.body[..], format!("body-{i}").as_bytes());
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn oneway_request_gets_no_reply() {
    let server = start_server(64);
    let mut c = Client::connect(server.addr);
    let mut oneway = req(ECHO, 1);
    oneway.mark_oneway();
    c.send(&oneway);
    c.send(&req(ECHO, 2));
    let r = c.next().expect("response");
    assert_eq!(r.opaque, 2, "the oneway request must not be answered");
}

#[test]
fn slow_request_does_not_block_the_next_one_on_the_same_connection() {
    let server = start_server(64);
    let mut c = Client::connect(server.addr);
    c.send(&req(SLOW, 1));
    c.send(&req(ECHO, 2));
    assert_eq!(c.next().expect("response").opaque, 2);
    c.send(&req(RELEASE, 3));
    let mut rest = [c.next().expect("response"), c.next().expect("response")];
    rest.sort_by_key(|r| r.opaque);
    assert_eq!((rest[0].opaque, rest[0].code), (1, ResponseCode::SUCCESS));
    assert_eq!(rest[1].opaque, 3);
}

#[test]
fn requests_over_the_in_flight_bound_get_system_busy() {
    let server = start_server(2);
    let mut c = Client::connect(server.addr);
    c.send(&req(SLOW, 1));
    c.send(&req(SLOW, 2));
    c.send(&req(SLOW, 3));
    let first = c.next().expect("response");
    assert_eq!(first.opaque, 3);
    assert_eq!(first.code, ResponseCode::SYSTEM_BUSY);
    assert!(first.remark.unwrap_or_default().contains("system busy"));
    // The two held requests answer once released from another connection.
    let mut other = Client::connect(server.addr);
    other.send(&req(RELEASE, 9));
    assert_eq!(other.next().expect("release answered").opaque, 9);
    let mut rest = [c.next().expect("r"), c.next().expect("r")];
    rest.sort_by_key(|r| r.opaque);
    assert_eq!(
        rest.iter().map(|r| (r.opaque, r.code)).collect::<Vec<_>>(),
        vec![(1, ResponseCode::SUCCESS), (2, ResponseCode::SUCCESS)]
    );
}

#[test]
fn server_initiated_request_is_matched_with_the_clients_response() {
    let server = start_server(64);
    let mut c = Client::connect(server.addr);
    c.send(&req(ASK_CLIENT, 77));
    let question = c.next().expect("server request");
    assert_eq!(question.code, SERVER_QUESTION);
    assert!(!question.is_response());
    c.send(&RemotingCommand::response(
        0,
        question.opaque,
        Some("forty-two".into()),
    ));
    let r = c.next().expect("response");
    assert_eq!(r.opaque, 77);
    assert_eq!(r.code, ResponseCode::SUCCESS);
    assert_eq!(r.ext("answer"), Some("forty-two"));
}

#[test]
fn malformed_frame_closes_only_that_connection() {
    let server = start_server(64);
    let mut good = Client::connect(server.addr);
    good.send(&req(ECHO, 1));
    assert_eq!(good.next().expect("response").opaque, 1);

    for garbage in [
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0][..], // negative length
        &[0x7f, 0, 0, 0, 0, 0, 0, 2][..],          // over the frame limit
        &[0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x'][..], // JSON header that does not parse
        &[0, 0, 0, 8, 9, 0, 0, 0][..],             // unknown serialize type
        &[0, 0, 0, 8, 1, 0, 0, 4, 0, 1, 0, 0][..], // truncated binary header
    ] {
        let mut bad = Client::connect(server.addr);
        bad.stream.write_all(garbage).expect("write");
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(
            bad.next().is_none(),
            "server must close a connection sending {garbage:?}"
        );
        assert!(Instant::now() < deadline);

        good.send(&req(ECHO, 2));
        assert_eq!(good.next().expect("still served").opaque, 2);
    }
    let mut fresh = Client::connect(server.addr);
    fresh.send(&req(ECHO, 3));
    assert_eq!(
        fresh.next().expect("new connections still served").opaque,
        3
    );
}
