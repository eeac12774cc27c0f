//! What the echo servers share (this file is also compiled into bench/zlib-peers'): the command line, the accept loop on a current-thread
//! tokio runtime, and a counting global allocator for the idle-memory benchmark.
//!
//! The server stacks (`echo-axum`, `echo-weft-server`) also answer a plain `GET /` (no
//! upgrade) with 200 `ok`, as `http-hyper` (bare hyper, no WebSocket) does, for the HTTP
//! requests/s benchmark (`httpload`). They take the same flags.
//!
//! Every server takes:
//!
//! - `--addr HOST:PORT` (default 127.0.0.1:9001);
//! - `--heap-file PATH`: count heap allocations from the start, and on each `SIGUSR1` write
//!   a line `live_bytes=N live_allocs=N peak_bytes=N total_allocs=N` to PATH, then one line
//!   `size_upto=S live=N` per allocation size class (16-byte classes up to 64 KiB) holding
//!   live blocks (written to `PATH.tmp`, then renamed, so a reader never sees half a file). Without it the
//!   allocator only pays one relaxed load per call and the servers install no signal handler.
//! - `--verbose`: print each connection's error (by default they are dropped: a load
//!   generator that exits resets hundreds of connections at once).
//! - `--deflate`: accept permessage-deflate (RFC 7692) when a client offers it, with
//!   weft's defaults: 15-bit windows, context takeover unless the client asks otherwise,
//!   zlib level 1 (the servers whose library supports it: `echo-weft`, `echo-yawc`,
//!   `echo-ratchet`; the others refuse the flag). `--deflate-nct`: the same for clients
//!   that ask for no context takeover (only `echo-ratchet` needs to be told: see there).
//!   `echo-weft` also takes `--deflate-level N` (zlib level, default 1) and
//!   `--deflate-window-bits N` (8-15: the server's window and the most it allows the
//!   client's; default 15), for the settings comparison.
//!
//! `echo-weft-server` also takes `--model current-thread|multi-thread|per-core|blocking`
//! (weft::server's threading model; default current-thread) and `--threads N` (the
//! workers of multi-thread and per-core; default one per CPU). It runs weft::server's own
//! listener and accept loop, so of this file it uses [`prepare`] (command line, descriptor
//! limit, heap counting) and [`spawn_heap_reporter`] (the `SIGUSR1` report, on a thread of
//! its own, since the server builds its runtimes itself).
//!
//! `echo-weft` also takes `--corrupt-every N` (flip one byte of every Nth echoed payload),
//! the test mode that shows the load generator's checks can fail, and, for experiments,
//! `--read-buffer-size BYTES` (the engine's `Config::read_buffer_size`; the benchmark runs
//! weft's default).

use futures_util::FutureExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// The limit on incoming messages (and frames) every server is given: 64 MiB, the peers'
/// default; the benchmark's largest message is 64 KiB and the codec's 1 MiB.
pub const MAX_MESSAGE: usize = 64 << 20;

/// The global allocator: `System`, counting live bytes once `--heap-file` switched it on.
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);
static PEAK_BYTES: AtomicIsize = AtomicIsize::new(0);
static TOTAL_ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Live allocations by size: bucket i holds sizes in (16(i-1), 16i]; the last, everything
/// larger than 64 KiB.
const BUCKETS: usize = 4098;
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicIsize = AtomicIsize::new(0);
static LIVE_BY_SIZE: [AtomicIsize; BUCKETS] = [ZERO; BUCKETS];

#[inline]
fn bucket(size: usize) -> usize {
    size.div_ceil(16).min(BUCKETS - 1)
}

#[inline]
fn count_size(size: usize, n: isize) {
    LIVE_BY_SIZE[bucket(size)].fetch_add(n, Relaxed);
}

#[inline]
fn count(bytes: isize, allocs: isize) {
    let live = LIVE_BYTES.fetch_add(bytes, Relaxed) + bytes;
    LIVE_ALLOCS.fetch_add(allocs, Relaxed);
    if allocs > 0 {
        TOTAL_ALLOCS.fetch_add(1, Relaxed);
    }
    if live > PEAK_BYTES.load(Relaxed) {
        PEAK_BYTES.store(live, Relaxed);
    }
}

// Frees of blocks allocated before counting started would make the count negative; counting
// starts first thing in `main`, before any allocation of note, so the error is a few bytes.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() && COUNTING.load(Relaxed) {
            count(layout.size() as isize, 1);
            count_size(layout.size(), 1);
        }
        p
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() && COUNTING.load(Relaxed) {
            count(layout.size() as isize, 1);
            count_size(layout.size(), 1);
        }
        p
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if COUNTING.load(Relaxed) {
            count(-(layout.size() as isize), -1);
            count_size(layout.size(), -1);
        }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() && COUNTING.load(Relaxed) {
            count(new_size as isize - layout.size() as isize, 0);
            count_size(layout.size(), -1);
            count_size(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The heap counters now: (live bytes, live allocations, peak bytes, allocations so far).
pub fn heap_stats() -> (isize, isize, isize, usize) {
    (
        LIVE_BYTES.load(Relaxed),
        LIVE_ALLOCS.load(Relaxed),
        PEAK_BYTES.load(Relaxed),
        TOTAL_ALLOCS.load(Relaxed),
    )
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub addr: SocketAddr,
    pub heap_file: Option<PathBuf>,
    pub verbose: bool,
    /// `echo-weft` only: corrupt every Nth echoed payload (0: never).
    pub corrupt_every: u64,
    /// `echo-weft` only, for experiments: the engine's `read_buffer_size` (default: weft's).
    pub read_buffer_size: Option<usize>,
    /// Accept permessage-deflate.
    pub deflate: bool,
    /// Accept permessage-deflate from clients that ask for no context takeover.
    pub deflate_nct: bool,
    /// `echo-weft` only: `DeflateConfig::level` (default weft's, 1).
    pub deflate_level: Option<u32>,
    /// `echo-weft` only: `DeflateConfig::{server,client}_max_window_bits` (default 15).
    pub deflate_window_bits: Option<u8>,
    /// `echo-weft-server` only: the threading model (`current-thread` unless given).
    pub model: Option<String>,
    /// `echo-weft-server` only: the threads of `multi-thread` and `per-core`.
    pub threads: Option<usize>,
    /// `floor-uring` only: `--recv multishot` (multishot recv into a provided-buffer ring)
    /// instead of the default `--recv single` (one plain recv per connection at a time).
    pub recv_multishot: bool,
    /// `floor-uring --recv multishot` only: the provided buffers (a power of two) and their
    /// size.
    pub bufs: Option<usize>,
    pub buf_size: Option<usize>,
    /// `floor-uring --recv multishot` only: registered files (each connection's descriptor in
    /// the ring's file table, the SQEs naming its slot).
    pub fixed_files: bool,
    /// `floor-uring` only: weft's engine in place of the floor's framing (`engine.rs`).
    pub engine: bool,
}

/// The servers whose library has permessage-deflate (the others refuse `--deflate`).
const DEFLATE_SERVERS: &[&str] = &["echo-weft", "echo-yawc", "echo-ratchet"];

/// The servers with a choice of threading model (`--model`, `--threads`).
const MODEL_SERVERS: &[&str] = &["echo-weft-server"];

fn parse_args(name: &str) -> Args {
    let mut args = Args {
        addr: "127.0.0.1:9001".parse().unwrap(),
        heap_file: None,
        verbose: false,
        corrupt_every: 0,
        read_buffer_size: None,
        deflate: false,
        deflate_nct: false,
        deflate_level: None,
        deflate_window_bits: None,
        model: None,
        threads: None,
        recv_multishot: false,
        bufs: None,
        buf_size: None,
        fixed_files: false,
        engine: false,
    };
    let mut it = std::env::args().skip(1);
    let die = |msg: String| -> ! {
        eprintln!("{name}: {msg}");
        eprintln!("flags: --addr HOST:PORT [--heap-file PATH] [--verbose] [--deflate | --deflate-nct] [--corrupt-every N | --read-buffer-size BYTES | --deflate-level N | --deflate-window-bits N (echo-weft)] [--model current-thread|multi-thread|per-core|blocking --threads N (echo-weft-server) | --recv single|multishot --bufs N --buf-size BYTES --fixed-files (floor-uring)]");
        std::process::exit(2)
    };
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => {
                args.addr = value()
                    .parse()
                    .unwrap_or_else(|e| die(format!("--addr: {e}")))
            }
            "--heap-file" => args.heap_file = Some(value().into()),
            "--verbose" => args.verbose = true,
            "--deflate" => args.deflate = true,
            "--deflate-nct" => args.deflate_nct = true,
            "--deflate-level" => {
                args.deflate_level = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| die(format!("--deflate-level: {e}"))),
                )
            }
            "--deflate-window-bits" => {
                args.deflate_window_bits = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| die(format!("--deflate-window-bits: {e}"))),
                )
            }
            "--corrupt-every" => {
                args.corrupt_every = value()
                    .parse()
                    .unwrap_or_else(|e| die(format!("--corrupt-every: {e}")))
            }
            "--read-buffer-size" => {
                args.read_buffer_size = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| die(format!("--read-buffer-size: {e}"))),
                )
            }
            "--model" if MODEL_SERVERS.contains(&name) => args.model = Some(value()),
            "--threads" if MODEL_SERVERS.contains(&name) => {
                args.threads = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| die(format!("--threads: {e}"))),
                )
            }
            "--recv" if name == "floor-uring" => {
                args.recv_multishot = match value().as_str() {
                    "single" => false,
                    "multishot" => true,
                    v => die(format!("--recv: single or multishot, not {v}")),
                }
            }
            "--bufs" if name == "floor-uring" => {
                args.bufs = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| die(format!("--bufs: {e}"))),
                )
            }
            "--buf-size" if name == "floor-uring" => {
                args.buf_size = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| die(format!("--buf-size: {e}"))),
                )
            }
            "--fixed-files" if name == "floor-uring" => args.fixed_files = true,
            "--engine" if name == "floor-uring" => args.engine = true,
            other => die(format!("unknown flag {other}")),
        }
    }
    args
}

/// Runs an echo server: parses the command line, builds a current-thread runtime, accepts
/// on `--addr` (TCP_NODELAY on every connection, as every peer's examples do or should) and
/// spawns `handle(stream, args)` per connection.
pub fn serve<F, Fut, E>(name: &str, handle: F)
where
    F: Fn(tokio::net::TcpStream, &Args) -> Fut + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let label = name.to_string();
    serve_listener(name, move |listener, args| async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // Out of descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    if args.verbose {
                        eprintln!("{label}: accept: {e}");
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            stream.set_nodelay(true)?;
            let verbose = args.verbose;
            // `map`, not `async move { fut.await }`: an async block keeps its captured future
            // and the awaited one in separate slots, which would double every task.
            tokio::spawn(handle(stream, &args).map(move |result| {
                if let Err(e) = result {
                    if verbose {
                        eprintln!("connection: {e}");
                    }
                }
            }));
        }
    });
}

/// What [`serve`] does before its accept loop, for a server whose library runs its own
/// (`echo-axum`: `axum::serve`): parses the command line, raises the descriptor limit,
/// switches the heap counting on, builds the current-thread runtime, listens on `--addr`
/// (backlog 1024), installs the `SIGUSR1` heap reporter, then runs `run(listener, args)`
/// on the runtime. The caller sets TCP_NODELAY on each accepted connection.
pub fn serve_listener<F, Fut>(name: &str, run: F)
where
    F: FnOnce(tokio::net::TcpListener, Args) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let args = prepare(name);
    // IO and time for every server: weft's handshake timeout needs the timer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result: std::io::Result<()> = rt.block_on(async move {
        // A backlog of 1024 (tokio's `bind` uses 128): 512 connections arrive at once.
        let socket = if args.addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(args.addr)?;
        let listener = socket.listen(1024)?;
        eprintln!("{name} listening on {}", listener.local_addr()?);
        if let Some(path) = args.heap_file.clone() {
            tokio::spawn(report_heap_on_sigusr1(path, None));
        }
        run(listener, args).await
    });
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// What every server does first: parses the command line (exits 2 on a bad one), raises
/// the descriptor limit, and switches the heap counting on if `--heap-file` is given. For
/// a server that builds its own runtime and listener (`echo-weft-server`); the others get
/// it from [`serve`] and [`serve_listener`].
pub fn prepare(name: &str) -> Args {
    let args = parse_args(name);
    if (args.deflate || args.deflate_nct) && !DEFLATE_SERVERS.contains(&name) {
        eprintln!("{name}: --deflate: this library has no permessage-deflate");
        std::process::exit(2);
    }
    raise_fd_limit();
    if args.heap_file.is_some() {
        COUNTING.store(true, Relaxed);
    }
    args
}

/// The `SIGUSR1` heap reporter of `--heap-file PATH` on a thread of its own (with a
/// current-thread runtime of its own), for a server whose runtimes are not ours. Returns
/// once the signal handler is installed, so a `SIGUSR1` sent after the server listens
/// never meets the default action (which ends the process).
pub fn spawn_heap_reporter(path: PathBuf) -> std::io::Result<()> {
    let (ready, installed) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("heap-report".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            rt.block_on(report_heap_on_sigusr1(path, Some(ready)));
        })?;
    installed
        .recv()
        .map_err(|_| std::io::Error::other("the heap reporter thread ended"))?
}

/// Raises the soft limit on open files to the hard one (10,000 idle connections need it).
fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Writes the heap report on each `SIGUSR1`; tells `ready` (if given) once the handler is
/// installed, or why it could not be.
async fn report_heap_on_sigusr1(
    path: PathBuf,
    ready: Option<std::sync::mpsc::Sender<std::io::Result<()>>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SIGUSR1 handler: {e}");
            if let Some(ready) = ready {
                let _ = ready.send(Err(e));
            }
            return;
        }
    };
    if let Some(ready) = ready {
        let _ = ready.send(Ok(()));
    }
    let tmp = path.with_extension("tmp");
    while sig.recv().await.is_some() {
        let (live, allocs, peak, total) = heap_stats();
        let mut line = format!(
            "live_bytes={live} live_allocs={allocs} peak_bytes={peak} total_allocs={total}\n"
        );
        // Then the live allocations by size, one line per non-empty bucket.
        for (i, b) in LIVE_BY_SIZE.iter().enumerate() {
            let n = b.load(Relaxed);
            if n != 0 {
                let upto = if i == BUCKETS - 1 { usize::MAX } else { i * 16 };
                line.push_str(&format!("size_upto={upto} live={n}\n"));
            }
        }
        if std::fs::write(&tmp, line).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}
