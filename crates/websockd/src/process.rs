//! The program behind a connection: started in a process group of its own, with a clean
//! environment and piped stdio, and ended — the whole group — when the connection is over.
//!
//! Until the program exits or is stopped, nothing runs on its behalf: whoever holds the
//! [`Program`] polls its exit ([`Program::poll_exit`]), so an idle connection costs its
//! program's handles, not a task. A reaper task is spawned only when there is work: when
//! the program is stopped ([`Program::stop`], or the handle dropped) it runs websocketd's
//! ladder on the group: stdin is already closed, then wait 100 ms + `closems`; SIGINT, wait
//! 250 ms + `closems`; SIGTERM, wait 500 ms + `closems`; SIGKILL. Once the program itself
//! has exited, whatever it left in its group gets SIGTERM, then SIGKILL, and is reaped
//! (websockd is the child subreaper, so orphans come back to it instead of becoming zombies
//! under an init that may not reap).

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

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

/// A running program: its pipes, and the child until it is reaped or handed to a reaper.
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
    /// The child while nobody else waits for it (`None` once handed to the reaper).
    child: Option<Child>,
    /// Its exit status, once seen.
    status: Option<ExitStatus>,
    /// Its `--maxforks` place, held until its group is gone (then by the reaper).
    slot: Option<ForkSlot>,
    /// `--closems`.
    close_extra: Duration,
    /// The reaper, once there is one.
    reaper: Option<JoinHandle<()>>,
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
        Ok(Program {
            pid,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child: Some(child),
            status: None,
            slot,
            close_extra: spec.close_extra,
            reaper: None,
        })
    }

    /// The program's exit status, once it exited (it is reaped then, and what it left in
    /// its group starts being ended). Wakes `cx` when it exits.
    pub fn poll_exit(&mut self, cx: &mut Context<'_>) -> Poll<ExitStatus> {
        if let Some(status) = self.status {
            return Poll::Ready(status);
        }
        let Some(child) = self.child.as_mut() else {
            // Stopped before it exited: the reaper has it.
            return Poll::Pending;
        };
        // `wait` is cancel safe and keeps no state of its own: a fresh one per poll.
        let waited = std::pin::pin!(child.wait()).poll(cx);
        let status = match waited {
            Poll::Ready(Ok(status)) => status,
            Poll::Ready(Err(e)) => {
                tracing::debug!(pid = self.pid, "waiting for the program failed: {e}");
                self.stop();
                self.status = Some(ExitStatus::from_raw(9));
                return Poll::Ready(ExitStatus::from_raw(9));
            }
            Poll::Pending => return Poll::Pending,
        };
        self.status = Some(status);
        self.child = None;
        // The program is gone; what it started in its group goes too.
        let pgid = pgid_of(self.pid);
        if group_alive(pgid) {
            let (slot, extra) = (self.slot.take(), self.close_extra);
            self.reaper = spawn_reaper(async move {
                end_group(pgid, extra).await;
                drop(slot);
            });
        } else {
            self.slot = None;
        }
        Poll::Ready(status)
    }

    /// Runs `fut` while watching the program's exit (so that its group is ended as soon as
    /// it exits, even while `fut` waits for pipes a leftover process keeps open).
    pub async fn watching<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            let _ = self.poll_exit(cx);
            fut.as_mut().poll(cx)
        })
        .await
    }

    /// Closes stdin and starts the ladder (if the program is still running).
    pub fn stop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let pgid = pgid_of(self.pid);
            let (slot, extra) = (self.slot.take(), self.close_extra);
            self.reaper = spawn_reaper(async move {
                ladder(&mut child, pgid, extra).await;
                end_group(pgid, extra).await;
                drop(slot);
            });
        }
    }

    /// Waits until the program and everything in its group are gone and reaped (stop it
    /// first, or let it exit).
    pub async fn finished(&mut self) {
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.await;
        }
    }
}

impl Drop for Program {
    /// A program dropped while running (its connection's task cut short) is stopped all
    /// the same.
    fn drop(&mut self) {
        self.stop();
    }
}

fn pgid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Spawns a reaper on the current runtime (none while the runtime itself goes down: its
/// tasks are being dropped then, as a reaper spawned earlier would be).
fn spawn_reaper(task: impl Future<Output = ()> + Send + 'static) -> Option<JoinHandle<()>> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|rt| rt.spawn(task))
}

/// How an exit reads in a close reason: `exit status N` or `killed by signal N`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended".to_owned(),
    }
}

/// websocketd's ladder, on the group: the program had its stdin closed; signals follow
/// until it exits (at once if it already has).
async fn ladder(child: &mut Child, pgid: Pid, extra: Duration) {
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
        if tokio::time::timeout(wait, child.wait()).await.is_ok() {
            return;
        }
    }
    // SIGKILL cannot be ignored; this wait only ends early if the kernel is stuck.
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
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
