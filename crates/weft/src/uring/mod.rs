//! The io_uring driver (Linux, feature `uring`): the same engine and the same tokio driver,
//! with the bytes moved by an io_uring ring instead of `read`/`write` system calls.
//!
//! A [`Uring`] is one ring and the task that drives it, on a tokio runtime (a current-thread
//! runtime per core is the intended layout: `weft::server`'s [`Model::Uring`]). Streams made
//! by [`Uring::stream`] queue their receives and sends on the ring; the driver submits
//! everything one turn of the runtime queued in one `io_uring_enter` and reaps completions
//! from the ring's shared memory, so a thread enters the kernel once per turn for all of its
//! connections instead of once per read and once per write of each. [`UringStream`] is a
//! tokio `AsyncRead + AsyncWrite`: [`crate::tokio::WebSocket`], hyper and `weft::server`
//! run on it unchanged — no protocol logic lives here. A WebSocket on it can also read and
//! write with the engine's own buffers, no copy of a large message
//! ([`crate::tokio::WebSocket::with_ring_buffers`]; `weft::server` does this itself).
//!
//! A [`Hub`] is the other way to use io_uring: a WebSocket server on one thread whose ring
//! owns the connections and calls the application back ([`App`]), with no tokio runtime,
//! task or stream per connection: the least CPU per message, for a server that only speaks
//! WebSocket and whose callbacks do not block.
//!
//! Where io_uring is missing or forbidden (old kernels, seccomp profiles, sysctl
//! `kernel.io_uring_disabled`), [`Uring::start`] fails; [`probe`] says so up front, and
//! `weft::server` falls back to the tokio driver with one log line.
//!
//! ```no_run
//! # async fn run() -> weft::Result<()> {
//! let uring = weft::uring::Uring::start()?;
//! let tcp = std::net::TcpStream::connect("127.0.0.1:9001")?;
//! let (mut ws, _) = weft::tokio::connect("ws://127.0.0.1:9001/", uring.stream(tcp)?).await?;
//! ws.send("hello").await?;
//! # Ok(()) }
//! ```
//!
//! [`Model::Uring`]: crate::server::Model::Uring

pub mod hub;
#[allow(unsafe_code)]
mod owned;
#[allow(unsafe_code)]
mod ring;
mod stream;

pub use hub::{App, ConnId, Ctx, Handle, Hub, Stopper};
pub use stream::{UringStream, WRITE_ROOM};

use ring::Ring;
use std::io;
use std::sync::Arc;

/// How many submission entries a ring has (the completion queue has twice as many; more
/// operations than that may be in flight: the kernel keeps the overflow).
const ENTRIES: u32 = 1024;

/// One io_uring ring and its driver task; cheap to clone (all clones share the ring).
#[derive(Clone, Debug)]
pub struct Uring {
    ring: Arc<Ring>,
}

impl Uring {
    /// Sets up a ring and spawns the task that drives it on the current tokio runtime
    /// (call it from inside one; it panics outside a runtime, as `tokio::spawn` does).
    /// Fails where io_uring is missing or forbidden.
    ///
    /// Receives are multishot ones on a pool of provided buffers per ring where the kernel
    /// has them (6.0+), else single-shot ones into each stream's own buffer (a debug log
    /// line says which). The environment variable `WEFT_URING_RECV=single` asks for
    /// single-shot receives (for comparisons); see also [`start_with`](Self::start_with).
    pub fn start() -> io::Result<Uring> {
        let single = std::env::var_os("WEFT_URING_RECV").is_some_and(|v| v == "single");
        Uring::start_with(!single)
    }

    /// [`start`](Self::start), saying whether receives may be multishot ones
    /// (`multishot: false`: always single-shot, whatever the kernel has).
    ///
    /// On a current-thread runtime the ring is set up for cooperative task running (the
    /// kernel posts completions when the thread next enters it, not by interrupting it):
    /// measured 7% less server CPU per echo at 64 connections × 16 B. On a multi-thread
    /// runtime it is not, since the thread that submitted could be busy with other tasks.
    pub fn start_with(multishot: bool) -> io::Result<Uring> {
        Uring::start_sized(multishot, ENTRIES)
    }

    /// [`start_with`](Self::start_with) with a submission queue of `entries` (a power of
    /// two), for tests of what happens when it fills.
    #[doc(hidden)]
    pub fn start_sized(multishot: bool, entries: u32) -> io::Result<Uring> {
        let coop = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        let ring = Arc::new(Ring::new(entries, multishot, coop)?);
        let driver = ring::drive(ring.clone())?;
        tokio::spawn(driver);
        Ok(Uring { ring })
    }

    /// Moves a connected TCP stream onto the ring (a tokio stream: see
    /// [`stream_from_tokio`](Self::stream_from_tokio)).
    pub fn stream(&self, tcp: std::net::TcpStream) -> io::Result<UringStream> {
        UringStream::new(tcp, self.ring.clone())
    }

    /// Moves a tokio TCP stream onto the ring (it leaves the runtime's epoll).
    pub fn stream_from_tokio(&self, tcp: tokio::net::TcpStream) -> io::Result<UringStream> {
        self.stream(tcp.into_std()?)
    }

    /// Whether the ring was set up for cooperative task running (see
    /// [`start_with`](Self::start_with)), for tests.
    #[doc(hidden)]
    pub fn cooperative(&self) -> bool {
        self.ring.cooperative()
    }

    /// How many receives went straight into an engine's read room, and how many sends
    /// went out from the engine's own `Bytes` (`sendmsg`), on this ring so far: for tests
    /// ([`WebSocket::with_ring_buffers`](crate::tokio::WebSocket::with_ring_buffers)).
    #[doc(hidden)]
    pub fn ring_buffer_counts(&self) -> (u64, u64) {
        self.ring.ring_buffer_counts()
    }

    /// Sets the period of the ring's idle sweep: a receive into a WebSocket's read room
    /// that waits one to two periods is cancelled, and its connection receives from the
    /// pool until data comes again (default 1 s; `None`: never). For tests; no effect on a
    /// ring without a pool.
    #[doc(hidden)]
    pub fn set_idle_after(&self, after: Option<std::time::Duration>) {
        self.ring.set_idle_after(after);
    }

    /// How many large payloads, once sent from the engine's own `Bytes`, went back to
    /// their engine to take its next read (`Connection::recycle`), for tests.
    #[doc(hidden)]
    pub fn recycled_count(&self) -> u64 {
        self.ring.recycled_count()
    }

    /// How many receives into a read room the idle sweep cancelled, for tests.
    #[doc(hidden)]
    pub fn idle_count(&self) -> u64 {
        self.ring.idle_count()
    }

    /// The provided-buffer pool's state, for tests: its free buffers (in the kernel's
    /// hands, not queued for a reader), its size, and how many multishot receives ended
    /// because it was empty. `None` without a pool (single-shot receives).
    #[doc(hidden)]
    pub fn pool_state(&self) -> Option<(usize, usize, u64)> {
        self.ring.pool_state()
    }
}

/// Whether io_uring works here: `Ok` if a ring can be set up, else the reason.
pub fn probe() -> io::Result<()> {
    Ring::new(2, false, false).map(drop)
}
