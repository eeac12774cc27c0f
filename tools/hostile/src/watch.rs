//! The server's side, watched from outside: its fds, child processes and RSS from /proc,
//! and a well-behaved client that keeps being served (or not) while an attack runs.

use crate::net::Target;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::{CloseCode, Message, Options};

#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub fds: usize,
    pub children: usize,
    pub rss_kib: u64,
}

pub struct Proc {
    pub pid: u32,
}

impl Proc {
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        Ok(Snapshot {
            fds: self.fds()?,
            children: self.descendants().len(),
            rss_kib: self.rss_kib()?,
        })
    }

    pub fn fds(&self) -> Result<usize, String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .map_err(|e| format!("/proc/{}/fd: {e} (is the server running?)", self.pid))
    }

    pub fn rss_kib(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(|e| format!("/proc/{}/status: {e}", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS in /proc/PID/status".to_string())
    }

    /// Every process below the server (children, their children...), zombies included.
    pub fn descendants(&self) -> Vec<u32> {
        let mut parent_of: HashMap<u32, Vec<u32>> = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                    continue;
                };
                if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                    parent_of.entry(ppid).or_default().push(pid);
                }
            }
        }
        let mut out = Vec::new();
        let mut todo = vec![self.pid];
        while let Some(p) = todo.pop() {
            if out.len() > 100_000 {
                break;
            }
            for &c in parent_of.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
                out.push(c);
                todo.push(c);
            }
        }
        out
    }
}

/// Samples the server's RSS every 20 ms until stopped; keeps the peak.
pub struct Sampler {
    pub peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak_kib), Arc::clone(&stop));
        std::thread::spawn(move || {
            let proc = Proc { pid };
            while !s.load(Ordering::Relaxed) {
                if let Ok(rss) = proc.rss_kib() {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { peak_kib, stop }
    }

    pub fn stop(&self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// The well-behaved client's record: each session's start and end, and failures.
#[derive(Default)]
pub struct Good {
    pub sessions: Mutex<Vec<(Instant, Instant)>>,
    pub failures: Mutex<Vec<(Instant, String)>>,
    pub stop: AtomicBool,
}

impl Good {
    /// Whether a whole session ran inside [from, to].
    pub fn served_within(&self, from: Instant, to: Instant) -> usize {
        self.sessions
            .lock()
            .map(|s| s.iter().filter(|(a, b)| *a >= from && *b <= to).count())
            .unwrap_or(0)
    }

    pub fn failures_since(&self, from: Instant) -> Vec<String> {
        self.failures
            .lock()
            .map(|f| {
                f.iter()
                    .filter(|(t, _)| *t >= from)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Connects, echoes three text messages, closes with 1000 and expects 1000 back; again
/// every 100 ms until told to stop.
pub async fn good_loop(target: Target, good: Arc<Good>) {
    let mut i = 0u64;
    while !good.stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(8), session(&target, i))
            .await
            .unwrap_or_else(|_| Err("the session took over 8 s".into()));
        let end = Instant::now();
        match result {
            Ok(()) => {
                if let Ok(mut s) = good.sessions.lock() {
                    s.push((start, end));
                }
            }
            Err(e) => {
                if let Ok(mut f) = good.failures.lock() {
                    f.push((end, e));
                }
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session(target: &Target, i: u64) -> Result<(), String> {
    let mut options = Options::default();
    options.connect_timeout = Some(Duration::from_secs(5));
    options.handshake_timeout = Some(Duration::from_secs(5));
    options.tls = target.tls.clone();
    let (mut ws, _) = weft::tokio::connect_url(&target.url, options)
        .await
        .map_err(|e| format!("good client: connect: {e}"))?;
    for k in 0..3 {
        ws.send(format!("good {i} {k}"))
            .await
            .map_err(|e| format!("good client: send: {e}"))?;
    }
    for k in 0..3 {
        let want = Message::from(format!("good {i} {k}"));
        match ws.recv().await {
            Ok(Some(m)) if m == want => {}
            Ok(other) => return Err(format!("good client: expected {want:?}, got {other:?}")),
            Err(e) => return Err(format!("good client: recv: {e}")),
        }
    }
    ws.close(CloseCode::NORMAL, "")
        .await
        .map_err(|e| format!("good client: close: {e}"))?;
    match ws.connection().close_received() {
        Some(f) if f.code == CloseCode::NORMAL => Ok(()),
        Some(f) => Err(format!("good client: closed with {}", f.code.0)),
        None => Err("good client: no close frame back".into()),
    }
}
