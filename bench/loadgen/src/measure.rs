//! The measured window both load generators use: connect, warm up, measure; the CPU time
//! of this process, of the server (`--server-pid`: utime+stime from /proc/PID/stat and the
//! on-CPU time from /proc/PID/schedstat) and of the rest of the machine (/proc/stat) at its
//! start and end; latency percentiles and the JSON output helpers. With
//! [`Schedule::with_tree`] also the CPU of the server's whole process tree ([`tree_cpu`]: a
//! daemon and the programs it runs).

use std::time::{Duration, Instant};

/// utime + stime of a process, in seconds, and its on-CPU time from schedstat (ns precision).
pub fn proc_cpu(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let sched = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .unwrap_or(f64::NAN);
    Some(((utime + stime) / tck, sched))
}

/// The CPU of a process tree, in seconds, and how many processes it has now: the process's
/// own utime+stime, plus cutime+cstime (the children it has waited for, and theirs), plus,
/// for every live descendant (found through the parent PIDs in /proc/*/stat), its on-CPU
/// time (the schedstat of each of its threads, in ns: a program that used less than a
/// clock tick shows 0 in utime+stime, and 64 of them lose most of their time to that
/// rounding) and its cutime+cstime. A child reaped between the reads is counted twice or
/// not at all (one short program's CPU at each end of a window); processes that vanish
/// while being read are skipped.
pub fn tree_cpu(pid: u32) -> Option<(f64, usize)> {
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // (pid, ppid, utime+stime and cutime+cstime in ticks) of every process.
    let mut procs: Vec<(u32, u32, (f64, f64))> = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, ticks)) = stat_ticks(p) {
            procs.push((p, ppid, ticks));
        }
    }
    let mut total = 0.0;
    let mut n = 0;
    let mut tree = vec![pid];
    let mut i = 0;
    // Breadth first over the descendants; bounded by the number of processes.
    while i < tree.len() && i <= procs.len() {
        let p = tree[i];
        i += 1;
        if let Some(&(_, _, (own, children))) = procs.iter().find(|x| x.0 == p) {
            total += children / tck;
            // The root: ticks (its threads' sum rounds once); the rest: schedstat.
            total += if p == pid {
                own / tck
            } else {
                threads_on_cpu(p).unwrap_or(own / tck)
            };
            n += 1;
        } else if p == pid {
            return None;
        }
        tree.extend(procs.iter().filter(|x| x.1 == p && x.0 != p).map(|x| x.0));
    }
    Some((total, n))
}

/// The on-CPU time of all threads of a process, in seconds (schedstat, ns precision).
fn threads_on_cpu(pid: u32) -> Option<f64> {
    let mut ns = 0.0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<f64>().ok()?;
    }
    Some(ns / 1e9)
}

/// The parent PID, utime+stime and cutime+cstime (ticks) of a process.
fn stat_ticks(pid: u32) -> Option<(u32, (f64, f64))> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime..cstime fields 14-17.
    let ppid = f.get(1)?.parse().ok()?;
    let v = |k: usize| -> Option<f64> { f.get(k)?.parse().ok() };
    Some((ppid, (v(11)? + v(12)?, v(13)? + v(14)?)))
}

/// CPU time spent by the whole machine (all CPUs), in seconds: (process time: user, nice,
/// system, steal; interrupt time: irq, softirq). With IRQ time accounting (this kernel has
/// it) loopback TCP processing done in softirq is charged to softirq, not to the processes.
pub fn machine_busy() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else {
        return (f64::NAN, f64::NAN);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return (f64::NAN, f64::NAN);
    }
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    ((v[0] + v[1] + v[2] + v[7]) / tck, (v[5] + v[6]) / tck)
}

/// This process's CPU time (user + system), in seconds.
pub fn self_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The clocks at one end of the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: Instant,
    /// The wall clock (seconds since the epoch), to line the window up with a trace taken
    /// meanwhile (bench/run's syscall pass: strace timestamps).
    unix: f64,
    own_cpu: f64,
    server: Option<(f64, f64)>,
    /// The server's process tree: CPU seconds and processes.
    tree: Option<(f64, usize)>,
    busy: (f64, f64),
}

impl Mark {
    pub fn take(server_pid: Option<u32>) -> Mark {
        Mark::take_with(server_pid, false)
    }

    /// With `tree`, the server's process tree's CPU too.
    pub fn take_with(server_pid: Option<u32>, tree: bool) -> Mark {
        Mark {
            at: Instant::now(),
            unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(f64::NAN, |d| d.as_secs_f64()),
            own_cpu: self_cpu(),
            server: server_pid.and_then(proc_cpu),
            tree: server_pid.filter(|_| tree).and_then(tree_cpu),
            busy: machine_busy(),
        }
    }
}

/// Where a run is, from [`Schedule::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not every connection is open yet.
    Connecting,
    /// They did not all open within the connect timeout: the run failed.
    TimedOut,
    /// All open, not measuring yet.
    Warmup,
    /// Inside the measured window: count.
    Measuring,
    /// The window just ended (its end is marked): stop.
    Done,
}

/// The run's phases: every connection opens (within `connect_timeout`), then `warmup`
/// unmeasured, then `duration` measured.
pub struct Schedule {
    warmup: Duration,
    duration: Duration,
    connect_timeout: Duration,
    server_pid: Option<u32>,
    /// Also measure the server's process tree.
    tree: bool,
    start: Instant,
    all_open_at: Option<Instant>,
    window_start: Option<Mark>,
    window_end: Option<Mark>,
}

impl Schedule {
    pub fn new(
        warmup: Duration,
        duration: Duration,
        connect_timeout: Duration,
        server_pid: Option<u32>,
    ) -> Schedule {
        Schedule {
            warmup,
            duration,
            connect_timeout,
            server_pid,
            tree: false,
            start: Instant::now(),
            all_open_at: None,
            window_start: None,
            window_end: None,
        }
    }

    /// Measures the CPU of the server's whole process tree too (see [`tree_cpu`]).
    pub fn with_tree(mut self, tree: bool) -> Schedule {
        self.tree = tree;
        self
    }

    /// Moves the phases on at `now`; `all_open`: every connection is open (or dead).
    pub fn step(&mut self, now: Instant, all_open: bool) -> Step {
        if self.all_open_at.is_none() {
            if all_open {
                self.all_open_at = Some(now);
            } else if now - self.start > self.connect_timeout {
                return Step::TimedOut;
            }
        }
        let Some(t0) = self.all_open_at else {
            return Step::Connecting;
        };
        if self.window_start.is_none() && now - t0 >= self.warmup {
            self.window_start = Some(Mark::take_with(self.server_pid, self.tree));
        }
        match self.window_start {
            None => Step::Warmup,
            Some(ws) if now - ws.at >= self.duration => {
                self.window_end = Some(Mark::take_with(self.server_pid, self.tree));
                Step::Done
            }
            Some(_) => Step::Measuring,
        }
    }

    /// What the measured window cost; NaN where it never started or ended.
    pub fn window(&self) -> Window {
        let (Some(a), Some(b)) = (self.window_start, self.window_end) else {
            return Window {
                secs: f64::NAN,
                own_cpu: f64::NAN,
                server_cpu: f64::NAN,
                server_sched: f64::NAN,
                noise_cpu: f64::NAN,
                irq_cpu: f64::NAN,
                tree_cpu: f64::NAN,
                tree_procs: None,
                start_unix: f64::NAN,
                end_unix: f64::NAN,
            };
        };
        let own_cpu = b.own_cpu - a.own_cpu;
        let (server_cpu, server_sched) = match (a.server, b.server) {
            (Some(x), Some(y)) => (y.0 - x.0, y.1 - x.1),
            _ => (f64::NAN, f64::NAN),
        };
        // What the rest of the machine used meanwhile: noise. The kernel reports the loopback
        // TCP work of this very test done in softirq as interrupt time in /proc/stat, yet also
        // charges it to the process it ran in: so the noise is all busy time less ours and the
        // server's (about 0 on a quiet machine), and the interrupt time is reported apart for
        // information.
        let irq_cpu = b.busy.1 - a.busy.1;
        let tree_cpu = match (a.tree, b.tree) {
            (Some(x), Some(y)) => y.0 - x.0,
            _ => f64::NAN,
        };
        // The tree holds the server: when it is measured, the noise is what it did not use.
        let served = if tree_cpu.is_finite() {
            tree_cpu
        } else {
            server_cpu
        };
        Window {
            secs: (b.at - a.at).as_secs_f64(),
            own_cpu,
            server_cpu,
            server_sched,
            noise_cpu: (b.busy.0 - a.busy.0) + irq_cpu - own_cpu - served,
            irq_cpu,
            tree_cpu,
            tree_procs: b.tree.map(|t| t.1),
            start_unix: a.unix,
            end_unix: b.unix,
        }
    }
}

/// The measured window's length and CPU times, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub secs: f64,
    /// This process's.
    pub own_cpu: f64,
    /// The server's utime+stime, and its on-CPU time from schedstat.
    pub server_cpu: f64,
    pub server_sched: f64,
    /// The rest of the machine's, and the interrupt time.
    pub noise_cpu: f64,
    pub irq_cpu: f64,
    /// With [`Schedule::with_tree`]: the server's process tree's CPU (server included),
    /// and how many processes the tree had at the end.
    pub tree_cpu: f64,
    pub tree_procs: Option<usize>,
    /// The window's ends on the wall clock, seconds since the epoch.
    pub start_unix: f64,
    pub end_unix: f64,
}

/// The `q` quantile of sorted nanosecond latencies, in µs.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// A latency in ns, saturated to fit the `u32` the percentiles are taken over.
pub fn latency_ns(from: Instant, to: Instant) -> u32 {
    to.saturating_duration_since(from)
        .as_nanos()
        .min(u32::MAX as u128) as u32
}

pub fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

/// A wall-clock time (seconds since the epoch) to the microsecond, or null.
pub fn unix_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        "null".into()
    }
}

pub fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn tree_counts_live_children() {
        let me = std::process::id();
        let (_, alone) = tree_cpu(me).expect("this process");
        // A child that waits on its stdin: in the tree until its stdin closes.
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("cat");
        let (cpu, with) = tree_cpu(me).expect("this process");
        assert!(cpu >= 0.0);
        assert!(
            with > alone,
            "{with} processes with a child, {alone} without"
        );
        drop(child.stdin.take());
        child.wait().expect("cat ends when its stdin closes");
        assert!(tree_cpu(u32::MAX).is_none());
    }
}
