//! The harness of websockd's end-to-end tests: a real daemon process on 127.0.0.1, real
//! programs, weft's client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft::proto::{CloseCode, Message};
use weft::tokio::{MaybeTlsStream, WebSocket};

/// The client side of a test connection.
pub type Client = WebSocket<MaybeTlsStream<tokio::net::TcpStream>>;

/// An upper bound on how long anything in these tests may take (a hang fails the test).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A daemon started for one test, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// A free port on 127.0.0.1, from 20000–31999: below the kernel's ephemeral range
/// (32768–60999 by default), so that no outgoing connection of a parallel test takes it
/// before the daemon binds it, and a connect to it can never be a TCP self-connection
/// (which `bind(0)`'s ephemeral ports allowed: `wait_listening` once "connected" to a port
/// nobody listened on yet). Each call of a test binary tries the next port of its own
/// sequence, which starts at a place derived from the process id.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (BASE + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {BASE}..{}", BASE + SPAN)
}

/// A scratch directory of this test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("websockd-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes an executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

impl Daemon {
    /// `websockd --port=P --address=127.0.0.1 <args>`, waiting until it accepts.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(args, &[])
    }

    /// [`start`](Self::start) with extra environment variables for the daemon.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let mut all = vec![format!("--port={port}"), "--address=127.0.0.1".to_owned()];
        all.extend(args.iter().map(|s| s.to_string()));
        Self::spawn(&all, env, port)
    }

    /// Runs the daemon with exactly `args`; `port` is where to wait for it (0: don't).
    pub fn spawn(args: &[String], env: &[(&str, &str)], port: u16) -> Daemon {
        static LOGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let log = std::env::temp_dir().join(format!(
            "websockd-test-{}-{}.log",
            std::process::id(),
            LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_websockd"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start websockd");
        let mut d = Daemon { child, port, log };
        if port != 0 {
            d.wait_listening();
        }
        d
    }

    fn wait_listening(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                // A connection to itself is not the daemon.
                if s.local_addr().ok() != s.peer_addr().ok() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "websockd exited ({status}) before listening; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < PATIENCE,
                "websockd did not listen; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the daemon logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ws://127.0.0.1:P<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Connects a client to `path`.
    pub async fn connect(&self, path: &str) -> Client {
        let (ws, _) = tokio::time::timeout(
            PATIENCE,
            weft::tokio::connect_url(&self.url(path), weft::Options::default()),
        )
        .await
        .expect("connect in time")
        .unwrap_or_else(|e| panic!("connect: {e}; log:\n{}", self.log_text()));
        ws
    }

    /// A raw HTTP/1.1 request; the whole response (the server closes).
    pub fn http(&self, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `GET path` with `Connection: close`.
    pub fn get(&self, path: &str) -> String {
        self.http(&format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig);
    }

    /// Waits for the daemon to exit (bounded).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < PATIENCE, "websockd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's children (process ids) now.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// The daemon's open file descriptors now.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// The daemon's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the daemon has no child process left (bounded), returning what is left.
    pub fn wait_no_children(&self) -> Vec<u32> {
        let start = Instant::now();
        loop {
            let c = self.children();
            if c.is_empty() || start.elapsed() > PATIENCE {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: what the daemon was doing tells why (a refused connection,
            // a daemon that exited, another process on its port).
            let state = match self.child.try_wait() {
                Ok(Some(status)) => format!("had exited ({status})"),
                Ok(None) => "was still running".to_owned(),
                Err(e) => format!("could not be asked ({e})"),
            };
            let listening = std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err();
            eprintln!(
                "websockd (pid {}, port {}, the port {}) {state}; its log:\n{}",
                self.child.id(),
                self.port,
                if listening { "taken" } else { "free" },
                self.log_text()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The processes whose parent is `pid` (zombies included).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = parent_of(child) {
            if ppid == pid {
                out.push(child);
            }
        }
    }
    out
}

/// A process's parent id, if it exists.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is gone.
pub fn wait_gone(pid: u32) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > PATIENCE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The next text message, or panics (bounded).
pub async fn recv_text(ws: &mut Client) -> String {
    match tokio::time::timeout(PATIENCE, ws.recv()).await {
        Ok(Ok(Some(Message::Text(t)))) => t.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads to the end; returns the messages and the close code and reason the server sent.
pub async fn recv_all(ws: &mut Client) -> (Vec<Message>, Option<(CloseCode, String)>) {
    let mut msgs = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, ws.recv()).await {
            Ok(Ok(Some(m))) => msgs.push(m),
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => panic!("no end of stream in time"),
        }
    }
    let close = ws
        .connection()
        .close_received()
        .map(|c| (c.code, c.reason.to_string()));
    (msgs, close)
}
