//! loadgen: a neutral WebSocket echo load generator. One thread, non-blocking sockets on mio
//! (epoll), no WebSocket library: it writes the handshake (fixed key, checks the 101 and the
//! accept value), builds masked frames, and parses and checks every echo itself (length,
//! kind, the tag that numbers each message, and sampled payload bytes), in order.
//!
//! ```text
//! loadgen --addr 127.0.0.1:9001 --conns 64 --size 1024 --kind binary --inflight 8 \
//!         --duration-secs 3 --warmup-secs 1 [--server-pid PID]
//! ```
//!
//! Each connection keeps `--inflight` messages outstanding: one is sent for each echo
//! received. After every connection is open it runs `--warmup-secs` unmeasured, then
//! `--duration-secs` measured, and prints one JSON line: echoes per second, p50/p99/max
//! latency (µs, from the send of a message to the end of its echo), its own CPU seconds, the
//! server's CPU seconds over the window (with `--server-pid`: utime+stime from
//! /proc/PID/stat, and the on-CPU time from /proc/PID/schedstat) and per echo, the CPU
//! time the rest of the machine used (`noise_cpu_s`: all busy time in /proc/stat less this
//! process's and the server's), the interrupt time (`irq_cpu_s`, mostly this test's own
//! loopback TCP work, which the kernel also charges to the process it ran in), and errors.
//! It exits 1 when any check failed or a connection broke.
//!
//! Checks: every echo must come back in order on its connection, unmasked, with the kind
//! and length sent; its first 8 bytes (a tag numbering the message, mixed with the
//! connection) must match, and so must 4 positions spread by the tag and the last byte.
//! `--verify full` compares every byte instead (slower; for validating a server).
//!
//! Compressed echo (`--deflate takeover|no-context-takeover`, RFC 7692; see `deflate.rs`):
//! text messages from a pool of JSON documents (`--payload json`, implied), offered
//! permessage-deflate in the handshake, each message compressed on its own connection's
//! context (raw deflate, sync flush, tail removed, RSV1, masked), every echo inflated and
//! compared whole with what was sent. `--payload json --deflate off` sends the same
//! messages uncompressed. The output line adds the wire bytes of each echo and message.
//!
//! Line echo through a daemon (`websockd`/`websocketd` running `cat`, bench/run's daemon
//! part): `--line-safe` checks at start that no payload byte is `\n` or `\r` (text pattern
//! payloads: lowercase letters and hex digits; the daemon adds the newline and turns each
//! line back into one message) and fails otherwise; `--server-tree` measures the CPU of the
//! server's whole process tree (the daemon and its programs: `server_tree_cpu_s`,
//! `server_tree_cpu_us_per_echo`, `server_tree_procs` at the end of the window).

mod deflate;

use deflate::{Offer, Pool, Reader};
use loadgen::frame::{self, Expect, Parser, Template};
use loadgen::measure::{json_num, json_str, latency_ns, percentile, unix_num, Schedule, Step};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    text: bool,
    inflight: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
    connect_timeout: Duration,
    /// Compare every payload byte (not only the tag and samples).
    verify_full: bool,
    /// Text messages from the JSON pool (implied by `deflate`).
    json: bool,
    deflate: Offer,
    /// Payloads must hold no line break (checked at start).
    line_safe: bool,
    /// Measure the server's process tree's CPU.
    tree: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "flags: --addr HOST:PORT --conns N --size BYTES --kind text|binary --inflight N \
         --duration-secs S --warmup-secs S [--server-pid PID] [--connect-timeout-secs S] \
         [--verify sampled|full] [--payload pattern|json] \
         [--deflate off|takeover|no-context-takeover] [--line-safe] [--server-tree]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:9001".parse().unwrap(),
        conns: 1,
        size: 16,
        text: false,
        inflight: 1,
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        server_pid: None,
        connect_timeout: Duration::from_secs(10),
        verify_full: false,
        json: false,
        deflate: Offer::Off,
        line_safe: false,
        tree: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--line-safe" => {
                a.line_safe = true;
                continue;
            }
            "--server-tree" => {
                a.tree = true;
                continue;
            }
            _ => {}
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let secs = |v: &str| {
            Duration::from_secs_f64(v.parse().unwrap_or_else(|_| usage(&format!("{flag}: {v}"))))
        };
        let num =
            |v: &str| -> usize { v.parse().unwrap_or_else(|_| usage(&format!("{flag}: {v}"))) };
        match flag.as_str() {
            "--addr" => a.addr = v.parse().unwrap_or_else(|_| usage(&format!("--addr: {v}"))),
            "--conns" => a.conns = num(&v),
            "--size" => a.size = num(&v),
            "--kind" => {
                a.text = match v.as_str() {
                    "text" => true,
                    "binary" => false,
                    _ => usage("--kind is text or binary"),
                }
            }
            "--inflight" => a.inflight = num(&v),
            "--duration-secs" => a.duration = secs(&v),
            "--warmup-secs" => a.warmup = secs(&v),
            "--server-pid" => a.server_pid = Some(num(&v) as u32),
            "--connect-timeout-secs" => a.connect_timeout = secs(&v),
            "--verify" => {
                a.verify_full = match v.as_str() {
                    "full" => true,
                    "sampled" => false,
                    _ => usage("--verify is sampled or full"),
                }
            }
            "--payload" => {
                a.json = match v.as_str() {
                    "json" => true,
                    "pattern" => false,
                    _ => usage("--payload is pattern or json"),
                }
            }
            "--deflate" => {
                a.deflate = Offer::parse(&v)
                    .unwrap_or_else(|| usage("--deflate is off, takeover or no-context-takeover"))
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.conns == 0 || a.inflight == 0 {
        usage("--conns and --inflight must be at least 1");
    }
    if a.deflate != Offer::Off {
        a.json = true;
    }
    if a.line_safe && (a.json || !a.text) {
        usage("--line-safe sends pattern text: --kind text, no --payload json or --deflate");
    }
    if a.json {
        if !a.text {
            usage("--payload json and --deflate send text: --kind text");
        }
        if a.size < Pool::MIN_SIZE {
            usage(&format!(
                "--payload json needs --size of at least {}",
                Pool::MIN_SIZE
            ));
        }
    }
    a
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshake,
    Open,
    Dead,
}

/// A message waiting to be written.
enum Out {
    /// Its own head (header, mask key, masked tag), then the template's shared body.
    Template { head: [u8; 22], head_len: u8 },
    /// A whole frame of its own (json/deflate mode).
    Owned(Vec<u8>),
}

impl Out {
    /// The bytes to write: up to two pieces.
    fn parts<'a>(&'a self, body: &'a [u8]) -> [&'a [u8]; 2] {
        match self {
            Out::Template { head, head_len } => [&head[..*head_len as usize], body],
            Out::Owned(v) => [v, &[]],
        }
    }
}

/// What every connection shares: the template (pattern mode, and the tags) and, in
/// json/deflate mode, the pool and the offer.
struct Ctx {
    t: Template,
    json: Option<Pool>,
    offer: Offer,
}

/// A connection's json/deflate state.
struct JsonConn {
    deflater: Option<deflate::Deflater>,
    reader: Reader,
    /// The plain message being sent, and frames already written (reused).
    scratch: Vec<u8>,
    compressed: Vec<u8>,
    free: Vec<Vec<u8>>,
}

struct Conn {
    sock: TcpStream,
    id: u32,
    phase: Phase,
    /// Handshake request bytes not written yet.
    req: Vec<u8>,
    req_off: usize,
    rbuf: Vec<u8>,
    rlen: usize,
    parser: Parser,
    /// Messages in flight, oldest first: what the echo must be and when it was sent.
    inflight: VecDeque<(Expect, Instant)>,
    /// Messages queued for writing, and how much of the first is written.
    out: VecDeque<Out>,
    out_off: usize,
    next_seq: u32,
    json: Option<Box<JsonConn>>,
}

const RBUF: usize = 256 * 1024;
const MAX_IOV: usize = 64;
const MAX_CONNECTING: usize = 100;

struct Stats {
    echoes: u64,
    /// json/deflate mode, over the measured window: frame bytes of the echoes received and
    /// of the messages sent, and how many echoes came compressed.
    echo_wire_bytes: u64,
    sent_wire_bytes: u64,
    sent_msgs: u64,
    compressed_echoes: u64,
    latencies_ns: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    recording: bool,
    sending: bool,
}

impl Stats {
    fn error(&mut self, conn: u32, msg: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("connection {conn}: {msg}"));
        }
    }
}

impl Conn {
    fn queue_message(&mut self, ctx: &Ctx, now: Instant, stats: &mut Stats) {
        // Each connection numbers its messages; the tag mixes in the connection so that an
        // echo on the wrong connection fails too.
        let id = self.id.wrapping_mul(0x9E37_79B1) ^ self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let expect = ctx.t.expect(id);
        if let (Some(pool), Some(j)) = (&ctx.json, self.json.as_deref_mut()) {
            pool.message(&expect.tag, &mut j.scratch);
            let mut f = j.free.pop().unwrap_or_default();
            f.clear();
            match &mut j.deflater {
                Some(d) => {
                    j.compressed.clear();
                    d.compress(&j.scratch, &mut j.compressed);
                    deflate::frame(&j.compressed, true, &mut f);
                }
                None => deflate::frame(&j.scratch, false, &mut f),
            }
            if stats.recording {
                stats.sent_msgs += 1;
                stats.sent_wire_bytes += f.len() as u64;
            }
            self.out.push_back(Out::Owned(f));
        } else {
            let (head, n) = ctx.t.head(id);
            self.out.push_back(Out::Template {
                head,
                head_len: n as u8,
            });
        }
        self.inflight.push_back((expect, now));
    }

    /// Writes as much as the socket takes. `Err` breaks the connection.
    fn flush(&mut self, t: &Template) -> Result<(), String> {
        let body = t.body();
        while !self.out.is_empty() {
            let mut iov: [IoSlice; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, o) in self.out.iter().enumerate() {
                if n + 2 > MAX_IOV {
                    break;
                }
                // Part of the first message may be written already.
                let mut skip = if i == 0 { self.out_off } else { 0 };
                for part in o.parts(body) {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    iov[n] = IoSlice::new(&part[skip..]);
                    n += 1;
                    skip = 0;
                }
            }
            match self.sock.write_vectored(&iov[..n]) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(mut written) => {
                    // Drop what was written.
                    while written > 0 {
                        let o = self.out.front().expect("written bytes were queued");
                        let [a, b] = o.parts(body);
                        let left = a.len() + b.len() - self.out_off;
                        if written >= left {
                            written -= left;
                            if let (Some(Out::Owned(v)), Some(j)) =
                                (self.out.pop_front(), self.json.as_deref_mut())
                            {
                                j.free.push(v);
                            }
                            self.out_off = 0;
                        } else {
                            self.out_off += written;
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Reads until the socket would block, checking every echo; each echo completed queues
    /// the next message (while sending). Returns the number of echoes completed.
    fn read(&mut self, ctx: &Ctx, now: Instant, stats: &mut Stats) -> Result<(), String> {
        loop {
            if self.rlen == self.rbuf.len() {
                return Err("read buffer full with no frame progress".into());
            }
            match self.sock.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    self.rlen += n;
                    self.process(ctx, now, stats)?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Handles the bytes in `rbuf`: the handshake response, then frames.
    fn process(&mut self, ctx: &Ctx, now: Instant, stats: &mut Stats) -> Result<(), String> {
        let mut off = 0;
        if self.phase == Phase::Handshake {
            match frame::check_response(&self.rbuf[..self.rlen])? {
                None => return Ok(()),
                Some(n) => {
                    off = n;
                    self.phase = Phase::Open;
                    if let Some(params) = deflate::check_accept(&self.rbuf[..n], ctx.offer)? {
                        let j = self.json.as_deref_mut().expect("json mode when offering");
                        j.deflater = Some(deflate::Deflater::new(&params));
                        j.reader.set_params(&params);
                    }
                }
            }
        }
        while off < self.rlen {
            let front = self.inflight.front().map(|x| &x.0);
            let (consumed, completed) = match (&ctx.json, self.json.as_deref_mut()) {
                (Some(pool), Some(j)) => {
                    let (n, echo) = j.reader.feed(&self.rbuf[off..self.rlen], front, pool)?;
                    if let (Some(e), true) = (echo, stats.recording) {
                        stats.echo_wire_bytes += e.wire_bytes as u64;
                        stats.compressed_echoes += e.compressed as u64;
                    }
                    (n, echo.is_some())
                }
                _ => {
                    let p = self.parser.feed(&self.rbuf[off..self.rlen], front)?;
                    (p.consumed, p.completed)
                }
            };
            off += consumed;
            if completed {
                let (_, sent) = self.inflight.pop_front().expect("the parser checked one");
                if stats.recording {
                    stats.echoes += 1;
                    stats.latencies_ns.push(latency_ns(sent, now));
                }
                if stats.sending {
                    self.queue_message(ctx, now, stats);
                }
            } else if consumed == 0 {
                break;
            }
        }
        // Keep a cut header at the front.
        self.rbuf.copy_within(off..self.rlen, 0);
        self.rlen -= off;
        Ok(())
    }
}

fn main() {
    let args = parse_args();
    let ctx = Ctx {
        t: Template::new(args.size, args.text),
        // Generated before any connection opens: not measured.
        json: args.json.then(|| Pool::new(args.size)),
        offer: args.deflate,
    };
    let template = &ctx.t;
    if args.line_safe {
        if let Err(e) = frame::line_safe(template) {
            eprintln!("loadgen: --line-safe: {e}");
            std::process::exit(2);
        }
    }
    let host = args.addr.to_string();
    let request = frame::request_with(&host, args.deflate.header());
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Conn> = Vec::with_capacity(args.conns);
    let plain: Option<std::rc::Rc<[u8]>> = args.verify_full.then(|| template.plain().into());
    // Connections are opened at most MAX_CONNECTING at a time (the server's accept queue is
    // finite, and an overflow costs a 1 s SYN retransmit).
    let start_conn = |i: usize, poll: &Poll| -> Conn {
        let sock = TcpStream::connect(args.addr).unwrap_or_else(|e| {
            eprintln!("loadgen: connect {}: {e}", args.addr);
            std::process::exit(1);
        });
        let mut c = Conn {
            sock,
            id: i as u32,
            phase: Phase::Connecting,
            req: request.clone(),
            req_off: 0,
            rbuf: vec![0; RBUF],
            rlen: 0,
            parser: {
                let mut p = Parser::default();
                p.full = plain.clone();
                p
            },
            inflight: VecDeque::with_capacity(args.inflight),
            out: VecDeque::with_capacity(args.inflight),
            out_off: 0,
            next_seq: 0,
            json: args.json.then(|| {
                Box::new(JsonConn {
                    deflater: None,
                    reader: Reader::new(),
                    scratch: Vec::with_capacity(args.size),
                    compressed: Vec::with_capacity(args.size),
                    free: Vec::new(),
                })
            }),
        };
        poll.registry()
            .register(
                &mut c.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
        c
    };

    let mut stats = Stats {
        echoes: 0,
        echo_wire_bytes: 0,
        sent_wire_bytes: 0,
        sent_msgs: 0,
        compressed_echoes: 0,
        latencies_ns: Vec::with_capacity(1 << 20),
        errors: 0,
        first_error: None,
        recording: false,
        sending: true,
    };
    let mut open = 0usize;
    let mut dead = 0usize;
    let mut schedule = Schedule::new(
        args.warmup,
        args.duration,
        args.connect_timeout,
        args.server_pid,
    )
    .with_tree(args.tree);

    loop {
        match schedule.step(Instant::now(), open + dead == args.conns) {
            Step::TimedOut => {
                stats.error(
                    0,
                    format!(
                        "only {open} of {} connections open after {:?}",
                        args.conns, args.connect_timeout
                    ),
                );
                break;
            }
            Step::Done => break,
            Step::Measuring => stats.recording = true,
            Step::Connecting | Step::Warmup => {}
        }
        if dead == args.conns {
            break;
        }
        while conns.len() < args.conns && conns.len() - open - dead < MAX_CONNECTING {
            let c = start_conn(conns.len(), &poll);
            conns.push(c);
        }
        let timeout = Duration::from_millis(20);
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("loadgen: poll: {e}");
            std::process::exit(1);
        }
        let now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if c.phase == Phase::Dead {
                continue;
            }
            let result: Result<(), String> = (|| {
                if c.phase == Phase::Connecting {
                    if let Ok(Some(e)) | Err(e) = c.sock.take_error() {
                        return Err(format!("connect: {e}"));
                    }
                    match c.sock.peer_addr() {
                        Ok(_) => {
                            c.sock.set_nodelay(true).map_err(|e| e.to_string())?;
                            c.phase = Phase::Handshake;
                        }
                        Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                        Err(e) => return Err(format!("connect: {e}")),
                    }
                }
                if c.phase == Phase::Handshake && c.req_off < c.req.len() {
                    match c.sock.write(&c.req[c.req_off..]) {
                        Ok(n) => c.req_off += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(format!("write request: {e}")),
                    }
                }
                let was_open = c.phase == Phase::Open;
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.read(&ctx, now, &mut stats)?;
                }
                if !was_open && c.phase == Phase::Open {
                    open += 1;
                    for _ in 0..args.inflight {
                        c.queue_message(&ctx, now, &mut stats);
                    }
                }
                if c.phase == Phase::Open {
                    c.flush(template)?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                stats.error(c.id, e);
                c.phase = Phase::Dead;
                let _ = poll.registry().deregister(&mut c.sock);
                dead += 1;
            }
        }
    }

    let w = schedule.window();
    if stats.errors == 0 && stats.echoes == 0 {
        stats.error(0, "no echo completed in the measured window".into());
    }
    let mut lat = std::mem::take(&mut stats.latencies_ns);
    lat.sort_unstable();
    let rate = stats.echoes as f64 / w.secs;
    let per_echo = |cpu: f64| cpu * 1e6 / stats.echoes as f64;
    let controls: u64 = conns
        .iter()
        .map(|c| c.parser.controls + c.json.as_ref().map_or(0, |j| j.reader.controls))
        .sum();
    let per = |bytes: u64, n: u64| {
        if args.json && n > 0 {
            json_num(bytes as f64 / n as f64)
        } else {
            "null".into()
        }
    };
    println!(
        "{{\"conns\":{},\"size\":{},\"kind\":\"{}\",\"inflight\":{},\"secs\":{},\"echoes\":{},\
         \"msgs_per_sec\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"loadgen_cpu_s\":{},\
         \"server_cpu_s\":{},\"server_cpu_us_per_echo\":{},\"server_sched_cpu_s\":{},\
         \"server_sched_us_per_echo\":{},\"noise_cpu_s\":{},\"irq_cpu_s\":{},\"control_frames\":{},\
         \"payload\":\"{}\",\"deflate\":\"{}\",\"echo_wire_bytes\":{},\"sent_wire_bytes\":{},\
         \"compressed_echo_share\":{},\"line_safe\":{},\"server_tree_cpu_s\":{},\
         \"server_tree_cpu_us_per_echo\":{},\"server_tree_procs\":{},\"window_start_unix\":{},\
         \"window_end_unix\":{},\"errors\":{},\"first_error\":{}}}",
        args.conns,
        args.size,
        if args.text { "text" } else { "binary" },
        args.inflight,
        json_num(w.secs),
        stats.echoes,
        json_num(rate),
        json_num(percentile(&lat, 0.50)),
        json_num(percentile(&lat, 0.99)),
        json_num(lat.last().map(|&x| x as f64 / 1000.0).unwrap_or(f64::NAN)),
        json_num(w.own_cpu),
        json_num(w.server_cpu),
        json_num(per_echo(w.server_cpu)),
        json_num(w.server_sched),
        json_num(per_echo(w.server_sched)),
        json_num(w.noise_cpu),
        json_num(w.irq_cpu),
        controls,
        if args.json { "json" } else { "pattern" },
        args.deflate.name(),
        per(stats.echo_wire_bytes, stats.echoes),
        per(stats.sent_wire_bytes, stats.sent_msgs),
        if args.json && stats.echoes > 0 {
            json_num(stats.compressed_echoes as f64 / stats.echoes as f64)
        } else {
            "null".into()
        },
        args.line_safe,
        json_num(w.tree_cpu),
        json_num(per_echo(w.tree_cpu)),
        w.tree_procs
            .map(|n| n.to_string())
            .unwrap_or_else(|| "null".into()),
        unix_num(w.start_unix),
        unix_num(w.end_unix),
        stats.errors,
        stats
            .first_error
            .as_deref()
            .map(json_str)
            .unwrap_or_else(|| "null".into()),
    );
    std::process::exit(if stats.errors == 0 { 0 } else { 1 });
}
