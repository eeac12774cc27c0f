//! The program behind a connection: started in a process group of its own, with a clean
//! environment and piped stdio, and ended — the whole group — when the connection is over.
//!
//! Each program has a reaper task that owns the child. It reports the program's exit
//! (`Program::exit`) and, when asked to stop ([`Program::stop`], or the handle dropped),
//! runs websocketd's ladder on the group: stdin is already closed, then wait
//! 100 ms + `closems`; SIGINT, wait 250 ms + `closems`; SIGTERM, wait 500 ms + `closems`;
//! SIGKILL. After the program itself has exited, whatever it left in its group gets
//! SIGTERM, then SIGKILL, and is reaped (websockd is the child subreaper, so orphans come
//! back to it instead of becoming zombies under an init that may not reap).

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory (`None`: the daemon's).
    pub dir: Option<std::path::PathBuf>,
    /// `--closems`: added to each wait of the ladder.
    pub close_extra: Duration,
}

/// How many programs are running (for `--maxforks`), shared by the daemon.
#[derive(Debug, Default)]
pub struct Forks {
    running: AtomicUsize,
}

impl Forks {
    /// A slot for one more program, unless `max` are running.
    pub fn acquire(self: &Arc<Self>, max: Option<usize>) -> Option<ForkSlot> {
        let mut now = self.running.load(Ordering::Relaxed);
        loop {
            if max.is_some_and(|m| now >= m) {
                return None;
            }
            match self.running.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ForkSlot(self.clone())),
                Err(actual) => now = actual,
            }
        }
    }
}

/// One program's place under `--maxforks`; freed when dropped (after the program ended).
#[derive(Debug)]
pub struct ForkSlot(Arc<Forks>);

impl Drop for ForkSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running program: its pipes and the handle on its reaper.
#[derive(Debug)]
pub struct Program {
    /// Its process id (and process group id).
    pub pid: u32,
    /// Its stdin (drop it to close).
    pub stdin: Option<ChildStdin>,
    /// Its stdout.
    pub stdout: Option<ChildStdout>,
    /// Its stderr.
    pub stderr: Option<ChildStderr>,
    /// The program's exit status, sent once it exited (taken by the bridge).
    pub exit: Option<oneshot::Receiver<ExitStatus>>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Program {
    /// Starts `spec` in a new process group. `slot` is held until the group is gone.
    pub fn spawn(spec: &Spec, slot: Option<ForkSlot>) -> io::Result<Program> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &spec.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the program exited before it was seen"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (exit_tx, exit) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let close_extra = spec.close_extra;
        tokio::spawn(async move {
            reap(child, pid, close_extra, exit_tx, stop_rx).await;
            drop(slot);
            let _ = done_tx.send(());
        });
        Ok(Program {
            pid,
            stdin,
            stdout,
            stderr,
            exit: Some(exit),
            stop: Some(stop_tx),
            done: Some(done),
        })
    }

    /// Closes stdin and starts the ladder (if the program is still running).
    pub fn stop(&mut self) {
        self.stdin = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the program and everything in its group are gone and reaped.
    pub async fn finished(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// How an exit reads in a close reason: `exit status N` or `killed by signal N`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended".to_owned(),
    }
}

async fn reap(
    mut child: tokio::process::Child,
    pid: u32,
    extra: Duration,
    exit_tx: oneshot::Sender<ExitStatus>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let pgid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    // Until the connection ends (stop) or the program exits on its own.
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = &mut stop_rx => None,
    };
    let status = match status {
        Some(s) => Some(s),
        None => ladder(&mut child, pgid, extra).await,
    };
    let _ = exit_tx.send(status.unwrap_or_else(|| ExitStatus::from_raw(9)));
    // The program is gone; what it started in its group goes too.
    end_group(pgid, extra).await;
}

/// websocketd's ladder, on the group: the program had its stdin closed; signals follow
/// until it exits.
async fn ladder(
    child: &mut tokio::process::Child,
    pgid: Pid,
    extra: Duration,
) -> Option<ExitStatus> {
    let steps: [(Option<Signal>, u64); 4] = [
        (None, 100),
        (Some(Signal::SIGINT), 250),
        (Some(Signal::SIGTERM), 500),
        (Some(Signal::SIGKILL), 1000),
    ];
    for (signal, wait_ms) in steps {
        if let Some(sig) = signal {
            tracing::debug!(pid = pgid.as_raw(), ?sig, "signalling the program's group");
            let _ = killpg(pgid, sig);
        }
        let wait = Duration::from_millis(wait_ms) + extra;
        if let Ok(status) = tokio::time::timeout(wait, child.wait()).await {
            return status.ok();
        }
    }
    // SIGKILL cannot be ignored; this wait only ends early if the kernel is stuck.
    tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .ok()
        .and_then(Result::ok)
}

/// Ends and reaps whatever is left in the group of a program that has exited.
async fn end_group(pgid: Pid, extra: Duration) {
    if !group_alive(pgid) {
        return;
    }
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500) + extra;
    let mut killed = false;
    loop {
        reap_group(pgid);
        if !group_alive(pgid) {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            if killed {
                tracing::warn!(
                    pgid = pgid.as_raw(),
                    "a process of the program's group outlived SIGKILL"
                );
                return;
            }
            let _ = killpg(pgid, Signal::SIGKILL);
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        if killed && now >= deadline + Duration::from_secs(2) {
            return;
        }
    }
}

/// Whether any process (a zombie too) is in the group.
fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// Reaps the group's processes that came back to websockd (it is their subreaper).
fn reap_group(pgid: Pid) {
    let neg = Pid::from_raw(-pgid.as_raw());
    for _ in 0..1024 {
        match waitpid(neg, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Makes websockd the subreaper of its programs' descendants (Linux), so that what a
/// program leaves behind is websockd's to reap.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!("could not become a child subreaper: {e}");
    }
}
