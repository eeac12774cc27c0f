//! What the soak reads of the server beyond hostile's `watch::Proc`: its thread count and
//! zombies below it, and a sampler that keeps every figure's peak.

use crate::watch::Proc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The server's resources at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Probe {
    pub fds: usize,
    pub threads: usize,
    /// Every process below the server, zombies included.
    pub children: usize,
    /// Of those, zombies (exited, not reaped).
    pub zombies: usize,
    pub rss_kib: u64,
}

/// Reads the server's fds, threads, descendants and RSS from /proc.
pub fn probe(proc: &Proc) -> Result<Probe, String> {
    let descendants = proc.descendants();
    Ok(Probe {
        fds: proc.fds()?,
        threads: threads(proc.pid)?,
        children: descendants.len(),
        zombies: descendants.iter().filter(|&&p| is_zombie(p)).count(),
        rss_kib: proc.rss_kib()?,
    })
}

/// `Threads:` in /proc/PID/status.
pub fn threads(pid: u32) -> Result<usize, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no Threads in /proc/PID/status".to_string())
}

/// Whether the process is a zombie (state `Z` in /proc/PID/stat; gone counts as not).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // "pid (comm) state ...": comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(false)
}

/// Samples the server every 100 ms on a thread of its own until stopped; keeps each
/// figure's peak.
pub struct Peaks {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Probe>>,
}

impl Peaks {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Peaks {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let proc = Proc { pid };
            let mut peak = Probe::default();
            // Bounded: a day of samples at most.
            for _ in 0..864_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(p) = probe(&proc) {
                    peak.fds = peak.fds.max(p.fds);
                    peak.threads = peak.threads.max(p.threads);
                    peak.children = peak.children.max(p.children);
                    peak.zombies = peak.zombies.max(p.zombies);
                    peak.rss_kib = peak.rss_kib.max(p.rss_kib);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Peaks {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peaks.
    pub fn stop(mut self) -> Probe {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = Proc {
            pid: std::process::id(),
        };
        let p = probe(&me).unwrap();
        assert!(p.fds >= 3 && p.threads >= 1 && p.rss_kib > 0, "{p:?}");
        // Threads and fds more are seen (other tests run beside this one: a margin).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let parked: Vec<_> = (0..10)
            .map(|_| {
                let rx = std::sync::Arc::clone(&rx);
                std::thread::spawn(move || rx.lock().map(|r| r.recv().is_err()).unwrap_or(true))
            })
            .collect();
        let files: Vec<_> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let q = probe(&me).unwrap();
        assert!(q.threads >= p.threads + 8, "{p:?} {q:?}");
        assert!(q.fds >= p.fds + 40, "{p:?} {q:?}");
        drop((tx, files));
        for t in parked {
            let _ = t.join();
        }
        // A child, and then its zombie until it is reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let z = probe(&me).unwrap();
        assert_eq!((z.children, z.zombies), (1, 1), "{z:?}");
        child.wait().unwrap();
        assert_eq!(probe(&me).unwrap().children, 0);
    }
}
