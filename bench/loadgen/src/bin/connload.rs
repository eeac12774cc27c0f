//! connload: WebSocket connections per second against a daemon that runs one program per
//! connection (`websockd`/`websocketd` with a program that writes one line and exits). One
//! thread, non-blocking sockets on mio (epoll), no WebSocket library.
//!
//! ```text
//! connload --addr 127.0.0.1:9001 --workers 16 --duration-secs 3 --warmup-secs 1 \
//!          [--expect hello] [--server-pid PID] [--server-tree] [--max-conns N]
//! ```
//!
//! Each of `--workers` slots runs one connection at a time, and a new one as soon as the
//! last ended: connect, write the upgrade request (fixed key), check the 101 and its
//! `Sec-WebSocket-Accept`, read exactly one message (text, fragmented or not, equal to
//! `--expect`), then wait for the end: either the server closes the TCP connection
//! (websocketd closes it when the program exits), or it sends a Close frame (its code must
//! be one of `--close-codes`, default 1000, or none) which is answered with a masked Close
//! carrying the same code, and then the server closes the TCP connection. If the server
//! never closes it within `--close-wait-ms` after the closing handshake, this side closes
//! it and counts a `client_closes` (not an error); a reset after the server's Close frame
//! (it closed before our reply came) ends the connection too, counted in
//! `resets_after_close`. Anything else is an error: a second
//! message, a wrong one, a close before the message, a masked or reserved frame, a reset,
//! or a connection that does not end within `--conn-timeout-secs`.
//!
//! Connections run `--warmup-secs` unmeasured, then `--duration-secs` measured: a
//! connection counts in the window it ends in. Prints one JSON line: connections per
//! second, p50/p99/max connection time (µs, from `connect` to the server's close), its own
//! CPU, the server's (`--server-pid`: the process alone, and with `--server-tree` its whole
//! process tree, the programs it ran and waited for included) and per connection, the rest
//! of the machine's, how each connection ended, and errors. Exits 1 on any error, or when
//! `--max-conns` connections were started before the window ended (a bound on the run).

use loadgen::frame::{self, payload_len, MASK};
use loadgen::measure::{json_num, json_str, latency_ns, percentile, Schedule, Step};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    workers: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
    tree: bool,
    expect: Vec<u8>,
    close_codes: Vec<u16>,
    max_conns: u64,
    conn_timeout: Duration,
    close_wait: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("connload: {msg}");
    eprintln!(
        "flags: --addr HOST:PORT --workers N --duration-secs S --warmup-secs S [--expect TEXT] \
         [--close-codes 1000,...] [--server-pid PID] [--server-tree] [--max-conns N] \
         [--conn-timeout-secs S] [--close-wait-ms MS]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:9001".parse().unwrap(),
        workers: 1,
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        server_pid: None,
        tree: false,
        expect: b"hello".to_vec(),
        close_codes: vec![1000],
        max_conns: 1_000_000,
        conn_timeout: Duration::from_secs(10),
        close_wait: Duration::from_millis(1000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--server-tree" {
            a.tree = true;
            continue;
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let secs = |v: &str| {
            Duration::from_secs_f64(v.parse().unwrap_or_else(|_| usage(&format!("{flag}: {v}"))))
        };
        let num = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| usage(&format!("{flag}: {v}"))) };
        match flag.as_str() {
            "--addr" => a.addr = v.parse().unwrap_or_else(|_| usage(&format!("--addr: {v}"))),
            "--workers" => a.workers = num(&v) as usize,
            "--duration-secs" => a.duration = secs(&v),
            "--warmup-secs" => a.warmup = secs(&v),
            "--server-pid" => a.server_pid = Some(num(&v) as u32),
            "--expect" => a.expect = v.into_bytes(),
            "--close-codes" => {
                a.close_codes = v
                    .split(',')
                    .map(|c| {
                        c.parse()
                            .unwrap_or_else(|_| usage(&format!("--close-codes: {c}")))
                    })
                    .collect()
            }
            "--max-conns" => a.max_conns = num(&v),
            "--conn-timeout-secs" => a.conn_timeout = secs(&v),
            "--close-wait-ms" => a.close_wait = Duration::from_millis(num(&v)),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.workers == 0 || a.workers > 4096 {
        usage("--workers must be 1 to 4096");
    }
    a
}

/// How a connection ended (when it did without error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the TCP connection after the message, no Close frame.
    Tcp,
    /// A Close frame (this code, or none), answered, then the server's TCP close.
    CloseFrame(Option<u16>),
}

/// What the client must do after feeding bytes to [`Session::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Read more.
    More,
    /// The server's Close arrived: write this reply, then wait for the TCP close.
    Reply(Vec<u8>),
}

/// One connection's protocol state past the TCP connect: the 101, one message, the end.
/// Kept apart from the sockets so that it can be tested on bytes.
pub struct Session<'a> {
    expect: &'a [u8],
    close_codes: &'a [u16],
    head_done: bool,
    /// The message so far (fragments joined), and whether it is complete.
    msg: Vec<u8>,
    in_msg: bool,
    got_msg: bool,
    close: Option<Option<u16>>,
}

impl<'a> Session<'a> {
    pub fn new(expect: &'a [u8], close_codes: &'a [u16]) -> Session<'a> {
        Session {
            expect,
            close_codes,
            head_done: false,
            msg: Vec::new(),
            in_msg: false,
            got_msg: false,
            close: None,
        }
    }

    /// Consumes what it can of `buf` (returns how much) and says what to do next.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Next), String> {
        let mut off = 0;
        if !self.head_done {
            match frame::check_response(buf)? {
                None => return Ok((0, Next::More)),
                Some(n) => {
                    off = n;
                    self.head_done = true;
                }
            }
        }
        loop {
            let b = &buf[off..];
            if b.len() < 2 {
                return Ok((off, Next::More));
            }
            if self.close.is_some() {
                return Err("bytes after the server's Close frame".into());
            }
            if b[0] & 0x70 != 0 {
                return Err(format!("RSV bits set: {:#04x}", b[0]));
            }
            if b[1] & 0x80 != 0 {
                return Err("the server masked a frame".into());
            }
            let Some((len, hlen)) = payload_len(b) else {
                return Ok((off, Next::More));
            };
            if len > 64 * 1024 {
                return Err(format!("a frame of {len} bytes"));
            }
            let end = hlen + len as usize;
            if b.len() < end {
                return Ok((off, Next::More));
            }
            let (fin, opcode, payload) = (b[0] & 0x80 != 0, b[0] & 0x0f, &b[hlen..end]);
            off += end;
            match opcode {
                0x0..=0x2 => {
                    if opcode == 0 && !self.in_msg {
                        return Err("continuation frame outside a message".into());
                    }
                    if opcode != 0 && self.in_msg {
                        return Err("new message inside a fragmented one".into());
                    }
                    if opcode == 0x2 {
                        return Err("a binary message (the program's line is text)".into());
                    }
                    if self.got_msg {
                        return Err("a second message".into());
                    }
                    self.msg.extend_from_slice(payload);
                    if self.msg.len() > self.expect.len() {
                        return Err(format!("message longer than {:?}", self.expected()));
                    }
                    self.in_msg = !fin;
                    if fin {
                        if self.msg != self.expect {
                            return Err(format!(
                                "message {:?}, expected {:?}",
                                String::from_utf8_lossy(&self.msg),
                                self.expected()
                            ));
                        }
                        self.got_msg = true;
                    }
                }
                0x8 => {
                    if !self.got_msg {
                        return Err("a Close frame before the message".into());
                    }
                    if !fin || payload.len() == 1 || payload.len() > 125 {
                        return Err("bad Close frame".into());
                    }
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    if let Some(c) = code {
                        if !self.close_codes.contains(&c) {
                            let reason = String::from_utf8_lossy(&payload[2..]);
                            return Err(format!(
                                "Close code {c} ({reason:?}), expected one of {:?}",
                                self.close_codes
                            ));
                        }
                    }
                    self.close = Some(code);
                    if off < buf.len() {
                        return Err("bytes after the server's Close frame".into());
                    }
                    return Ok((off, Next::Reply(close_frame(code))));
                }
                0x9 | 0xA => {
                    if !fin || len > 125 {
                        return Err("bad control frame".into());
                    }
                    // Pings are not answered: the connection is meant to end at once.
                }
                other => return Err(format!("reserved opcode {other}")),
            }
        }
    }

    /// The server closed the TCP connection: how it ended, or why that is wrong.
    pub fn eof(&self) -> Result<End, String> {
        if !self.head_done {
            return Err("closed during the handshake".into());
        }
        if self.in_msg || !self.got_msg {
            return Err("closed before the message".into());
        }
        Ok(match self.close {
            Some(code) => End::CloseFrame(code),
            None => End::Tcp,
        })
    }

    fn expected(&self) -> String {
        String::from_utf8_lossy(self.expect).into_owned()
    }
}

/// A masked Close frame with `code` (or none).
pub fn close_frame(code: Option<u16>) -> Vec<u8> {
    let mut f = vec![0x88, 0x80];
    f.extend_from_slice(&MASK);
    if let Some(c) = code {
        f[1] |= 2;
        let c = c.to_be_bytes();
        f.push(c[0] ^ MASK[0]);
        f.push(c[1] ^ MASK[1]);
    }
    f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Open,
    /// The Close reply is written; waiting for the server's TCP close until the instant.
    Closing(Instant),
}

struct Conn<'a> {
    sock: TcpStream,
    phase: Phase,
    started: Instant,
    req_off: usize,
    reply: Vec<u8>,
    reply_off: usize,
    buf: Vec<u8>,
    len: usize,
    session: Session<'a>,
}

enum Outcome {
    Going,
    /// The server closed the connection; `true`: with a reset, after its Close frame (its
    /// kernel answered our Close reply with RST because it had closed already).
    Ended(End, bool),
}

const BUF: usize = 16 * 1024;

impl Conn<'_> {
    fn on_event(&mut self, req: &[u8], close_wait: Duration) -> Result<Outcome, String> {
        if self.phase == Phase::Connecting {
            if let Ok(Some(e)) | Err(e) = self.sock.take_error() {
                return Err(format!("connect: {e}"));
            }
            match self.sock.peer_addr() {
                Ok(_) => self.phase = Phase::Open,
                Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(Outcome::Going),
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
        while self.req_off < req.len() {
            match self.sock.write(&req[self.req_off..]) {
                Ok(n) => self.req_off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Outcome::Going),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write request: {e}")),
            }
        }
        self.write_reply()?;
        loop {
            if self.len == self.buf.len() {
                return Err("read buffer full".into());
            }
            match self.sock.read(&mut self.buf[self.len..]) {
                Ok(0) => return self.session.eof().map(|e| Outcome::Ended(e, false)),
                Ok(n) => {
                    self.len += n;
                    let (used, next) = self.session.feed(&self.buf[..self.len])?;
                    self.buf.copy_within(used..self.len, 0);
                    self.len -= used;
                    if let Next::Reply(r) = next {
                        self.reply = r;
                        self.phase = Phase::Closing(Instant::now() + close_wait);
                        self.write_reply()?;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Outcome::Going),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == ErrorKind::ConnectionReset && self.session.close.is_some() =>
                {
                    return self.session.eof().map(|e| Outcome::Ended(e, true))
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn write_reply(&mut self) -> Result<(), String> {
        while self.reply_off < self.reply.len() {
            match self.sock.write(&self.reply[self.reply_off..]) {
                Ok(n) => self.reply_off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The server may close at once after its Close: a reset on the reply is fine
                // only then; the read that follows sees the end.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(format!("write Close reply: {e}")),
            }
        }
        Ok(())
    }
}

struct Stats {
    conns: u64,
    latencies_ns: Vec<u32>,
    tcp: u64,
    close_frames: u64,
    close_codes: std::collections::BTreeMap<Option<u16>, u64>,
    client_closes: u64,
    resets_after_close: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }
}

fn main() {
    let args = parse_args();
    let req = frame::request_with(&args.addr.to_string(), "");
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Conn>> = (0..args.workers).map(|_| None).collect();
    let mut started: u64 = 0;
    let mut stats = Stats {
        conns: 0,
        latencies_ns: Vec::with_capacity(1 << 16),
        tcp: 0,
        close_frames: 0,
        close_codes: Default::default(),
        client_closes: 0,
        resets_after_close: 0,
        errors: 0,
        first_error: None,
    };
    let mut recording = false;
    // Connections are not "open" here: the warm-up starts at once.
    let mut schedule = Schedule::new(
        args.warmup,
        args.duration,
        Duration::from_secs(1),
        args.server_pid,
    )
    .with_tree(args.tree);
    let run_limit = args.warmup + args.duration + args.conn_timeout + Duration::from_secs(5);
    let t_start = Instant::now();
    loop {
        let now = Instant::now();
        match schedule.step(now, true) {
            Step::Done => break,
            Step::Measuring => recording = true,
            _ => {}
        }
        if now - t_start > run_limit {
            stats.error("the measured window never ended".into());
            break;
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(c) = slot {
                // A connection that outlived its time.
                let over = match c.phase {
                    Phase::Closing(until) => now > until,
                    _ => false,
                };
                if over {
                    let _ = poll.registry().deregister(&mut c.sock);
                    *slot = None;
                    if recording {
                        stats.client_closes += 1;
                        stats.conns += 1;
                    }
                } else if now - c.started > args.conn_timeout {
                    let phase = c.phase;
                    let _ = poll.registry().deregister(&mut c.sock);
                    *slot = None;
                    stats.error(format!(
                        "a connection did not end within {:?} ({phase:?})",
                        args.conn_timeout
                    ));
                }
            }
            if slot.is_none() {
                if started >= args.max_conns {
                    continue;
                }
                started += 1;
                let mut sock = TcpStream::connect(args.addr).unwrap_or_else(|e| {
                    eprintln!("connload: connect {}: {e}", args.addr);
                    std::process::exit(1);
                });
                poll.registry()
                    .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .expect("register");
                *slot = Some(Conn {
                    sock,
                    phase: Phase::Connecting,
                    started: now,
                    req_off: 0,
                    reply: Vec::new(),
                    reply_off: 0,
                    buf: vec![0; BUF],
                    len: 0,
                    session: Session::new(&args.expect, &args.close_codes),
                });
            }
        }
        if started >= args.max_conns && slots.iter().all(|s| s.is_none()) {
            stats.error(format!(
                "--max-conns {} reached before the window ended",
                args.max_conns
            ));
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(20))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("connload: poll: {e}");
            std::process::exit(1);
        }
        let now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = slots[i].as_mut() else { continue };
            let outcome = c.on_event(&req, args.close_wait);
            let (end, reset) = match outcome {
                Ok(Outcome::Going) => continue,
                Ok(Outcome::Ended(end, reset)) => (end, reset),
                Err(e) => {
                    stats.error(e);
                    let _ = poll.registry().deregister(&mut c.sock);
                    slots[i] = None;
                    continue;
                }
            };
            if recording {
                stats.conns += 1;
                stats.latencies_ns.push(latency_ns(c.started, now));
                match end {
                    End::Tcp => stats.tcp += 1,
                    End::CloseFrame(code) => {
                        stats.close_frames += 1;
                        *stats.close_codes.entry(code).or_default() += 1;
                    }
                }
                stats.resets_after_close += reset as u64;
            }
            let _ = poll.registry().deregister(&mut c.sock);
            slots[i] = None;
        }
    }

    let w = schedule.window();
    if stats.errors == 0 && stats.conns == 0 {
        stats.error("no connection ended in the measured window".into());
    }
    let mut lat = std::mem::take(&mut stats.latencies_ns);
    lat.sort_unstable();
    let per_conn = |cpu: f64| cpu * 1e6 / stats.conns as f64;
    let codes = stats
        .close_codes
        .iter()
        .map(|(c, n)| format!("{}:{n}", c.map_or("none".to_string(), |c| c.to_string())))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{{\"workers\":{},\"secs\":{},\"connections\":{},\"conns_per_sec\":{},\"p50_us\":{},\
         \"p99_us\":{},\"max_us\":{},\"loadgen_cpu_s\":{},\"server_cpu_s\":{},\
         \"server_cpu_us_per_conn\":{},\"server_tree_cpu_s\":{},\"server_tree_cpu_us_per_conn\":{},\
         \"server_tree_procs\":{},\"noise_cpu_s\":{},\"irq_cpu_s\":{},\"tcp_closes\":{},\
         \"close_frames\":{},\"close_codes\":{},\"client_closes\":{},\"resets_after_close\":{},\
         \"started\":{},\"errors\":{},\
         \"first_error\":{}}}",
        args.workers,
        json_num(w.secs),
        stats.conns,
        json_num(stats.conns as f64 / w.secs),
        json_num(percentile(&lat, 0.50)),
        json_num(percentile(&lat, 0.99)),
        json_num(lat.last().map(|&x| x as f64 / 1000.0).unwrap_or(f64::NAN)),
        json_num(w.own_cpu),
        json_num(w.server_cpu),
        json_num(per_conn(w.server_cpu)),
        json_num(w.tree_cpu),
        json_num(per_conn(w.tree_cpu)),
        w.tree_procs
            .map(|n| n.to_string())
            .unwrap_or_else(|| "null".into()),
        json_num(w.noise_cpu),
        json_num(w.irq_cpu),
        stats.tcp,
        stats.close_frames,
        json_str(&codes),
        stats.client_closes,
        stats.resets_after_close,
        started,
        stats.errors,
        stats
            .first_error
            .as_deref()
            .map(json_str)
            .unwrap_or_else(|| "null".into()),
    );
    std::process::exit(if stats.errors == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    fn text(payload: &[u8], fin: bool, first: bool) -> Vec<u8> {
        let mut f = vec![
            (if fin { 0x80 } else { 0 }) | (if first { 1 } else { 0 }),
            payload.len() as u8,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn close(code: Option<u16>) -> Vec<u8> {
        let mut f = vec![0x88, 0];
        if let Some(c) = code {
            f[1] = 2;
            f.extend_from_slice(&c.to_be_bytes());
        }
        f
    }

    /// Feeds `bytes` in pieces of `step` bytes as a socket would deliver them; returns the
    /// replies asked for, or the first error.
    fn run(
        bytes: &[u8],
        step: usize,
        codes: &[u16],
    ) -> Result<(Session<'static>, Vec<Vec<u8>>, usize), String> {
        let codes: &'static [u16] = Box::leak(codes.to_vec().into_boxed_slice());
        let mut s = Session::new(b"hello", codes);
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            let (used, next) = s.feed(&buf)?;
            buf.drain(..used);
            if let Next::Reply(r) = next {
                replies.push(r);
            }
        }
        Ok((s, replies, buf.len()))
    }

    #[test]
    fn tcp_close_after_the_message_in_every_split() {
        let mut b = HEAD.as_bytes().to_vec();
        b.extend(text(b"hello", true, true));
        for step in 1..=b.len() {
            let (s, replies, left) = run(&b, step, &[1000]).unwrap();
            assert_eq!(left, 0);
            assert!(replies.is_empty());
            assert_eq!(s.eof(), Ok(End::Tcp));
        }
    }

    #[test]
    fn close_frame_answered_with_its_code() {
        let mut b = HEAD.as_bytes().to_vec();
        b.extend(text(b"hel", false, true));
        b.extend(text(b"lo", true, false));
        b.extend(close(Some(1000)));
        for step in 1..=b.len() {
            let (s, replies, left) = run(&b, step, &[1000]).unwrap();
            assert_eq!(left, 0);
            assert_eq!(replies, vec![close_frame(Some(1000))]);
            assert_eq!(s.eof(), Ok(End::CloseFrame(Some(1000))));
        }
        // The reply is masked: code 1000 under MASK.
        let r = close_frame(Some(1000));
        assert_eq!(r[..2], [0x88, 0x82]);
        assert_eq!([r[6] ^ MASK[0], r[7] ^ MASK[1]], 1000u16.to_be_bytes());
        let mut b = HEAD.as_bytes().to_vec();
        b.extend(text(b"hello", true, true));
        b.extend(close(None));
        let (s, replies, left) = run(&b, 4096, &[1000]).unwrap();
        assert_eq!(left, 0);
        assert_eq!(replies, vec![close_frame(None)]);
        assert_eq!(s.eof(), Ok(End::CloseFrame(None)));
    }

    #[test]
    fn wrong_ends_fail() {
        let ok = |extra: &[&[u8]]| {
            let mut b = HEAD.as_bytes().to_vec();
            for e in extra {
                b.extend_from_slice(e);
            }
            b
        };
        let msg = text(b"hello", true, true);
        // A close code not allowed, a close before the message, a second message, a wrong
        // one, a longer one, binary, masked, RSV, bytes after the Close.
        assert!(run(&ok(&[&msg, &close(Some(1011))]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&close(Some(1000))]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&msg, &msg]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&text(b"hellx", true, true)]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&text(b"hello!", true, true)]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&[0x82, 5], b"hello"]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&[0x81, 0x85, 0, 0, 0, 0], b"hello"]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&[0xc1, 5], b"hello"]), 4096, &[1000]).is_err());
        assert!(run(&ok(&[&msg, &close(Some(1000)), &msg]), 4096, &[1000]).is_err());
        // Closed too early: during the handshake, before the message, inside it.
        let (s, _, left) = run(&HEAD.as_bytes()[..20], 4096, &[1000]).unwrap();
        assert_eq!(left, 20, "a cut head is kept");
        assert!(s.eof().is_err());
        let (s, _, left) = run(&ok(&[]), 4096, &[1000]).unwrap();
        assert_eq!(left, 0);
        assert!(s.eof().is_err());
        let (s, _, left) = run(&ok(&[&text(b"hel", false, true)]), 4096, &[1000]).unwrap();
        assert_eq!(left, 0);
        assert!(s.eof().is_err());
        // A bad handshake.
        let bad = HEAD.replace("s3pP", "AAAA");
        assert!(run(bad.as_bytes(), 4096, &[1000]).is_err());
    }
}
