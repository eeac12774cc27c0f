//! `proxycheck`: WebSockets through a reverse proxy (nginx, HAProxy) in front of two
//! instances of one backend, checked end to end from a weft client on 127.0.0.1.
//!
//! ```text
//! proxycheck --name LABEL --url ws://127.0.0.1:PROXY/PATH
//!            --backend PORT:PID --backend PORT:PID
//!            [--exit-url ws://127.0.0.1:PROXY/PATH] [--hello] [--large BYTES] [--conns N]
//! ```
//!
//! `--url` is an echo behind the proxy (every message comes back with its kind); each
//! `--backend` is one instance: the port it listens on (connections to it are counted in
//! `/proc/net/tcp`) and its pid (the first one is sent SIGTERM by the `graceful-stop`
//! check). `--hello`: the echo's first message is `instance PORT`, naming the instance that
//! took the connection (scripts/proxies' websockd programs do this). `--exit-url`: a
//! program that exits with status 3 after the first message (websockd: Close 1011 `exit
//! status 3`).
//!
//! The checks, in order, one `PASS`/`FAIL` line each (exit status 1 if any fails, 2 on
//! bad arguments):
//! - `echo`: text (ASCII, multi-byte UTF-8, an inner newline) and binary (every byte
//!   value, 64 KiB of noise) come back intact, with their kinds.
//! - `large`: a `--large` binary message (default 4 MiB of noise) comes back intact.
//! - `deflate`: permessage-deflate offered is accepted through the proxy (the 101's
//!   `Sec-WebSocket-Extensions`), compressible messages come back intact, and the bytes on
//!   the wire each way are under an eighth of the payload (so both ends really compressed).
//! - `close-1000`: our Close 1000 is answered with 1000 through the proxy.
//! - `exit-1011` (with `--exit-url`): the program's exit arrives as Close 1011 with the
//!   reason `exit status 3`.
//! - `balance`: `--conns` connections (default 6) are spread over both instances (counted
//!   per backend port in `/proc/net/tcp`, and by the hello's instance with `--hello`).
//! - `graceful-stop`: SIGTERM to the first instance; exactly the connections it held get
//!   Close 1001 through the proxy (the others stay open), and the instance exits.
//! - `reconnect`: those clients reconnect through the proxy (bounded retries), land on the
//!   other instance, and exchange messages; then every connection is on it and all of them
//!   still echo.
//!
//! Every step has a deadline; nothing here waits forever.

use bytes::Bytes;
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use weft::proto::deflate::DeflateConfig;
use weft::proto::{CloseCode, Message};
use weft::{ClientRequest, Options, Response};

const USAGE: &str = "usage: proxycheck --name LABEL --url ws://127.0.0.1:PROXY/PATH \
--backend PORT:PID --backend PORT:PID [--exit-url URL] [--hello] [--large BYTES] [--conns N]";

/// The bound on one step (a connect, a handshake, one echo).
const STEP: Duration = Duration::from_secs(20);

type R<T> = Result<T, String>;

/// One instance behind the proxy.
#[derive(Debug, Clone, Copy)]
struct Backend {
    port: u16,
    pid: u32,
}

struct Args {
    name: String,
    url: String,
    exit_url: Option<String>,
    hello: bool,
    backends: Vec<Backend>,
    large: usize,
    conns: usize,
}

fn parse_args() -> R<Args> {
    let mut a = Args {
        name: String::new(),
        url: String::new(),
        exit_url: None,
        hello: false,
        backends: Vec::new(),
        large: 4 << 20,
        conns: 6,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => a.name = value()?,
            "--url" => a.url = value()?,
            "--exit-url" => a.exit_url = Some(value()?),
            "--hello" => a.hello = true,
            "--backend" => {
                let v = value()?;
                let (port, pid) = v
                    .split_once(':')
                    .ok_or(format!("--backend {v}: expected PORT:PID"))?;
                a.backends.push(Backend {
                    port: port.parse().map_err(|e| format!("--backend {v}: {e}"))?,
                    pid: pid.parse().map_err(|e| format!("--backend {v}: {e}"))?,
                });
            }
            "--large" => a.large = value()?.parse().map_err(|e| format!("--large: {e}"))?,
            "--conns" => a.conns = value()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    if a.backends.len() != 2 {
        return Err(format!("exactly two --backend are needed\n{USAGE}"));
    }
    if !(2..=64).contains(&a.conns) {
        return Err("--conns: 2..=64".into());
    }
    if a.name.is_empty() {
        a.name = a.url.clone();
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("proxycheck: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxycheck: runtime: {e}");
            std::process::exit(1);
        }
    };
    let failed = rt.block_on(run(&args));
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// Prints each check's line; counts failures.
struct Report<'a> {
    name: &'a str,
    failed: usize,
}

impl Report<'_> {
    fn record(&mut self, check: &str, started: Instant, result: R<String>) -> bool {
        let ms = started.elapsed().as_millis();
        match result {
            Ok(detail) => {
                println!("PASS [{}] {check}: {detail} ({ms} ms)", self.name);
                true
            }
            Err(e) => {
                println!("FAIL [{}] {check}: {e} ({ms} ms)", self.name);
                self.failed += 1;
                false
            }
        }
    }
}

async fn run(a: &Args) -> usize {
    let mut report = Report {
        name: &a.name,
        failed: 0,
    };
    let t = Instant::now();
    report.record("echo", t, check_echo(a).await);
    let t = Instant::now();
    report.record("large", t, check_large(a).await);
    let t = Instant::now();
    report.record("deflate", t, check_deflate(a).await);
    let t = Instant::now();
    report.record("close-1000", t, check_close(a).await);
    if let Some(url) = &a.exit_url {
        let t = Instant::now();
        report.record("exit-1011", t, check_exit(url).await);
    }
    let t = Instant::now();
    let mut conns = Vec::new();
    let balanced = report.record("balance", t, check_balance(a, &mut conns).await);
    if !balanced {
        println!(
            "FAIL [{}] graceful-stop: not run (the connections are not on both instances)",
            a.name
        );
        report.failed += 1;
        return report.failed;
    }
    let t = Instant::now();
    let mut stopped = Vec::new();
    let ok = report.record(
        "graceful-stop",
        t,
        check_graceful_stop(a, &mut conns, &mut stopped).await,
    );
    if ok {
        let t = Instant::now();
        report.record("reconnect", t, check_reconnect(a, conns, stopped).await);
    } else {
        println!("FAIL [{}] reconnect: not run", a.name);
        report.failed += 1;
    }
    report.failed
}

// ---------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------

/// A TCP stream that counts the bytes it reads and writes (what crossed the wire).
struct Counted {
    tcp: TcpStream,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        this.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A client connection through the proxy.
struct Conn {
    ws: weft::tokio::WebSocket<Counted>,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    response: Response,
    /// The instance's port, from its hello (`--hello`).
    instance: Option<u16>,
    deflate: bool,
}

/// `fut` within [`STEP`], its error with `what` for context.
async fn within<T, E: Display>(what: &str, fut: impl Future<Output = Result<T, E>>) -> R<T> {
    match tokio::time::timeout(STEP, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: nothing within {} s", STEP.as_secs())),
    }
}

/// Connects through the proxy; with `hello`, reads the instance's hello.
async fn connect(url: &str, deflate: bool, hello: bool) -> R<Conn> {
    let mut options = Options::default();
    options.config.max_message_size = Some(64 << 20);
    options.config.max_frame_size = Some(64 << 20);
    let mut builder = ClientRequest::builder(url);
    if deflate {
        let d = DeflateConfig::default();
        builder = builder.extensions(&[d.offer()]);
        options.deflate = Some(d);
    }
    let request = builder
        .build()
        .map_err(|e| format!("request for {url}: {e}"))?;
    let tcp = within(
        "TCP connect to the proxy",
        TcpStream::connect((request.host(), request.port())),
    )
    .await?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let io = Counted {
        tcp,
        read: Arc::clone(&read),
        written: Arc::clone(&written),
    };
    let (ws, response) = within(
        "opening handshake",
        weft::tokio::connect_with(&request, io, options),
    )
    .await?;
    let mut conn = Conn {
        ws,
        read,
        written,
        response,
        instance: None,
        deflate,
    };
    if hello {
        let m = conn.recv_msg("the instance's hello").await?;
        let port = match &m {
            Message::Text(t) => t
                .as_str()
                .strip_prefix("instance ")
                .and_then(|p| p.trim().parse::<u16>().ok()),
            Message::Binary(_) => None,
        };
        conn.instance =
            Some(port.ok_or(format!("hello: expected `instance PORT`, got {}", show(&m)))?);
    }
    Ok(conn)
}

impl Conn {
    /// The next message; an error if the connection closes instead.
    async fn recv_msg(&mut self, what: &str) -> R<Message> {
        match within(what, self.ws.recv()).await? {
            Some(m) => Ok(m),
            None => Err(format!(
                "{what}: the connection closed instead ({})",
                self.close_received()
            )),
        }
    }

    /// Sends `msg` and checks that the same message comes back. The message is queued in
    /// the engine and written while the reply is read, so a large echo cannot block on
    /// full buffers both ways.
    async fn echo(&mut self, msg: Message, what: &str) -> R<()> {
        self.ws
            .connection_mut()
            .send(msg.clone())
            .map_err(|e| format!("{what}: send: {e}"))?;
        let got = self.recv_msg(what).await?;
        if got != msg {
            return Err(format!("{what}: sent {}, got {}", show(&msg), show(&got)));
        }
        Ok(())
    }

    /// The close frame received, for messages.
    fn close_received(&self) -> String {
        match self.ws.connection().close_received() {
            Some(f) => format!("Close {} {:?}", f.code.0, f.reason.as_str()),
            None => "no close frame received".into(),
        }
    }

    /// The code and reason of the close frame received.
    fn close_code(&self) -> Option<(u16, String)> {
        self.ws
            .connection()
            .close_received()
            .map(|f| (f.code.0, f.reason.as_str().to_owned()))
    }

    /// The close handshake with 1000; an error unless 1000 comes back.
    async fn close_normal(&mut self, what: &str) -> R<()> {
        within(what, self.ws.close(CloseCode::NORMAL, "done")).await?;
        match self.close_code() {
            Some((1000, _)) => Ok(()),
            _ => Err(format!(
                "{what}: Close 1000 answered with {}",
                self.close_received()
            )),
        }
    }
}

/// A short description of a message (kind, length, first bytes).
fn show(m: &Message) -> String {
    let (kind, p) = match m {
        Message::Text(t) => ("text", t.as_bytes()),
        Message::Binary(b) => ("binary", b),
    };
    let head = &p[..p.len().min(24)];
    format!(
        "{kind} of {} bytes {:?}",
        p.len(),
        String::from_utf8_lossy(head)
    )
}

/// `n` bytes of noise (xorshift; incompressible), different for each `seed`.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// About `n` bytes of repetitive JSON-like text (compresses well).
fn compressible(n: usize) -> String {
    let mut s = String::with_capacity(n + 64);
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"seq\":{i},\"kind\":\"update\",\"value\":\"the same words again\"}}\n"
        ));
        i += 1;
    }
    s
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

async fn check_echo(a: &Args) -> R<String> {
    let mut c = connect(&a.url, false, a.hello).await?;
    let messages = [
        Message::from("hello through the proxy"),
        Message::from("multi-byte: héllo wörld ✓ 🙂 — ok"),
        Message::from("two\nlines"),
        Message::from((0..=255u8).collect::<Vec<u8>>()),
        Message::from(noise(64 << 10, 1)),
    ];
    let n = messages.len();
    for (i, m) in messages.into_iter().enumerate() {
        c.echo(m, &format!("message {}", i + 1)).await?;
    }
    c.close_normal("close").await?;
    Ok(format!("{n} messages (text and binary) intact"))
}

async fn check_large(a: &Args) -> R<String> {
    let mut c = connect(&a.url, false, a.hello).await?;
    let t = Instant::now();
    c.echo(Message::from(noise(a.large, 2)), "large message")
        .await?;
    let ms = t.elapsed().as_millis();
    c.close_normal("close").await?;
    Ok(format!(
        "{} bytes of binary echoed intact in {ms} ms",
        a.large
    ))
}

async fn check_deflate(a: &Args) -> R<String> {
    let mut c = connect(&a.url, true, a.hello).await?;
    let header = c
        .response
        .headers()
        .get_all("sec-websocket-extensions")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if !c
        .response
        .extensions()
        .iter()
        .any(|e| e.name == "permessage-deflate")
    {
        return Err(format!(
            "permessage-deflate not accepted through the proxy (Sec-WebSocket-Extensions: {header:?})"
        ));
    }
    let (r0, w0) = (
        c.read.load(Ordering::Relaxed),
        c.written.load(Ordering::Relaxed),
    );
    let text = compressible(1 << 20);
    let binary = Bytes::from(compressible(256 << 10).into_bytes());
    let payload = (text.len() + binary.len()) as u64;
    c.echo(Message::from(text), "compressible text").await?;
    c.echo(Message::Binary(binary), "compressible binary")
        .await?;
    let read = c.read.load(Ordering::Relaxed) - r0;
    let written = c.written.load(Ordering::Relaxed) - w0;
    if read * 8 > payload || written * 8 > payload {
        return Err(format!(
            "{payload} bytes of payload took {written} bytes out and {read} bytes in: not compressed"
        ));
    }
    // Small messages (under the threshold: not compressed) and noise (compressed, larger).
    c.echo(Message::from("small"), "small text").await?;
    c.echo(Message::from(noise(100 << 10, 3)), "noise").await?;
    c.close_normal("close").await?;
    Ok(format!(
        "negotiated ({header}); {payload} bytes echoed intact as {written} bytes out, {read} in"
    ))
}

async fn check_close(a: &Args) -> R<String> {
    let mut c = connect(&a.url, false, a.hello).await?;
    c.echo(Message::from("before the close"), "echo").await?;
    c.close_normal("close handshake").await?;
    Ok(format!("answered with {}", c.close_received()))
}

async fn check_exit(url: &str) -> R<String> {
    let mut c = connect(url, false, false).await?;
    c.ws.connection_mut()
        .send(Message::from("exit3"))
        .map_err(|e| format!("send: {e}"))?;
    match within("waiting for the close", c.ws.recv()).await? {
        None => {}
        Some(m) => return Err(format!("a message instead of the close: {}", show(&m))),
    }
    match c.close_code() {
        Some((1011, reason)) if reason == "exit status 3" => Ok(c.close_received()),
        _ => Err(format!(
            "expected Close 1011 \"exit status 3\", got {}",
            c.close_received()
        )),
    }
}

/// Established TCP connections whose local port is `port` (an instance's accepted
/// connections: the proxy's upstream ones), from /proc/net/tcp and tcp6.
fn established_on(port: u16) -> R<usize> {
    let mut n = 0;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{path}: {e}")),
        };
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(state)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && state == "01" {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Waits (at most 5 s) until the instances hold `want` connections between them and
/// `ok` holds for the counts; the last counts.
async fn counts_settle(a: &Args, want: usize, ok: impl Fn(&[usize]) -> bool) -> R<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut counts = Vec::new();
        for b in &a.backends {
            counts.push(established_on(b.port)?);
        }
        if (counts.iter().sum::<usize>() == want && ok(&counts)) || Instant::now() >= deadline {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn describe(a: &Args, counts: &[usize]) -> String {
    a.backends
        .iter()
        .zip(counts)
        .map(|(b, n)| format!("port {}: {n}", b.port))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn check_balance(a: &Args, conns: &mut Vec<Conn>) -> R<String> {
    for i in 0..a.conns {
        // Half of them compressed, as a mix of clients would be.
        let mut c = connect(&a.url, i % 2 == 1, a.hello).await?;
        c.echo(Message::from(format!("client {i}")), "echo").await?;
        conns.push(c);
    }
    let counts = counts_settle(a, a.conns, |c| c.iter().all(|&n| n > 0)).await?;
    if counts.iter().sum::<usize>() != a.conns {
        return Err(format!(
            "{} connections through the proxy, but the instances hold {}",
            a.conns,
            describe(a, &counts)
        ));
    }
    if counts.contains(&0) {
        return Err(format!("not balanced: {}", describe(a, &counts)));
    }
    let mut detail = describe(a, &counts);
    if a.hello {
        for (b, &n) in a.backends.iter().zip(&counts) {
            let said = conns.iter().filter(|c| c.instance == Some(b.port)).count();
            if said != n {
                return Err(format!(
                    "port {} holds {n} connections, but {said} clients were greeted by it",
                    b.port
                ));
            }
        }
        detail.push_str("; each instance's hello agrees");
    }
    Ok(detail)
}

/// Whether `pid` has exited (gone, or a zombie its parent has not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => true,
    }
}

async fn check_graceful_stop(a: &Args, conns: &mut [Conn], stopped: &mut Vec<usize>) -> R<String> {
    let victim = a.backends[0];
    let on_victim = established_on(victim.port)?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &victim.pid.to_string()])
        .status()
        .map_err(|e| format!("kill -TERM {}: {e}", victim.pid))?;
    if !status.success() {
        return Err(format!("kill -TERM {} failed: {status}", victim.pid));
    }
    let t = Instant::now();
    // Wait (at most 15 s) for the victim's clients to be closed; then 500 ms more, in which
    // no other client may be closed.
    let deadline = t + Duration::from_secs(15);
    let mut quiet_until: Option<Instant> = None;
    let mut last_close = Duration::ZERO;
    let mut closes: Vec<(usize, R<(u16, String)>)> = Vec::new();
    loop {
        for (i, c) in conns.iter_mut().enumerate() {
            if stopped.contains(&i) {
                continue;
            }
            // recv is cancel-safe: its state is the engine's.
            match tokio::time::timeout(Duration::from_millis(20), c.ws.recv()).await {
                Err(_) => {}
                Ok(Ok(None)) => {
                    stopped.push(i);
                    last_close = t.elapsed();
                    closes.push((i, c.close_code().ok_or_else(|| "no close frame".into())));
                }
                Ok(Ok(Some(m))) => {
                    return Err(format!("client {i}: unexpected message {}", show(&m)))
                }
                Ok(Err(e)) => {
                    stopped.push(i);
                    last_close = t.elapsed();
                    closes.push((i, Err(format!("{e} ({})", c.close_received()))));
                }
            }
        }
        let now = Instant::now();
        if stopped.len() >= on_victim && quiet_until.is_none() {
            quiet_until = Some(now + Duration::from_millis(500));
        }
        if quiet_until.is_some_and(|q| now >= q) || now >= deadline {
            break;
        }
    }
    let took = last_close.as_millis();
    let mut wrong = Vec::new();
    for (i, r) in &closes {
        match r {
            Ok((1001, _)) => {}
            Ok((code, reason)) => wrong.push(format!("client {i}: Close {code} {reason:?}")),
            Err(e) => wrong.push(format!("client {i}: {e}")),
        }
        if a.hello && conns[*i].instance != Some(victim.port) {
            wrong.push(format!(
                "client {i} was on port {:?}, not the stopped instance",
                conns[*i].instance
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(format!("expected Close 1001: {}", wrong.join("; ")));
    }
    if closes.len() != on_victim {
        return Err(format!(
            "the stopped instance held {on_victim} connections, {} clients were closed within {} s",
            closes.len(),
            deadline.duration_since(t).as_secs()
        ));
    }
    let exit_deadline = Instant::now() + Duration::from_secs(10);
    while !exited(victim.pid) {
        if Instant::now() >= exit_deadline {
            return Err(format!(
                "pid {} still running 10 s after its clients got 1001",
                victim.pid
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(format!(
        "{} clients got Close 1001 within {took} ms of the SIGTERM (the {} on the other instance stayed open 500 ms more); pid {} exited",
        closes.len(),
        conns.len() - closes.len(),
        victim.pid
    ))
}

async fn check_reconnect(a: &Args, mut conns: Vec<Conn>, stopped: Vec<usize>) -> R<String> {
    let survivor = a.backends[1];
    let mut attempts_total = 0;
    for &i in &stopped {
        let deflate = conns[i].deflate;
        let mut attempt = 0;
        let fresh = loop {
            attempt += 1;
            let tried = async {
                let mut c = connect(&a.url, deflate, a.hello).await?;
                if a.hello && c.instance != Some(survivor.port) {
                    return Err(format!(
                        "landed on {:?}, not the running instance {}",
                        c.instance, survivor.port
                    ));
                }
                c.echo(Message::from(format!("client {i} is back")), "echo")
                    .await?;
                c.echo(Message::from(noise(64 << 10, i as u64)), "binary echo")
                    .await?;
                Ok::<_, String>(c)
            }
            .await;
            match tried {
                Ok(c) => break c,
                Err(e) if attempt >= 20 => {
                    return Err(format!("client {i}: {attempt} attempts, the last: {e}"))
                }
                Err(e) => {
                    eprintln!("proxycheck: client {i}: reconnect attempt {attempt}: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        attempts_total += attempt;
        conns[i] = fresh;
    }
    let counts = counts_settle(a, a.conns, |c| c[0] == 0).await?;
    if counts[0] != 0 || counts[1] != a.conns {
        return Err(format!(
            "after reconnecting, expected all {} on port {}: {}",
            a.conns,
            survivor.port,
            describe(a, &counts)
        ));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.echo(
            Message::from(format!("client {i}, still here")),
            &format!("client {i}"),
        )
        .await?;
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.close_normal(&format!("client {i}: close")).await?;
    }
    Ok(format!(
        "{} clients reconnected in {attempts_total} attempts, to port {}; all {} there echo",
        stopped.len(),
        survivor.port,
        a.conns
    ))
}
