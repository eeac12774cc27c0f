//! `hostile`: hostile WebSocket clients against one server on 127.0.0.1, each case bounded
//! in time and size, with the server watched from outside (its fds, child processes and
//! RSS in /proc) and a well-behaved client that must be served while each attack runs.
//!
//! ```text
//! hostile --url ws://127.0.0.1:PORT/PATH --pid PID [--tls CA.pem] [--name LABEL]
//!         [--header-timeout-ms 10000] [--max-message BYTES] [--rss-tolerance-mib 16]
//!         [--slowloris 100] [--disconnects 2000] [--plain-path PATH]
//!         [--only CASE,..] [--skip CASE,..] [--h2]
//! hostile cert DIR      writes DIR/cert.pem and DIR/key.pem (self-signed, 127.0.0.1)
//! ```
//!
//! `--h2`: the server speaks HTTP/2 (h2c by prior knowledge on a ws:// URL's port, ALPN
//! `h2` on a wss:// one) with RFC 8441's extended CONNECT: the `h2-*` cases run too.
//! `--plain-path`: where a plain GET is kept alive (slowloris dribbles the next request's
//! head on that connection; default the URL's path). One `PASS`/`FAIL` line per case; exit status 1 when any case fails, 2 on bad arguments.
//! After each case the server's fds and children must come back to their baseline and its
//! RSS to within the tolerance (bounded waits; a case may allow more, h2-never-reads does:
//! glibc keeps what hundreds of streams freed), and its peak RSS during the case must stay
//! within the case's bound above the baseline.

mod cases;
mod h2;
mod net;
mod watch;

use net::Target;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watch::{Good, Proc, Sampler, Snapshot};

const USAGE: &str = "usage: hostile --url ws://127.0.0.1:PORT/PATH --pid PID [--tls CA.pem] \
[--name LABEL] [--header-timeout-ms MS] [--max-message BYTES] [--rss-tolerance-mib MIB] \
[--slowloris N] [--disconnects N] [--plain-path PATH] [--only CASE,..] [--skip CASE,..] [--h2]\n       hostile cert DIR";

/// Fds the server may hold above its baseline after a case (a lazily opened file, say).
const FD_SLACK: usize = 2;

struct Args {
    name: String,
    target: Target,
    pid: u32,
    header_timeout: Duration,
    max_message: u64,
    rss_tolerance_mib: u64,
    slowloris: usize,
    disconnects: usize,
    plain_path: Option<String>,
    only: Vec<String>,
    skip: Vec<String>,
    h2: bool,
}

/// What the cases see.
pub struct Ctx {
    pub t: Target,
    pub header_timeout: Duration,
    pub max_message: u64,
    pub slowloris: usize,
    pub disconnects: usize,
    pub plain_path: String,
    good: Arc<Good>,
    attack_start: Mutex<Option<Instant>>,
}

impl Ctx {
    /// Marks the attack as underway (the first call counts).
    pub fn attack_on(&self) {
        if let Ok(mut s) = self.attack_start.lock() {
            s.get_or_insert_with(Instant::now);
        }
    }

    fn start(&self) -> Option<Instant> {
        self.attack_start.lock().ok().and_then(|s| *s)
    }

    /// Whether the good client has had a whole session since the attack began.
    pub fn served(&self) -> bool {
        self.start()
            .is_some_and(|s| self.good.served_within(s, Instant::now()) > 0)
    }

    /// Waits (at most `max`) until [`served`](Self::served).
    pub async fn wait_served(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        while !self.served() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("cert") {
        argv.next();
        let dir = argv.next().ok_or("cert needs a directory")?;
        write_cert(&dir)?;
        return Ok(None);
    }
    let (mut url, mut pid, mut ca) = (None, None, None);
    let mut a = Args {
        name: String::new(),
        target: Target::parse("ws://127.0.0.1:1/", None)?,
        pid: 0,
        header_timeout: Duration::from_secs(10),
        max_message: 64 << 20,
        rss_tolerance_mib: 16,
        slowloris: 100,
        disconnects: 2000,
        plain_path: None,
        only: Vec::new(),
        skip: Vec::new(),
        h2: false,
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--pid" => pid = Some(num(value()?)? as u32),
            "--tls" => ca = Some(value()?),
            "--name" => a.name = value()?,
            "--header-timeout-ms" => a.header_timeout = Duration::from_millis(num(value()?)?),
            "--max-message" => a.max_message = num(value()?)?,
            "--rss-tolerance-mib" => a.rss_tolerance_mib = num(value()?)?,
            "--slowloris" => a.slowloris = num(value()?)?.min(2000) as usize,
            "--disconnects" => a.disconnects = num(value()?)?.min(100_000) as usize,
            "--plain-path" => a.plain_path = Some(value()?),
            "--only" => a.only = value()?.split(',').map(str::to_string).collect(),
            "--skip" => a.skip = value()?.split(',').map(str::to_string).collect(),
            "--h2" => a.h2 = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let tls = match ca {
        None => None,
        Some(file) => {
            let pem = std::fs::read(&file).map_err(|e| format!("--tls {file}: {e}"))?;
            Some(
                weft::tls::client_config_with_roots(&pem)
                    .map_err(|e| format!("--tls {file}: {e}"))?,
            )
        }
    };
    a.target = Target::parse(&url.ok_or("--url is required")?, tls)?;
    a.pid = pid.ok_or("--pid is required")?;
    for name in a.only.iter().chain(&a.skip) {
        if !cases::CASES.iter().any(|(n, _)| n == name) {
            return Err(format!("no case {name}"));
        }
    }
    if a.name.is_empty() {
        a.name = a.target.url.clone();
    }
    Ok(Some(a))
}

/// A throwaway self-signed certificate for 127.0.0.1 and localhost.
fn write_cert(dir: &str) -> Result<(), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("key: {e}"))?;
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| format!("certificate: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("certificate: {e}"))?;
    std::fs::write(format!("{dir}/cert.pem"), cert.pem()).map_err(|e| format!("{dir}: {e}"))?;
    std::fs::write(format!("{dir}/key.pem"), key.serialize_pem())
        .map_err(|e| format!("{dir}: {e}"))?;
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("hostile: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostile: runtime: {e}");
            std::process::exit(1);
        }
    };
    let failed = rt.block_on(run(args));
    // Tasks of a failed case may still hold sockets: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs every case; the number that failed.
async fn run(a: Args) -> usize {
    let proc = Proc { pid: a.pid };
    let label = a.name.clone();
    // Warm up (lazily made buffers, threads, files), then take the baseline.
    let warm = Arc::new(Good::default());
    let warm_task = tokio::spawn(watch::good_loop(a.target.clone(), Arc::clone(&warm)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    warm.stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), warm_task).await;
    if let Some(e) = warm
        .failures_since(Instant::now() - Duration::from_secs(3600))
        .first()
    {
        println!("FAIL [{label}] warm-up: {e}");
        return 1;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let base = match proc.snapshot() {
        Ok(s) => s,
        Err(e) => {
            println!("FAIL [{label}] baseline: {e}");
            return 1;
        }
    };
    println!(
        "[{label}] baseline: {} fds, {} child processes, RSS {:.1} MiB; RSS tolerance after each case {} MiB",
        base.fds,
        base.children,
        mib(base.rss_kib),
        a.rss_tolerance_mib
    );
    let mut failed = 0;
    let started = Instant::now();
    for (name, case) in cases::CASES {
        if (!a.only.is_empty() && !a.only.iter().any(|n| n == name))
            || a.skip.iter().any(|n| n == name)
            || (name.starts_with("h2-") && !a.h2)
        {
            continue;
        }
        if !run_case(&a, &proc, base, name, *case).await {
            failed += 1;
        }
    }
    println!(
        "[{label}] {} in {:.1} s",
        if failed == 0 {
            "all cases passed".to_string()
        } else {
            format!("{failed} case(s) failed")
        },
        started.elapsed().as_secs_f64()
    );
    failed
}

async fn run_case(a: &Args, proc: &Proc, base: Snapshot, name: &str, case: cases::CaseFn) -> bool {
    let good = Arc::new(Good::default());
    let ctx = Ctx {
        t: a.target.clone(),
        header_timeout: a.header_timeout,
        max_message: a.max_message,
        slowloris: a.slowloris,
        disconnects: a.disconnects,
        plain_path: a
            .plain_path
            .clone()
            .unwrap_or_else(|| a.target.path.clone()),
        good: Arc::clone(&good),
        attack_start: Mutex::new(None),
    };
    let sampler = Sampler::start(proc.pid);
    let good_task = tokio::spawn(watch::good_loop(a.target.clone(), Arc::clone(&good)));
    let t0 = Instant::now();
    let limit = a.header_timeout * 3 + Duration::from_secs(60);
    let out = match tokio::time::timeout(limit, case(&ctx)).await {
        Ok(o) => o,
        Err(_) => cases::Outcome {
            pass: false,
            observed: format!("the case did not end within {limit:?}"),
            peak_mib: 0,
            rss_tolerance_mib: 0,
        },
    };
    let attack_end = Instant::now();
    good.stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), good_task).await;
    let attack_start = ctx.start().unwrap_or(t0);
    let served = good.served_within(attack_start, attack_end);
    let failures = good.failures_since(t0);

    // Back to the baseline?
    let tolerance_mib = a.rss_tolerance_mib.max(out.rss_tolerance_mib);
    let tolerance = tolerance_mib * 1024;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = proc.snapshot();
    loop {
        let settled = match &after {
            Ok(s) => {
                s.fds <= base.fds + FD_SLACK
                    && s.children <= base.children
                    && s.rss_kib <= base.rss_kib + tolerance
            }
            Err(_) => true,
        };
        if settled || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = proc.snapshot();
    }
    let peak = sampler.stop();
    let took = t0.elapsed();
    let mut problems = Vec::new();
    if !out.pass {
        problems.push("the server's answer".to_string());
    }
    if served == 0 {
        problems.push("the good client was not served during the attack".into());
    }
    if let Some(f) = failures.first() {
        problems.push(format!("{} good-client failure(s): {f}", failures.len()));
    }
    let resources = match &after {
        Err(e) => {
            problems.push(e.clone());
            String::new()
        }
        Ok(s) => {
            if s.fds > base.fds + FD_SLACK {
                problems.push(format!(
                    "fds {} > baseline {} + {FD_SLACK}",
                    s.fds, base.fds
                ));
            }
            if s.children > base.children {
                problems.push(format!(
                    "{} child processes left (baseline {})",
                    s.children, base.children
                ));
            }
            if s.rss_kib > base.rss_kib + tolerance {
                problems.push(format!(
                    "RSS {:.1} MiB > baseline {:.1} + {} MiB",
                    mib(s.rss_kib),
                    mib(base.rss_kib),
                    tolerance_mib
                ));
            }
            if out.peak_mib > 0 && peak > base.rss_kib + out.peak_mib * 1024 {
                problems.push(format!(
                    "peak RSS {:.1} MiB > baseline + {} MiB",
                    mib(peak),
                    out.peak_mib
                ));
            }
            format!(
                "fds {}->{}, children {}->{}, RSS {:.1}->peak {:.1} (bound +{})->{:.1} MiB",
                base.fds,
                s.fds,
                base.children,
                s.children,
                mib(base.rss_kib),
                mib(peak),
                out.peak_mib,
                mib(s.rss_kib)
            )
        }
    };
    let pass = problems.is_empty();
    println!(
        "{} [{}] {name} ({:.1} s): {}; good client served {served}x during it; {resources}{}",
        if pass { "PASS" } else { "FAIL" },
        a.name,
        took.as_secs_f64(),
        out.observed,
        if pass {
            String::new()
        } else {
            format!(" -- FAILED: {}", problems.join("; "))
        }
    );
    pass
}
