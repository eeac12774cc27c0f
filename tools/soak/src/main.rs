//! `soak`: a bounded soak of one WebSocket server on 127.0.0.1, watched from outside (its
//! fds, threads, child processes and RSS in /proc).
//!
//! ```text
//! soak --url ws://127.0.0.1:PORT/PATH --pid PID [--name LABEL] [--mode echo|lines|stream]
//!      [--seconds 20] [--workers 300] [--connections 10000] [--concurrency 200]
//!      [--max-size 262144] [--max-messages 12] [--deflate-percent 50]
//!      [--rss-tolerance-mib 8] [--rss-tolerance-percent 25] [--settle-seconds 30] [--seed N]
//!      [--warm-seconds 0] [--expect-children]
//! ```
//!
//! Two phases, each measured against one baseline taken after a warm-up (8 clients for 2 s,
//! then, with `--warm-seconds`, every worker for that long: for a server whose allocator
//! keeps what it freed, so that the baseline is its working set's high-water mark; see
//! `scripts/soak` on glibc):
//!
//! 1. **churn**: `--workers` clients at once for `--seconds`, each connecting again and again:
//!    permessage-deflate offered on about `--deflate-percent` of the connections, up to
//!    `--max-messages` messages of 16 B .. `--max-size` (log-uniform; text and binary;
//!    random or compressible; a quarter sent in several frames; some batched into one
//!    write), every echo compared byte for byte, then an ending: a clean close (1000 both
//!    ways, 70 %), a drop between messages (10 %), a drop inside a message (10 %: inside a
//!    frame or between frames) or before the handshake completes (10 %: nothing sent, part
//!    of the head, all of it); each drop a FIN or a reset.
//! 2. **open-close**: `--connections` connections (at most `--concurrency` at once), each
//!    with one small message echoed, then closed (1000, or one in eight reset).
//!
//! After each phase (a bounded wait, polling every 200 ms for `--settle-seconds`): fds
//! exactly at the baseline, threads at most the baseline, no child process and no zombie
//! below the server, RSS within the baseline + max(`--rss-tolerance-mib`,
//! `--rss-tolerance-percent` of the baseline). During each phase the peak fds must rise
//! above the baseline (the counting is seen to work; with `--expect-children`, a child
//! process must be seen too), and every unexpected outcome (a failed
//! connect or handshake, an echo that differs, a close code other than 1000, a session that
//! hangs) fails the phase. `--mode`: what comes back: `echo` (each message as sent),
//! `lines` (text without newlines, each message back as one text message: websockd `cat`),
//! `stream` (binary, the bytes back in order in any messages: websockd `--binary cat`).
//! One `PASS`/`FAIL` line per phase; exit status 1 when one fails, 2 on bad arguments.

#[allow(dead_code)]
#[path = "../../hostile/src/net.rs"]
mod net;
mod probe;
mod session;
#[allow(dead_code)]
#[path = "../../hostile/src/watch.rs"]
mod watch;

use net::{Rng, Target};
use probe::{Peaks, Probe};
use session::{Cfg, Mode, Stats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watch::Proc;

const USAGE: &str = "usage: soak --url ws://127.0.0.1:PORT/PATH --pid PID [--name LABEL] \
[--mode echo|lines|stream] [--seconds S] [--workers N] [--connections N] [--concurrency N] \
[--max-size BYTES] [--max-messages N] [--deflate-percent P] [--rss-tolerance-mib MIB] \
[--rss-tolerance-percent P] [--settle-seconds S] [--seed N] [--warm-seconds S] [--expect-children]";

struct Args {
    name: String,
    cfg: Cfg,
    pid: u32,
    seconds: u64,
    workers: u64,
    connections: u64,
    concurrency: u64,
    rss_tolerance_mib: u64,
    rss_tolerance_percent: u64,
    settle: Duration,
    seed: u64,
    warm_seconds: u64,
    expect_children: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let (mut url, mut pid) = (None, None);
    let mut a = Args {
        name: String::new(),
        cfg: Cfg {
            target: Target::parse("ws://127.0.0.1:1/", None)?,
            mode: Mode::Echo,
            max_size: 256 * 1024,
            deflate_percent: 50,
            max_messages: 12,
            session_timeout: Duration::from_secs(60),
        },
        pid: 0,
        seconds: 20,
        workers: 300,
        connections: 10_000,
        concurrency: 200,
        rss_tolerance_mib: 8,
        rss_tolerance_percent: 25,
        settle: Duration::from_secs(30),
        seed: 1,
        warm_seconds: 0,
        expect_children: false,
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--pid" => pid = Some(num(value()?)? as u32),
            "--name" => a.name = value()?,
            "--mode" => {
                a.cfg.mode = match value()?.as_str() {
                    "echo" => Mode::Echo,
                    "lines" => Mode::Lines,
                    "stream" => Mode::Stream,
                    other => return Err(format!("--mode: unknown mode {other}")),
                }
            }
            "--seconds" => a.seconds = num(value()?)?.min(24 * 3600),
            "--workers" => a.workers = num(value()?)?.clamp(1, 2000),
            "--connections" => a.connections = num(value()?)?.min(1_000_000),
            "--concurrency" => a.concurrency = num(value()?)?.clamp(1, 2000),
            "--max-size" => a.cfg.max_size = num(value()?)?.clamp(16, 16 << 20) as usize,
            "--max-messages" => a.cfg.max_messages = num(value()?)?.min(10_000),
            "--deflate-percent" => a.cfg.deflate_percent = num(value()?)?.min(100),
            "--rss-tolerance-mib" => a.rss_tolerance_mib = num(value()?)?,
            "--rss-tolerance-percent" => a.rss_tolerance_percent = num(value()?)?,
            "--settle-seconds" => a.settle = Duration::from_secs(num(value()?)?.min(600)),
            "--seed" => a.seed = num(value()?)?,
            "--warm-seconds" => a.warm_seconds = num(value()?)?.min(600),
            "--expect-children" => a.expect_children = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    a.cfg.target = Target::parse(&url.ok_or("--url is required")?, None)?;
    a.pid = pid.ok_or("--pid is required")?;
    if a.name.is_empty() {
        a.name = a.cfg.target.url.clone();
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
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
            eprintln!("soak: runtime: {e}");
            std::process::exit(1);
        }
    };
    let failed = rt.block_on(run(Arc::new(args)));
    // Tasks of a failed phase may still hold sockets: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the warm-up, the baseline and both phases; the number of phases that failed.
async fn run(a: Arc<Args>) -> usize {
    let proc = Proc { pid: a.pid };
    let label = &a.name;
    let t0 = Instant::now();

    let mut light_kib = 0;
    // Warm up: a few clients first (lazily made buffers, zlib, threads), then every worker
    // for --warm-seconds, so that the allocator has reached the working set's size before
    // the baseline is taken (glibc keeps much of what is freed).
    for (workers, seconds, what) in [
        (8, 2, "warm-up"),
        (a.workers, a.warm_seconds, "warm-up at full concurrency"),
    ] {
        if seconds == 0 {
            continue;
        }
        let warm = Arc::new(Stats::default());
        let done = spawn_churn(
            &a,
            &warm,
            workers,
            Duration::from_secs(seconds),
            a.seed ^ 0xfeed,
        );
        if !join_all(
            done,
            Duration::from_secs(seconds) + a.cfg.session_timeout + Duration::from_secs(10),
        )
        .await
        {
            println!("FAIL [{label}] {what}: a client did not finish");
            return 1;
        }
        if warm.error_count() > 0 {
            println!("FAIL [{label}] {what}: {}", warm.errors_line());
            return 1;
        }
        if workers == 8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            light_kib = proc.rss_kib().unwrap_or(0);
        }
    }
    let base = match steady_baseline(&proc, a.settle).await {
        Ok(b) => b,
        Err(e) => {
            println!("FAIL [{label}] baseline: {e}");
            return 1;
        }
    };
    let tolerance_kib =
        (a.rss_tolerance_mib * 1024).max(base.rss_kib * a.rss_tolerance_percent / 100);
    println!(
        "[{label}] baseline: {} fds, {} threads, {} child processes, RSS {:.1} MiB \
         ({:.1} MiB after the light warm-up); RSS tolerance after each phase {:.1} MiB (max of {} MiB and {} %)",
        base.fds,
        base.threads,
        base.children,
        mib(base.rss_kib),
        mib(light_kib),
        mib(tolerance_kib),
        a.rss_tolerance_mib,
        a.rss_tolerance_percent
    );
    let mut failed = 0;

    // Phase 1: churn.
    let stats = Arc::new(Stats::default());
    let peaks = Peaks::start(a.pid);
    let started = Instant::now();
    let workers = spawn_churn(
        &a,
        &stats,
        a.workers,
        Duration::from_secs(a.seconds),
        a.seed,
    );
    let finished = join_all(
        workers,
        Duration::from_secs(a.seconds) + a.cfg.session_timeout + Duration::from_secs(10),
    )
    .await;
    if !finished {
        stats.error(("hang", "a churn worker did not finish in time".into()));
    }
    let took = started.elapsed();
    let peak = peaks.stop();
    println!(
        "[{label}] churn: {} workers for {:.1} s: {}",
        a.workers,
        took.as_secs_f64(),
        figures(&stats, took)
    );
    if !verdict(&a, &proc, base, tolerance_kib, "churn", &stats, peak).await {
        failed += 1;
    }

    // Phase 2: open and close.
    if a.connections == 0 {
        println!("[{label}] open-close: skipped (--connections 0)");
        return failed;
    }
    let stats = Arc::new(Stats::default());
    let peaks = Peaks::start(a.pid);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let limit = Duration::from_secs(600);
    let deadline = started + limit;
    let mut tasks = Vec::new();
    for w in 0..a.concurrency.min(a.connections.max(1)) {
        let (a, stats, next) = (Arc::clone(&a), Arc::clone(&stats), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(a.seed ^ (w << 32) ^ 0x0c10);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.connections || Instant::now() >= deadline {
                    break;
                }
                session::open_close(&a.cfg, &stats, i, &mut rng).await;
            }
        }));
    }
    if !join_all(
        tasks,
        limit + a.cfg.session_timeout + Duration::from_secs(10),
    )
    .await
    {
        stats.error(("hang", "an open-close worker did not finish in time".into()));
    }
    let took = started.elapsed();
    let peak = peaks.stop();
    let made = Stats::get(&stats.attempted);
    if made < a.connections {
        stats.error((
            "incomplete",
            format!(
                "{made} of {} connections made within {limit:?}",
                a.connections
            ),
        ));
    }
    println!(
        "[{label}] open-close: {} connections, {} at once, in {:.1} s: {}",
        a.connections,
        a.concurrency,
        took.as_secs_f64(),
        figures(&stats, took)
    );
    if !verdict(&a, &proc, base, tolerance_kib, "open-close", &stats, peak).await {
        failed += 1;
    }
    println!(
        "[{label}] {} in {:.1} s",
        if failed == 0 {
            "both phases passed".to_string()
        } else {
            format!("{failed} phase(s) failed")
        },
        t0.elapsed().as_secs_f64()
    );
    failed
}

/// `n` churn workers until `for_how_long` has passed (each at most a million sessions).
fn spawn_churn(
    a: &Arc<Args>,
    stats: &Arc<Stats>,
    n: u64,
    for_how_long: Duration,
    seed: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let deadline = Instant::now() + for_how_long;
    (0..n)
        .map(|w| {
            let (a, stats) = (Arc::clone(a), Arc::clone(stats));
            tokio::spawn(async move {
                let mut rng = Rng::new(seed ^ (w + 1).wrapping_mul(0x1000_0001));
                // Staggered starts: not every worker connects in the same millisecond.
                tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
                for _ in 0..1_000_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    session::churn(&a.cfg, &stats, &mut rng).await;
                }
            })
        })
        .collect()
}

/// Waits for every task, at most `limit` in all; aborts the rest. Whether all finished.
async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut all = true;
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => all = false, // panicked
            Err(_) => {
                abort.abort();
                all = false;
            }
        }
    }
    all
}

/// The baseline once no child is left and two probes 500 ms apart agree on fds and
/// threads (at most `limit`).
async fn steady_baseline(proc: &Proc, limit: Duration) -> Result<Probe, String> {
    let deadline = Instant::now() + limit;
    let mut last = probe::probe(proc)?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = probe::probe(proc)?;
        if (now.children == 0 && now.fds == last.fds && now.threads == last.threads)
            || Instant::now() >= deadline
        {
            return Ok(now);
        }
        last = now;
    }
}

fn figures(s: &Stats, took: Duration) -> String {
    let g = Stats::get;
    let bytes = g(&s.bytes);
    format!(
        "{} connections ({} handshakes, {} with permessage-deflate); {} messages ({} fragmented) \
         verified, {:.1} MiB each way ({:.1} MiB/s); endings: {} clean, {} dropped between \
         messages, {} inside a message, {} before the handshake ({} of the drops resets); \
         errors: {}",
        g(&s.attempted),
        g(&s.opened),
        g(&s.deflate),
        g(&s.messages),
        g(&s.fragmented),
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / took.as_secs_f64().max(0.001),
        g(&s.clean),
        g(&s.drop_between),
        g(&s.drop_mid),
        g(&s.drop_pre),
        g(&s.resets),
        s.errors_line()
    )
}

/// Settles (bounded), checks and prints the phase's PASS/FAIL line.
async fn verdict(
    a: &Args,
    proc: &Proc,
    base: Probe,
    tolerance_kib: u64,
    phase: &str,
    stats: &Stats,
    peak: Probe,
) -> bool {
    let back = |p: &Probe| {
        p.fds == base.fds
            && p.threads <= base.threads
            && p.children == 0
            && p.zombies == 0
            && p.rss_kib <= base.rss_kib + tolerance_kib
    };
    let started = Instant::now();
    let mut after = probe::probe(proc);
    loop {
        let done = match &after {
            Ok(p) => back(p),
            Err(_) => true,
        };
        if done || started.elapsed() >= a.settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = probe::probe(proc);
    }
    let settled_in = started.elapsed();
    let mut problems = Vec::new();
    let errors = stats.error_count();
    if errors > 0 {
        problems.push(format!("{errors} unexpected outcome(s)"));
    }
    if Stats::get(&stats.opened) == 0 {
        problems.push("no connection was made".into());
    }
    // The counting must be able to see connections at all.
    if peak.fds <= base.fds {
        problems.push(format!(
            "the peak fds ({}) never rose above the baseline ({}): is the pid right?",
            peak.fds, base.fds
        ));
    }
    if a.expect_children && peak.children == 0 {
        problems.push("no child process was ever seen below the server (--expect-children)".into());
    }
    let resources = match &after {
        Err(e) => {
            problems.push(format!("the server: {e}"));
            String::new()
        }
        Ok(p) => {
            if p.fds != base.fds {
                problems.push(format!("fds {} != baseline {}", p.fds, base.fds));
            }
            if p.threads > base.threads {
                problems.push(format!("threads {} > baseline {}", p.threads, base.threads));
            }
            if p.children > 0 || p.zombies > 0 {
                problems.push(format!(
                    "{} child process(es) left, {} zombie(s)",
                    p.children, p.zombies
                ));
            }
            if p.rss_kib > base.rss_kib + tolerance_kib {
                problems.push(format!(
                    "RSS {:.1} MiB > baseline {:.1} + {:.1} MiB",
                    mib(p.rss_kib),
                    mib(base.rss_kib),
                    mib(tolerance_kib)
                ));
            }
            format!(
                "settled in {:.1} s: fds {}->peak {}->{}, threads {}->peak {}->{}, \
                 children {}->peak {}->{} ({} zombies), RSS {:.1}->peak {:.1}->{:.1} MiB",
                settled_in.as_secs_f64(),
                base.fds,
                peak.fds,
                p.fds,
                base.threads,
                peak.threads,
                p.threads,
                base.children,
                peak.children,
                p.children,
                p.zombies,
                mib(base.rss_kib),
                mib(peak.rss_kib),
                mib(p.rss_kib)
            )
        }
    };
    let pass = problems.is_empty();
    println!(
        "{} [{}] {phase}: {resources}{}",
        if pass { "PASS" } else { "FAIL" },
        a.name,
        if pass {
            String::new()
        } else {
            format!(" -- FAILED: {}", problems.join("; "))
        }
    );
    pass
}
