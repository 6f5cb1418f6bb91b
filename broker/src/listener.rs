//! Listening sockets: bound with SO_REUSEADDR (a restart rebinds over TIME_WAIT sockets) and
//! without SO_REUSEPORT (a port another process holds is refused, not shared), then handed to
//! glommio.
//!
//! The runtime binds every listener of the process on the main thread, before any executor
//! starts: a taken port fails the start at once, and the embedded nameserver accepts
//! connections (into its backlog) before any shard tries to register. Each executor then takes
//! its own socket with [`into_glommio`].

use std::net::SocketAddr;

/// Listen backlog (glommio's own `bind` uses the same).
const BACKLOG: i32 = 1024;
/// How long a bind that finds its port in use keeps trying: a previous process's listener can
/// outlive that process by a few milliseconds, while the kernel tears down its io_uring (seen
/// in a restart right after SIGKILL).
pub const BIND_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(3);
/// Pause between two such tries.
const BIND_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// A listener that could not be opened.
#[derive(thiserror::Error, Debug)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Bind and listen on `addr`, from any thread (blocking: a port in use is retried for up to
/// [`BIND_RETRY_MAX`]). Call before the executors start.
pub fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
    let started = std::time::Instant::now();
    loop {
        match bind_once(addr) {
            Err(e)
                if e.source.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < BIND_RETRY_MAX =>
            {
                std::thread::sleep(BIND_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

fn bind_once(addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
    let bind = || -> std::io::Result<std::net::TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|source| ListenError { addr, source })
}

/// Bind `addr` (once, no retry: this runs on an executor) and hand it to the current glommio
/// executor. Call inside an executor.
pub fn bind_listener(addr: SocketAddr) -> Result<glommio::net::TcpListener, ListenError> {
    bind_once(addr).map(into_glommio)
}

/// Hand a bound listener to the current glommio executor. Call inside an executor.
pub fn into_glommio(listener: std::net::TcpListener) -> glommio::net::TcpListener {
    fd::tcp_listener(listener)
}

/// The one `unsafe` block here: handing a listening socket to glommio.
#[allow(unsafe_code)]
mod fd {
    use std::os::fd::{FromRawFd, IntoRawFd};

    pub(super) fn tcp_listener(listener: std::net::TcpListener) -> glommio::net::TcpListener {
        let fd = listener.into_raw_fd();
        // SAFETY: `fd` is a bound, listening TCP socket that we own (`into_raw_fd` gave up
        // ownership); glommio takes it over and closes it when the listener drops.
        unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
    }
}
