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

fn open_batch(addr: SocketAddr, n: usize, out: &mut Vec<TcpStream>) {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
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
    for mut s in batch {
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = s
                .read(&mut buf)
                .unwrap_or_else(|e| die(&format!("read response #{}: {e}", out.len())));
            if k == 0 {
                die(&format!("connection #{} closed during the handshake", out.len()));
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
        out.push(s);
    }
}

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let mut conns = 10_000usize;
    let mut pid: Option<u32> = None;
    let mut heap_file: Option<PathBuf> = None;
    let mut settle = Duration::from_secs(1);
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let v = it.next().unwrap_or_else(|| die(&format!("{f} needs a value")));
        match f.as_str() {
            "--addr" => addr = v.parse().unwrap_or_else(|_| die("--addr")),
            "--conns" => conns = v.parse().unwrap_or_else(|_| die("--conns")),
            "--server-pid" => pid = Some(v.parse().unwrap_or_else(|_| die("--server-pid"))),
            "--heap-file" => heap_file = Some(v.into()),
            "--settle-secs" => {
                settle = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| die("--settle-secs")))
            }
            _ => die(&format!(
                "unknown flag {f}; flags: --addr --conns --server-pid [--heap-file] [--settle-secs]"
            )),
        }
    }
    let pid = pid.unwrap_or_else(|| die("--server-pid is required"));
    raise_fd_limit();

    // One connection first, so that lazily built state (runtime, buffers) is in "before".
    let mut warm = Vec::new();
    open_batch(addr, 1, &mut warm);
    std::thread::sleep(settle);
    let rss0 = rss_kib(pid);
    let heap0 = heap_file.as_ref().map(|p| heap(pid, p));

    let t0 = Instant::now();
    let mut socks = Vec::with_capacity(conns);
    while socks.len() < conns {
        let n = (conns - socks.len()).min(100);
        open_batch(addr, n, &mut socks);
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
                .map(|(&k, &n1)| (k, (n1 - h0.by_size.get(&k).copied().unwrap_or(0)) as f64 / n))
                .filter(|&(_, d)| d >= 0.5)
                .collect();
            grew.sort_by(|a, b| b.0.cmp(&a.0));
            let sizes = grew
                .iter()
                .map(|(k, d)| {
                    let k = if *k == u64::MAX { ">65536".to_string() } else { format!("<={k}") };
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
        _ => ("null".into(), "null".into(), "null".into(), "null".into(), "null".into()),
    };
    println!(
        "{{\"conns\":{conns},\"open_secs\":{open_secs:.3},\"rss_before_kib\":{rss0},\"rss_after_kib\":{rss1},\
         \"rss_per_conn_bytes\":{rss_per:.1},\"heap_before_bytes\":{hb},\"heap_after_bytes\":{ha},\
         \"heap_per_conn_bytes\":{hpc},\"allocs_per_conn\":{apc},\"blocks_per_conn_by_size\":{sizes}}}"
    );
    drop(socks);
    drop(warm);
}
