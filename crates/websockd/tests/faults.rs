//! websockd end to end: where websocketd goes wrong — deadlock, unbounded buffers,
//! processes left behind, shutdown — each case with its real child processes.

mod common;
use common::*;
use std::time::{Duration, Instant};
use weft::proto::{CloseCode, Message};

/// websocketd deadlocks echoing one 340 KB message of 50,000 lines through `cat`: its
/// reader waits on the program's stdin while the program waits on its full stdout.
#[tokio::test]
async fn no_deadlock_echoing_50000_lines_in_one_message() {
    let d = Daemon::start(&["cat"]);
    let mut ws = d.connect("/").await;
    let lines: Vec<String> = (0..50_000).map(|i| format!("line {i:05}")).collect();
    let message = lines.join("\n");
    assert!(message.len() > 340_000 && message.len() < 1 << 20);
    ws.send(message.as_str()).await.unwrap();
    for expected in &lines {
        assert_eq!(&recv_text(&mut ws).await, expected);
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

/// A client that never reads while the program writes without end: the daemon stops
/// reading the program (which blocks), and its memory stays bounded.
#[tokio::test]
async fn a_client_that_never_reads_does_not_grow_the_daemon() {
    let d = Daemon::start(&["sh", "-c", "yes 0123456789012345678901234567890123456789"]);
    let ws = d.connect("/").await;
    let before = d.rss_kib();
    // Long enough for `yes` to fill every buffer on the way many times over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = d.rss_kib();
    assert!(
        after < before + 16 * 1024,
        "daemon grew from {before} KiB to {after} KiB"
    );
    let program = d.children();
    assert_eq!(program.len(), 1, "one program runs");
    drop(ws);
    // The program was stuck writing; it is ended all the same.
    assert!(wait_gone(program[0]), "the program outlived its client");
    assert!(d.wait_no_children().is_empty());
}

/// A program that never reads while the client sends without end: the daemon stops
/// reading the socket, and its memory stays bounded; other clients are still served; a
/// client that goes meanwhile is seen going (the hang-up watch), and its program ended.
#[tokio::test]
async fn a_program_that_never_reads_does_not_grow_the_daemon() {
    program_never_reads(&[]).await;
}

/// The same with `--uring` (the connection on an io_uring ring, whose socket websockd
/// watches all the same); where io_uring is unavailable, with the tokio driver it falls
/// back to.
#[tokio::test]
async fn a_program_that_never_reads_does_not_grow_the_daemon_uring() {
    program_never_reads(&["--uring"]).await;
}

async fn program_never_reads(flags: &[&str]) {
    let mut args = flags.to_vec();
    args.extend(["--maxframesize=0", "sh", "-c", "sleep 300"]);
    let d = Daemon::start(&args);
    let mut ws = d.connect("/").await;
    if flags.contains(&"--uring") && weft::uring::probe().is_ok() {
        // The connection is on a ring, not on the fallback.
        assert!(
            !d.log_text().contains("io_uring is unavailable"),
            "{}",
            d.log_text()
        );
    }
    let before = d.rss_kib();
    let chunk = "z".repeat(64 * 1024);
    // Send until the socket pushes back (the send stops completing), bounded.
    let mut sent = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) && sent < 256 << 20 {
        match tokio::time::timeout(Duration::from_millis(500), ws.send(chunk.as_str())).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let after = d.rss_kib();
    assert!(
        sent < 64 << 20,
        "the daemon took {sent} bytes the program never read"
    );
    assert!(
        after < before + 16 * 1024,
        "daemon grew from {before} KiB to {after} KiB"
    );
    // Another client is served meanwhile.
    let d2_client = d.connect("/").await;
    drop(d2_client);
    // The client goes while its input is pushed back (a reset: a FIN would wait behind the
    // unsent data in the client's kernel): its program is ended all the same.
    if let weft::tokio::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        socket2::SockRef::from(tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(ws);
    assert!(
        d.wait_no_children().is_empty(),
        "programs left: {:?}; log:\n{}",
        d.children(),
        d.log_text()
    );
}

/// A program that reads late: the client's input is pushed back (the hang-up watch is on)
/// until it does, then all of it arrives and comes back, and the connection goes on (the
/// watch, registered and dropped again, leaves the connection's socket alone); with and
/// without `--uring`.
#[tokio::test]
async fn input_pushed_back_then_read_goes_on() {
    for flags in [&[][..], &["--uring"][..]] {
        let mut args = flags.to_vec();
        args.extend(["sh", "-c", "sleep 1; exec cat"]);
        let d = Daemon::start(&args);
        let mut ws = d.connect("/").await;
        // Well past the high water mark (64 KiB) before the program reads.
        let lines: Vec<String> = (0..300)
            .map(|i| format!("{i:04}{}", "p".repeat(996)))
            .collect();
        for line in &lines {
            ws.send(line.as_str()).await.unwrap();
        }
        for line in &lines {
            assert_eq!(&recv_text(&mut ws).await, line, "{flags:?}");
        }
        ws.send("after").await.unwrap();
        assert_eq!(recv_text(&mut ws).await, "after", "{flags:?}");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(d.wait_no_children().is_empty(), "{flags:?}");
    }
}

/// The program's whole process group ends with the connection: stdin closed first, then
/// SIGINT, SIGTERM, SIGKILL, each after its wait plus --closems; nothing is left.
#[tokio::test]
async fn the_process_group_is_ended_by_the_ladder() {
    let dir = scratch("ladder");
    let trace = dir.join("trace");
    let prog = script(
        &dir,
        "stubborn.sh",
        &format!(
            "trap 'echo INT >> {t}' INT\ntrap 'echo TERM >> {t}' TERM\n\
             sleep 300 &\necho $!\nexec >/dev/null 2>&1\nwhile :; do sleep 0.05; done",
            t = trace.display()
        ),
    );
    let d = Daemon::start(&["--closems=200", "--loglevel=debug", prog.to_str().unwrap()]);
    let mut ws = d.connect("/").await;
    let grandchild: u32 = recv_text(&mut ws).await.parse().unwrap();
    let program = d.children();
    assert_eq!(program.len(), 1);
    assert!(alive(grandchild));
    let start = Instant::now();
    drop(ws);
    assert!(wait_gone(program[0]), "the program was not ended");
    assert!(wait_gone(grandchild), "its background child was not ended");
    let took = start.elapsed();
    let seen = std::fs::read_to_string(&trace).unwrap_or_default();
    // stdin, +100+200 ms, INT, +250+200 ms, TERM, +500+200 ms, KILL: at least 1.45 s.
    assert!(
        took >= Duration::from_millis(1450),
        "ended after {took:?}: too early for the ladder; trace {seen:?}; log:\n{}",
        d.log_text()
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["INT", "TERM"],
        "signals in order"
    );
    assert!(d.wait_no_children().is_empty(), "no zombie, no straggler");
    let _ = std::fs::remove_dir_all(dir);
}

/// A program that ends when its stdin closes is not signalled at all.
#[tokio::test]
async fn a_polite_program_ends_on_stdin_close() {
    let dir = scratch("polite");
    let trace = dir.join("trace");
    let prog = script(
        &dir,
        "polite.sh",
        &format!(
            "trap 'echo INT >> {t}' INT\necho ready\ncat > /dev/null\necho eof >> {t}",
            t = trace.display()
        ),
    );
    let d = Daemon::start(&[prog.to_str().unwrap()]);
    let mut ws = d.connect("/").await;
    assert_eq!(recv_text(&mut ws).await, "ready");
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(d.wait_no_children().is_empty());
    assert_eq!(std::fs::read_to_string(&trace).unwrap_or_default(), "eof\n");
    let _ = std::fs::remove_dir_all(dir);
}

/// What a program leaves in its group after exiting on its own is ended too, and reaped.
#[tokio::test]
async fn stragglers_of_an_exited_program_are_ended_and_reaped() {
    let d = Daemon::start(&["sh", "-c", "sleep 300 > /dev/null & echo $!"]);
    let mut ws = d.connect("/").await;
    let straggler: u32 = recv_text(&mut ws).await.parse().unwrap();
    let (_, close) = recv_all(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(CloseCode::NORMAL));
    assert!(
        wait_gone(straggler),
        "the background process was left running"
    );
    assert!(d.wait_no_children().is_empty(), "left: {:?}", d.children());
}

/// 1000 connections opened and closed (half by the client, half by the program) leave no
/// process and no file descriptor behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_leave_nothing_behind() {
    let d = Daemon::start(&["--maxforks=0", "sh", "-c", "read x; echo $x"]);
    // Warm up, then take the baseline.
    let mut ws = d.connect("/").await;
    ws.send("warm").await.unwrap();
    let _ = recv_all(&mut ws).await;
    assert!(d.wait_no_children().is_empty());
    let fds = d.fds();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let url = d.url("/");
        tasks.push(tokio::spawn(async move {
            for i in 0..125 {
                let (mut ws, _) = weft::tokio::connect_url(&url, weft::Options::default())
                    .await
                    .expect("connect");
                if (worker + i) % 2 == 0 {
                    ws.send("ping").await.expect("send");
                    let (msgs, close) = recv_all(&mut ws).await;
                    assert_eq!(msgs, [Message::Text("ping".into())]);
                    assert_eq!(close.map(|c| c.0), Some(CloseCode::NORMAL));
                } else {
                    drop(ws);
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("in time")
            .expect("worker");
    }
    assert!(d.wait_no_children().is_empty(), "left: {:?}", d.children());
    let start = Instant::now();
    while d.fds() > fds && start.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        d.fds() <= fds,
        "file descriptors leaked: {} > {fds}",
        d.fds()
    );
}

/// SIGTERM: every client gets Close 1001, every program is ended, the daemon exits 0.
#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut d = Daemon::start(&["cat"]);
    let mut a = d.connect("/").await;
    let mut b = d.connect("/").await;
    a.send("x").await.unwrap();
    assert_eq!(recv_text(&mut a).await, "x");
    let programs = d.children();
    assert_eq!(programs.len(), 2);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    for ws in [&mut a, &mut b] {
        let (_, close) = recv_all(ws).await;
        assert_eq!(close.map(|c| c.0), Some(CloseCode::GOING_AWAY));
    }
    let status = d.wait_exit();
    assert!(status.success(), "{status:?}; log:\n{}", d.log_text());
    for p in programs {
        assert!(wait_gone(p));
    }
}

/// A client that sends half a request head is cut at the handshake timeout.
#[tokio::test]
async fn a_slow_handshake_is_cut() {
    use std::io::{Read, Write};
    let d = Daemon::start(&["--handshakems=300", "cat"]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    let _ = s.read_to_end(&mut buf);
    assert!(start.elapsed() < PATIENCE, "not cut");
    assert!(d.children().is_empty());
}

/// --pingms: a client that answers pings stays; the daemon pings.
#[tokio::test]
async fn pings_are_sent() {
    let d = Daemon::start(&["--pingms=100", "cat"]);
    let mut ws = d.connect("/").await;
    // Nothing is sent for a while: the daemon pings, the client answers (inside recv).
    let r = tokio::time::timeout(PATIENCE, ws.next_event()).await;
    match r {
        Ok(Ok(Some(weft::proto::Event::Ping(_)))) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    ws.send("still here").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "still here");
}

/// --pingms: a client that stops answering (it never reads, so never pongs) is dropped
/// after twice the interval, and its program ended.
#[tokio::test]
async fn a_silent_client_is_dropped_after_two_ping_intervals() {
    let d = Daemon::start(&["--pingms=100", "cat"]);
    let ws = d.connect("/").await;
    let start = Instant::now();
    while d.children().is_empty() {
        assert!(start.elapsed() < PATIENCE, "the program never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The client holds the connection open and reads nothing.
    assert!(
        d.wait_no_children().is_empty(),
        "the silent client's program still runs"
    );
    drop(ws);
}
