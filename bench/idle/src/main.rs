//! idle: opens N idle WebSocket connections to a server and reports what they cost it.
//!
//! ```text
//! idle --addr 127.0.0.1:9001 --conns 10000 --server-pid PID [--heap-file PATH] [--settle-secs 1]
//! ```
//!
//! Before and after opening the connections (each one completes the handshake: fixed key,
//! 101 and accept value checked, then stays silent) it reads the server's `VmRSS` from
//! /proc/PID/status and, with `--heap-file` (the path the server was started with), its
//! live heap: it sends the server SIGUSR1 and waits (at most 5 s) for the line the server's
//! counting allocator writes there. Prints one JSON line; the per-connection numbers are
//! (after - before) / N, and `blocks_per_conn_by_size` lists the 16-byte size classes whose
//! live blocks grew by at least half a block per connection (`<=4112:1.00`: one block of
//! 4097-4112 bytes per connection). Connections are opened in batches of 100 (connect all, send all
//! requests, read all responses), every read bounded by a 10 s timeout.
//!
//! `--deflate takeover|no-context-takeover` offers permessage-deflate (as the load generator
//! does: `client_max_window_bits`, plus both `*_no_context_takeover` for the second) and
//! fails unless the server accepts. `--one-message` then sends each connection one 1 KiB
//! compressed text message (JSON-like) and waits for its echo (inflated and compared)
//! before the connection goes idle: a library that allocates its compressor and
//! decompressor on first use shows what a connection holds once compression has run.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn die(msg: &str) -> ! {
    eprintln!("idle: {msg}");
    std::process::exit(1)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| die(&format!("/proc/{pid}/status: {e}")));
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| die("no VmRSS"))
}

/// The server's heap counters: live bytes, live allocations, live blocks by size class.
struct Heap {
    bytes: i64,
    allocs: i64,
    by_size: std::collections::BTreeMap<u64, i64>,
}

/// Asks the server for its heap counters.
fn heap(pid: u32, path: &PathBuf) -> Heap {
    let _ = std::fs::remove_file(path);
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) } != 0 {
        die("kill -USR1 failed");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            let get = |k: &str| -> i64 {
                s.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                    .unwrap_or_else(|| die(&format!("{k} missing in {s:?}")))
            };
            let mut by_size = std::collections::BTreeMap::new();
            for line in s.lines().skip(1) {
                let mut size = None;
                let mut live = None;
                for kv in line.split_whitespace() {
                    if let Some(v) = kv.strip_prefix("size_upto=") {
                        size = v.parse::<u64>().ok();
                    } else if let Some(v) = kv.strip_prefix("live=") {
                        live = v.parse::<i64>().ok();
                    }
                }
                if let (Some(k), Some(n)) = (size, live) {
                    by_size.insert(k, n);
                }
            }
            return Heap {
                bytes: get("live_bytes"),
                allocs: get("live_allocs"),
                by_size,
            };
        }
        if Instant::now() > deadline {
            die("the server did not write its heap file within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// What to offer, and whether to send one message per connection.
struct Mode {
    /// The `Sec-WebSocket-Extensions` line ("" for none).
    offer: &'static str,
    nct: bool,
    one_message: Option<Message>,
}

/// The message of `--one-message`: its plain text and its masked frame (compressed when
/// compression is offered: raw deflate, sync flush, tail removed, RSV1).
struct Message {
    plain: Vec<u8>,
    frame: Vec<u8>,
    compressed: bool,
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

impl Message {
    fn new(compress: bool) -> Message {
        let mut plain = String::from("{\"seq\":1,\"events\":[");
        let mut i = 0u64;
        while plain.len() < 900 {
            if i > 0 {
                plain.push(',');
            }
            plain.push_str(&format!(
                "{{\"id\":{},\"user\":\"user_{}\",\"ts\":{},\"price\":{}.{:02},\"status\":\"active\"}}",
                48_210_000 + i * 3,
                (i * 37) % 100,
                1_718_000_000_000u64 + i * 471,
                100 + (i * 7) % 13,
                (i * 29) % 100
            ));
            i += 1;
        }
        while plain.len() < 1022 {
            plain.push(' ');
        }
        plain.push_str("]}");
        let plain = plain.into_bytes();
        let payload = if compress {
            let mut c = Compress::new_with_window_bits(Compression::new(1), false, 15);
            let mut out = Vec::with_capacity(plain.len() + 64);
            c.compress_vec(&plain, &mut out, FlushCompress::Sync)
                .expect("deflate");
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush in one call");
            out.truncate(out.len() - 4);
            out
        } else {
            plain.clone()
        };
        let mut frame = vec![0x81 | if compress { 0x40 } else { 0 }];
        assert!(payload.len() < 65536);
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
        Message {
            plain,
            frame,
            compressed: compress,
        }
    }

    /// Reads one echo from `s` and checks it.
    fn check_echo(&self, s: &mut TcpStream, inflater: &mut Decompress) {
        let mut h = [0u8; 4];
        s.read_exact(&mut h[..2])
            .unwrap_or_else(|e| die(&format!("read echo: {e}")));
        let len = match h[1] & 0x7f {
            126 => {
                s.read_exact(&mut h[2..4])
                    .unwrap_or_else(|e| die(&format!("read echo: {e}")));
                u16::from_be_bytes([h[2], h[3]]) as usize
            }
            n if n < 126 => n as usize,
            _ => die("echo over 64 KiB"),
        };
        if h[0] & 0xbf != 0x81 || h[1] & 0x80 != 0 {
            die(&format!(
                "echo is not one unmasked text frame: {:#04x} {:#04x}",
                h[0], h[1]
            ));
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)
            .unwrap_or_else(|e| die(&format!("read echo: {e}")));
        let plain = if h[0] & 0x40 != 0 {
            if !self.compressed {
                die("RSV1 set without permessage-deflate");
            }
            // The first message of its connection: a fresh context is the server's.
            inflater.reset(false);
            payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut out = Vec::with_capacity(self.plain.len() + 64);
            inflater
                .decompress_vec(&payload, &mut out, FlushDecompress::Sync)
                .unwrap_or_else(|e| die(&format!("inflate echo: {e}")));
            out
        } else {
            payload
        };
        if plain != self.plain {
            die("the echo differs from the message");
        }
    }
}

/// Checks the server's answer to the offer: accepted (with the no-context-takeover
/// request confirmed) when one was made, nothing accepted otherwise.
fn check_extensions(head: &str, mode: &Mode) {
    let ext: Vec<String> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .collect();
    if mode.offer.is_empty() {
        if !ext.is_empty() {
            die(&format!(
                "the server accepted an extension never offered: {ext:?}"
            ));
        }
        return;
    }
    match ext.as_slice() {
        [one] if one.starts_with("permessage-deflate") => {
            if mode.nct && !one.contains("server_no_context_takeover") {
                die("server_no_context_takeover was asked for and not confirmed");
            }
        }
        _ => die(&format!(
            "the server did not accept permessage-deflate: {ext:?}"
        )),
    }
}

fn open_batch(
    addr: SocketAddr,
    n: usize,
    mode: &Mode,
    inflater: &mut Decompress,
    out: &mut Vec<TcpStream>,
) {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        mode.offer
    );
    let mut batch = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| die(&format!("connect #{}: {e}", out.len() + batch.len())));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        batch.push(s);
    }
    for s in &mut batch {
        s.write_all(req.as_bytes())
            .unwrap_or_else(|e| die(&format!("write request: {e}")));
    }
    let mut opened = Vec::with_capacity(n);
    for mut s in batch {
        // With a message to send, byte by byte: nothing past the head is read (its echo
        // follows at once). Otherwise nothing follows the head.
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        let piece = if mode.one_message.is_some() {
            1
        } else {
            buf.len()
        };
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = s
                .read(&mut buf[..piece])
                .unwrap_or_else(|e| die(&format!("read response #{}: {e}", out.len())));
            if k == 0 {
                die(&format!(
                    "connection #{} closed during the handshake",
                    out.len()
                ));
            }
            head.extend_from_slice(&buf[..k]);
            if head.len() > 16 * 1024 {
                die("response head over 16 KiB");
            }
        }
        let text = String::from_utf8_lossy(&head);
        if !text.starts_with("HTTP/1.1 101") {
            die(&format!("handshake answered {:?}", text.lines().next()));
        }
        let accept_ok = text.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == ACCEPT
            })
        });
        if !accept_ok {
            die("Sec-WebSocket-Accept missing or wrong");
        }
        check_extensions(&text, mode);
        opened.push(s);
    }
    if let Some(m) = &mode.one_message {
        for s in &mut opened {
            s.write_all(&m.frame)
                .unwrap_or_else(|e| die(&format!("write message: {e}")));
        }
        for s in &mut opened {
            m.check_echo(s, inflater);
        }
    }
    out.extend(opened);
}

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let mut conns = 10_000usize;
    let mut pid: Option<u32> = None;
    let mut heap_file: Option<PathBuf> = None;
    let mut settle = Duration::from_secs(1);
    let mut offer = "off".to_string();
    let mut one_message = false;
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        if f == "--one-message" {
            one_message = true;
            continue;
        }
        let v = it
            .next()
            .unwrap_or_else(|| die(&format!("{f} needs a value")));
        match f.as_str() {
            "--deflate" => offer = v,
            "--addr" => addr = v.parse().unwrap_or_else(|_| die("--addr")),
            "--conns" => conns = v.parse().unwrap_or_else(|_| die("--conns")),
            "--server-pid" => pid = Some(v.parse().unwrap_or_else(|_| die("--server-pid"))),
            "--heap-file" => heap_file = Some(v.into()),
            "--settle-secs" => {
                settle = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| die("--settle-secs")))
            }
            _ => die(&format!(
                "unknown flag {f}; flags: --addr --conns --server-pid [--heap-file] [--settle-secs] \
                 [--deflate off|takeover|no-context-takeover] [--one-message]"
            )),
        }
    }
    let pid = pid.unwrap_or_else(|| die("--server-pid is required"));
    let (offer_line, nct) = match offer.as_str() {
        "off" => ("", false),
        "takeover" => (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            false,
        ),
        "no-context-takeover" => (
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; client_max_window_bits\r\n",
            true,
        ),
        _ => die("--deflate is off, takeover or no-context-takeover"),
    };
    let mode = Mode {
        offer: offer_line,
        nct,
        one_message: one_message.then(|| Message::new(!offer_line.is_empty())),
    };
    // One decompressor for every echo: each is the first message of its connection.
    let mut inflater = Decompress::new_with_window_bits(false, 15);
    raise_fd_limit();

    // One connection first, so that lazily built state (runtime, buffers) is in "before".
    let mut warm = Vec::new();
    open_batch(addr, 1, &mode, &mut inflater, &mut warm);
    std::thread::sleep(settle);
    let rss0 = rss_kib(pid);
    let heap0 = heap_file.as_ref().map(|p| heap(pid, p));

    let t0 = Instant::now();
    let mut socks = Vec::with_capacity(conns);
    while socks.len() < conns {
        let n = (conns - socks.len()).min(100);
        open_batch(addr, n, &mode, &mut inflater, &mut socks);
    }
    let open_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(settle);
    let rss1 = rss_kib(pid);
    let heap1 = heap_file.as_ref().map(|p| heap(pid, p));

    let n = conns as f64;
    let rss_per = (rss1 as f64 - rss0 as f64) * 1024.0 / n;
    let (hb, ha, hpc, apc, sizes) = match (heap0, heap1) {
        (Some(h0), Some(h1)) => {
            // What each connection holds: size classes whose live count grew by at least
            // half a block per connection, biggest first.
            let mut grew: Vec<(u64, f64)> = h1
                .by_size
                .iter()
                .map(|(&k, &n1)| {
                    (
                        k,
                        (n1 - h0.by_size.get(&k).copied().unwrap_or(0)) as f64 / n,
                    )
                })
                .filter(|&(_, d)| d >= 0.5)
                .collect();
            grew.sort_by_key(|g| std::cmp::Reverse(g.0));
            let sizes = grew
                .iter()
                .map(|(k, d)| {
                    let k = if *k == u64::MAX {
                        ">65536".to_string()
                    } else {
                        format!("<={k}")
                    };
                    format!("{k}:{d:.2}")
                })
                .collect::<Vec<_>>()
                .join(" ");
            (
                h0.bytes.to_string(),
                h1.bytes.to_string(),
                format!("{:.1}", (h1.bytes - h0.bytes) as f64 / n),
                format!("{:.2}", (h1.allocs - h0.allocs) as f64 / n),
                format!("\"{sizes}\""),
            )
        }
        _ => (
            "null".into(),
            "null".into(),
            "null".into(),
            "null".into(),
            "null".into(),
        ),
    };
    println!(
        "{{\"conns\":{conns},\"deflate\":\"{offer}\",\"one_message\":{one_message},\"open_secs\":{open_secs:.3},\"rss_before_kib\":{rss0},\"rss_after_kib\":{rss1},\
         \"rss_per_conn_bytes\":{rss_per:.1},\"heap_before_bytes\":{hb},\"heap_after_bytes\":{ha},\
         \"heap_per_conn_bytes\":{hpc},\"allocs_per_conn\":{apc},\"blocks_per_conn_by_size\":{sizes}}}"
    );
    drop(socks);
    drop(warm);
}
