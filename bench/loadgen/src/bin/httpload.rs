//! httpload: plain HTTP/1.1 requests per second, the same way `loadgen` measures echoes. One
//! thread, non-blocking sockets on mio (epoll), no HTTP library: N keep-alive connections,
//! each with `--inflight` requests outstanding (1: one at a time; more: pipelined), a new
//! `GET` written for each response received; every response is parsed and checked (status
//! line, headers, Content-Length, the whole body: see `loadgen::http`).
//!
//! ```text
//! httpload --addr 127.0.0.1:9001 --conns 64 --inflight 1 --duration-secs 3 \
//!          --warmup-secs 1 [--server-pid PID] [--path /] [--body ok]
//! ```
//!
//! After every connection is open it runs `--warmup-secs` unmeasured, then `--duration-secs`
//! measured, and prints one JSON line: requests per second, p50/p99/max latency (µs, from
//! the write of a request being queued to the end of its response), its own CPU seconds,
//! the server's CPU over the window (`--server-pid`: utime+stime from /proc/PID/stat, and
//! the on-CPU time from /proc/PID/schedstat) and per request, the rest of the machine's
//! CPU (`noise_cpu_s`), the interrupt time, the bytes of each response, and errors. Exits
//! 1 on any error: a failed check, a connection closed or broken.

use loadgen::http::{self, Expect, Parser};
use loadgen::measure::{json_num, json_str, latency_ns, percentile, Schedule, Step};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    conns: usize,
    inflight: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
    connect_timeout: Duration,
    path: String,
    body: String,
}

fn usage(msg: &str) -> ! {
    eprintln!("httpload: {msg}");
    eprintln!(
        "flags: --addr HOST:PORT --conns N --inflight N --duration-secs S --warmup-secs S \
         [--server-pid PID] [--connect-timeout-secs S] [--path /] [--body ok]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:9001".parse().unwrap(),
        conns: 1,
        inflight: 1,
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        server_pid: None,
        connect_timeout: Duration::from_secs(10),
        path: "/".into(),
        body: "ok".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
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
            "--inflight" => a.inflight = num(&v),
            "--duration-secs" => a.duration = secs(&v),
            "--warmup-secs" => a.warmup = secs(&v),
            "--server-pid" => a.server_pid = Some(num(&v) as u32),
            "--connect-timeout-secs" => a.connect_timeout = secs(&v),
            "--path" => a.path = v,
            "--body" => a.body = v,
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.conns == 0 || a.inflight == 0 {
        usage("--conns and --inflight must be at least 1");
    }
    if !a.path.starts_with('/') || a.path.bytes().any(|b| b <= b' ') {
        usage("--path is an absolute path without spaces");
    }
    a
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Open,
    Dead,
}

struct Conn {
    sock: TcpStream,
    id: u32,
    phase: Phase,
    rbuf: Vec<u8>,
    rlen: usize,
    parser: Parser,
    /// When each outstanding request was queued, oldest first.
    inflight: VecDeque<Instant>,
    /// Requests queued and not wholly written, and how much of the first is written.
    unsent: usize,
    out_off: usize,
    /// Bytes of the response under way so far.
    response_bytes: usize,
}

const RBUF: usize = 64 * 1024;
const MAX_IOV: usize = 64;
const MAX_CONNECTING: usize = 100;

struct Stats {
    requests: u64,
    /// Bytes of the responses completed in the window.
    response_bytes: u64,
    latencies_ns: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    recording: bool,
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
    fn queue_request(&mut self, now: Instant) {
        self.inflight.push_back(now);
        self.unsent += 1;
    }

    /// Writes as many queued requests as the socket takes. `Err` breaks the connection.
    fn flush(&mut self, req: &[u8]) -> Result<(), String> {
        while self.unsent > 0 {
            let n = self.unsent.min(MAX_IOV);
            let mut iov: [IoSlice; MAX_IOV] = [IoSlice::new(req); MAX_IOV];
            iov[0] = IoSlice::new(&req[self.out_off..]);
            match self.sock.write_vectored(&iov[..n]) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(written) => {
                    let total = self.out_off + written;
                    self.unsent -= total / req.len();
                    self.out_off = total % req.len();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Reads until the socket would block, checking every response; each one completed
    /// queues the next request.
    fn read(&mut self, now: Instant, stats: &mut Stats) -> Result<(), String> {
        loop {
            if self.rlen == self.rbuf.len() {
                return Err("read buffer full with no response progress".into());
            }
            match self.sock.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    self.rlen += n;
                    self.process(now, stats)?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn process(&mut self, now: Instant, stats: &mut Stats) -> Result<(), String> {
        let mut off = 0;
        while off < self.rlen {
            let p = self
                .parser
                .feed(&self.rbuf[off..self.rlen], !self.inflight.is_empty())?;
            off += p.consumed;
            self.response_bytes += p.consumed;
            if p.completed {
                let sent = self.inflight.pop_front().expect("the parser checked one");
                if stats.recording {
                    stats.requests += 1;
                    stats.response_bytes += self.response_bytes as u64;
                    stats.latencies_ns.push(latency_ns(sent, now));
                }
                self.response_bytes = 0;
                self.queue_request(now);
            } else if p.consumed == 0 {
                break;
            }
        }
        // Keep a cut head at the front.
        self.rbuf.copy_within(off..self.rlen, 0);
        self.rlen -= off;
        Ok(())
    }
}

fn main() {
    let args = parse_args();
    let req = http::request(&args.addr.to_string(), &args.path);
    let expect = Expect {
        status: 200,
        body: args.body.clone().into_bytes(),
    };
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Conn> = Vec::with_capacity(args.conns);
    // Connections are opened at most MAX_CONNECTING at a time, as loadgen does.
    let start_conn = |i: usize, poll: &Poll| -> Conn {
        let sock = TcpStream::connect(args.addr).unwrap_or_else(|e| {
            eprintln!("httpload: connect {}: {e}", args.addr);
            std::process::exit(1);
        });
        let mut c = Conn {
            sock,
            id: i as u32,
            phase: Phase::Connecting,
            rbuf: vec![0; RBUF],
            rlen: 0,
            parser: Parser::new(expect.clone()),
            inflight: VecDeque::with_capacity(args.inflight),
            unsent: 0,
            out_off: 0,
            response_bytes: 0,
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
        requests: 0,
        response_bytes: 0,
        latencies_ns: Vec::with_capacity(1 << 20),
        errors: 0,
        first_error: None,
        recording: false,
    };
    let mut open = 0usize;
    let mut dead = 0usize;
    let mut schedule = Schedule::new(
        args.warmup,
        args.duration,
        args.connect_timeout,
        args.server_pid,
    );

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
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(20))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("httpload: poll: {e}");
            std::process::exit(1);
        }
        let now = Instant::now();
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
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
                            c.phase = Phase::Open;
                            open += 1;
                            for _ in 0..args.inflight {
                                c.queue_request(now);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                        Err(e) => return Err(format!("connect: {e}")),
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.read(now, &mut stats)?;
                }
                c.flush(&req)
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
    if stats.errors == 0 && stats.requests == 0 {
        stats.error(0, "no response completed in the measured window".into());
    }
    let mut lat = std::mem::take(&mut stats.latencies_ns);
    lat.sort_unstable();
    let per_request = |x: f64| x * 1e6 / stats.requests as f64;
    println!(
        "{{\"conns\":{},\"inflight\":{},\"path\":{},\"secs\":{},\"requests\":{},\
         \"requests_per_sec\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"loadgen_cpu_s\":{},\
         \"server_cpu_s\":{},\"server_cpu_us_per_request\":{},\"server_sched_cpu_s\":{},\
         \"server_sched_us_per_request\":{},\"noise_cpu_s\":{},\"irq_cpu_s\":{},\
         \"response_bytes\":{},\"errors\":{},\"first_error\":{}}}",
        args.conns,
        args.inflight,
        json_str(&args.path),
        json_num(w.secs),
        stats.requests,
        json_num(stats.requests as f64 / w.secs),
        json_num(percentile(&lat, 0.50)),
        json_num(percentile(&lat, 0.99)),
        json_num(lat.last().map(|&x| x as f64 / 1000.0).unwrap_or(f64::NAN)),
        json_num(w.own_cpu),
        json_num(w.server_cpu),
        json_num(per_request(w.server_cpu)),
        json_num(w.server_sched),
        json_num(per_request(w.server_sched)),
        json_num(w.noise_cpu),
        json_num(w.irq_cpu),
        json_num(stats.response_bytes as f64 / stats.requests as f64),
        stats.errors,
        stats
            .first_error
            .as_deref()
            .map(json_str)
            .unwrap_or_else(|| "null".into()),
    );
    std::process::exit(if stats.errors == 0 { 0 } else { 1 });
}
