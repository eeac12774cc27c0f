//! The attacks. Each is bounded in time and in the number of connections and bytes, calls
//! `ctx.attack_on()` when the attack is underway and, where the attack is short, repeats it
//! until the well-behaved client has been served meanwhile.

use crate::net::{self, await_close, close_frame, frame, next_ev, read_head, Ev, Io, Rng};
use crate::Ctx;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// What a case saw: whether it passed, a line saying what the server did, and how far
/// the server's RSS may rise above its baseline while it runs.
pub struct Outcome {
    pub pass: bool,
    pub observed: String,
    pub peak_mib: u64,
    /// How far above its baseline the server's RSS may stay after the case, when more than
    /// the suite's `--rss-tolerance-mib` (0: the suite's).
    pub rss_tolerance_mib: u64,
}

pub fn outcome(pass: bool, observed: impl Into<String>, peak_mib: u64) -> Outcome {
    Outcome {
        pass,
        observed: observed.into(),
        peak_mib,
        rss_tolerance_mib: 0,
    }
}

pub type CaseFn =
    for<'a> fn(
        &'a Ctx,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;

pub const CASES: &[(&str, CaseFn)] = &[
    ("slowloris", |c| Box::pin(slowloris(c))),
    ("headers-many-lines", |c| Box::pin(big_headers(c, false))),
    ("headers-one-line", |c| Box::pin(big_headers(c, true))),
    ("no-key", |c| Box::pin(invalid_no_key(c))),
    ("bad-key", |c| Box::pin(invalid_bad_key(c))),
    ("version-8", |c| Box::pin(invalid_version(c))),
    ("post", |c| Box::pin(invalid_post(c))),
    ("http-1.0", |c| Box::pin(invalid_http10(c))),
    ("huge-frame", |c| {
        Box::pin(huge_frame(c, 0x7fff_ffff_ffff_ffff))
    }),
    ("length-top-bit", |c| Box::pin(huge_frame(c, u64::MAX))),
    ("no-fin-past-limit", |c| Box::pin(no_fin_past_limit(c))),
    ("ping-flood", |c| Box::pin(ping_flood(c))),
    ("million-fragments", |c| Box::pin(million_fragments(c))),
    ("disconnects", |c| Box::pin(disconnects(c))),
    ("burst-reset", |c| Box::pin(burst_reset(c))),
    ("never-reads", |c| Box::pin(never_reads(c))),
    ("random-bytes", |c| Box::pin(random_bytes(c))),
    ("unfinished-close", |c| Box::pin(unfinished_close(c))),
    // HTTP/2 (RFC 8441): only with --h2.
    ("h2-abandon", |c| Box::pin(crate::h2::abandon(c))),
    ("h2-never-reads", |c| Box::pin(crate::h2::never_reads(c))),
];

// ---- slowloris -------------------------------------------------------------------------

/// A third of the connections send a request line and then one header byte a second; a
/// third send nothing at all (over TLS: not even a ClientHello); a third send a plain
/// request first and, if the connection is kept alive, dribble the next request's head the
/// same way. Every one must be cut at the header timeout, give or take.
async fn slowloris(ctx: &Ctx) -> Outcome {
    const GROUPS: [&str; 3] = ["dribbling", "silent", "keep-alive dribbling"];
    let n = ctx.slowloris;
    let timeout = ctx.header_timeout;
    let bound = timeout * 2 + Duration::from_secs(5);
    ctx.attack_on();
    let mut tasks = Vec::new();
    for i in 0..n {
        let t = ctx.t.clone();
        let plain_path = ctx.plain_path.clone();
        let group = i % 3;
        tasks.push(tokio::spawn(async move {
            let mut io: Io = if group == 1 {
                Box::new(
                    t.open_tcp(false)
                        .await
                        .map_err(|e| format!("connect: {e}"))?,
                )
            } else {
                t.open(false).await.map_err(|e| format!("connect: {e}"))?
            };
            if group == 2 {
                let plain = format!("GET {plain_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                net::send_all(&mut io, plain.as_bytes())
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let mut buf = Vec::new();
                read_head(&mut io, &mut buf, Duration::from_secs(5)).await?;
                // The body, if any, is short; a closed connection ends the attack here.
                if net::ending(&mut io, Duration::from_millis(200)).await != "still open" {
                    return Ok::<_, String>((group, None, None));
                }
            }
            let start = Instant::now();
            if group != 1 {
                let first = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", t.path);
                net::send_all(&mut io, first.as_bytes())
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    r = io.read(&mut chunk) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n.min(1024)]),
                    },
                    _ = tick.tick() => {
                        if start.elapsed() > bound {
                            return Err(format!("still open after {bound:?}"));
                        }
                        if group != 1 && net::send_all(&mut io, b"a").await.is_err() {
                            break;
                        }
                    }
                }
            }
            let status = String::from_utf8_lossy(&buf)
                .split_whitespace()
                .nth(1)
                .map(str::to_string);
            Ok((group, Some(start.elapsed()), status))
        }));
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let served = ctx.wait_served(timeout).await;
    let mut errors = Vec::new();
    let mut cuts: [Vec<Duration>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut not_kept = 0;
    let mut statuses = std::collections::BTreeSet::new();
    for t in tasks {
        match t.await {
            Ok(Ok((group, Some(after), status))) => {
                cuts[group].push(after);
                statuses.insert(status.unwrap_or_else(|| "no response".into()));
            }
            Ok(Ok((_, None, _))) => not_kept += 1,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let lo = timeout
        .mul_f64(0.9)
        .saturating_sub(Duration::from_millis(300));
    let hi = timeout + Duration::from_millis(2500);
    let mut in_range = true;
    let mut groups = Vec::new();
    for (g, v) in cuts.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let min = v.iter().min().copied().unwrap_or_default();
        let max = v.iter().max().copied().unwrap_or_default();
        in_range &= min >= lo && max <= hi;
        groups.push(format!(
            "{} {} cut after {:.1}-{:.1} s",
            v.len(),
            GROUPS[g],
            min.as_secs_f64(),
            max.as_secs_f64()
        ));
    }
    if not_kept > 0 {
        groups.push(format!(
            "{not_kept} closed after a plain request (no keep-alive)"
        ));
    }
    let cut: usize = cuts.iter().map(Vec::len).sum();
    let pass = errors.is_empty() && cut + not_kept == n && in_range && served;
    let mut observed = format!(
        "{} (header timeout {:.1} s; allowed {:.1}-{:.1} s); answer: {}",
        groups.join(", "),
        timeout.as_secs_f64(),
        lo.as_secs_f64(),
        hi.as_secs_f64(),
        statuses.into_iter().collect::<Vec<_>>().join(", ")
    );
    if let Some(e) = errors.first() {
        observed.push_str(&format!("; {} not cut: {e}", errors.len()));
    }
    outcome(pass, observed, 32)
}

// ---- big heads ---------------------------------------------------------------------------

/// A valid upgrade request with 1 MiB more of headers: many 100-byte lines, or one line.
async fn big_headers(ctx: &Ctx, one_line: bool) -> Outcome {
    let mut pad = String::with_capacity(1 << 20);
    if one_line {
        pad.push_str("X-Pad: ");
        pad.push_str(&"a".repeat(1 << 20));
        pad.push_str("\r\n");
    } else {
        let mut i = 0;
        while pad.len() < 1 << 20 {
            pad.push_str(&format!("X-Pad-{i}: {}\r\n", "a".repeat(90)));
            i += 1;
        }
    }
    let req = ctx.t.upgrade_request();
    let (start, end) = req.split_at(req.len() - 2);
    let request = Arc::new(format!("{start}{pad}{end}").into_bytes());
    ctx.attack_on();
    let mut seen = std::collections::BTreeSet::new();
    let mut pass = true;
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rounds < 3 || (!ctx.served() && Instant::now() < deadline) {
        rounds += 1;
        let (status, ending) = match ctx.t.open(false).await {
            Err(e) => (Err(format!("connect: {e}")), "-"),
            Ok(io) => {
                let (mut r, mut w) = tokio::io::split(io);
                let request = Arc::clone(&request);
                let writer = tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        net::send_all(&mut w, &request),
                    )
                    .await;
                    w
                });
                let mut buf = Vec::new();
                let status = read_head(&mut r, &mut buf, Duration::from_secs(5)).await;
                let ending = match &status {
                    Ok(_) => net::ending(&mut r, Duration::from_secs(5)).await,
                    Err(_) => "-",
                };
                writer.abort();
                (status.map(|h| h.status), ending)
            }
        };
        let ok = matches!(status, Ok(431) | Ok(400)) && ending != "still open";
        pass &= ok;
        seen.insert(match status {
            Ok(s) => format!("{s}, then {ending}"),
            Err(e) => e,
        });
    }
    let served = ctx.served();
    let observed = format!(
        "{rounds} requests with 1 MiB of headers in {}: {}",
        if one_line { "one line" } else { "many lines" },
        seen.into_iter().collect::<Vec<_>>().join("; ")
    );
    outcome(pass && served, observed, 32)
}

// ---- invalid handshakes --------------------------------------------------------------------

/// Sends `request` (again until the good client was served), expects one of `want`
/// (and, with `header`, that header's value) and reports what came and how the
/// connection went on.
async fn invalid(
    ctx: &Ctx,
    request: String,
    want: &[u16],
    header: Option<(&str, &str)>,
) -> Outcome {
    ctx.attack_on();
    let mut seen = std::collections::BTreeSet::new();
    let mut pass = true;
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rounds < 5 || (!ctx.served() && Instant::now() < deadline) {
        rounds += 1;
        let r = async {
            let mut io = ctx
                .t
                .open(false)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            net::send_all(&mut io, request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut buf = Vec::new();
            let head = read_head(&mut io, &mut buf, Duration::from_secs(5)).await?;
            let ending = net::ending(&mut io, Duration::from_millis(300)).await;
            Ok::<_, String>((head, ending))
        }
        .await;
        match r {
            Ok((head, ending)) => {
                let mut ok = want.contains(&head.status);
                let mut line = format!("{}", head.status);
                if let Some((name, value)) = header {
                    let got = head.header(name).unwrap_or("(none)");
                    ok &= got.trim() == value;
                    line.push_str(&format!(" with {name}: {got}"));
                }
                let ending = if ending == "still open" {
                    "kept alive"
                } else {
                    ending
                };
                line.push_str(&format!(", then {ending}"));
                pass &= ok;
                seen.insert(line);
            }
            Err(e) => {
                pass = false;
                seen.insert(e);
            }
        }
    }
    let served = ctx.served();
    let want = want
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    outcome(
        pass && served,
        format!(
            "{} (want {want})",
            seen.into_iter().collect::<Vec<_>>().join("; ")
        ),
        16,
    )
}

async fn invalid_no_key(ctx: &Ctx) -> Outcome {
    let r = ctx
        .t
        .request("GET", "HTTP/1.1", &["Sec-WebSocket-Key"], &[]);
    invalid(ctx, r, &[400], None).await
}

async fn invalid_bad_key(ctx: &Ctx) -> Outcome {
    // Valid base64, but of 15 bytes.
    let r = ctx.t.request(
        "GET",
        "HTTP/1.1",
        &["Sec-WebSocket-Key"],
        &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"],
    );
    invalid(ctx, r, &[400], None).await
}

async fn invalid_version(ctx: &Ctx) -> Outcome {
    let r = ctx.t.request(
        "GET",
        "HTTP/1.1",
        &["Sec-WebSocket-Version"],
        &["Sec-WebSocket-Version: 8"],
    );
    invalid(ctx, r, &[426], Some(("Sec-WebSocket-Version", "13"))).await
}

async fn invalid_post(ctx: &Ctx) -> Outcome {
    let r = ctx
        .t
        .request("POST", "HTTP/1.1", &[], &["Content-Length: 0"]);
    invalid(ctx, r, &[400, 405], None).await
}

async fn invalid_http10(ctx: &Ctx) -> Outcome {
    // A server must ignore Upgrade in an HTTP/1.0 request (RFC 9110 7.8) and may answer it
    // as a plain GET: 404 where nothing else is served at the path (websockd), or the
    // refusal of a WebSocket handshake.
    let r = ctx.t.request("GET", "HTTP/1.0", &[], &[]);
    invalid(ctx, r, &[400, 404, 426, 505], None).await
}

// ---- frames --------------------------------------------------------------------------------

/// A binary frame header announcing `len` bytes (masked), then 16 bytes of it.
async fn huge_frame(ctx: &Ctx, len: u64) -> Outcome {
    ctx.attack_on();
    let mut seen = std::collections::BTreeSet::new();
    let mut pass = true;
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let want: &[u16] = if len >> 63 == 1 {
        &[1002]
    } else {
        &[1009, 1002]
    };
    while rounds < 3 || (!ctx.served() && Instant::now() < deadline) {
        rounds += 1;
        let r = async {
            let (io, rest) = ctx.t.upgrade(false).await?;
            let (r, mut w) = tokio::io::split(io);
            let mut rx = net::spawn_reader(r, rest);
            let mut bytes = vec![0x82, 0xff];
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&net::MASK);
            bytes.extend_from_slice(&[0u8; 16]);
            net::send_all(&mut w, &bytes)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let r = await_close(&mut rx, Duration::from_secs(5)).await;
            drop(w);
            r
        }
        .await;
        match r {
            Ok((code, how)) => {
                pass &= code.is_some_and(|c| want.contains(&c)) && how != "still open";
                seen.insert(format!("close {}, then {how}", fmt_code(code)));
            }
            Err(e) => {
                pass = false;
                seen.insert(e);
            }
        }
    }
    let served = ctx.served();
    outcome(
        pass && served,
        format!(
            "header announcing {len} bytes: {}",
            seen.into_iter().collect::<Vec<_>>().join("; ")
        ),
        16,
    )
}

fn fmt_code(c: Option<u16>) -> String {
    c.map_or_else(|| "(no code)".into(), |c| c.to_string())
}

/// A text message without FIN, in 1 MiB frames, up to the limit and then 64 KiB past it:
/// 1009 when the limit is crossed, memory bounded by about the limit.
async fn no_fin_past_limit(ctx: &Ctx) -> Outcome {
    let limit = ctx.max_message;
    let peak_mib = (limit >> 20) * 3 / 2 + 16;
    ctx.attack_on();
    let r = async {
        let (io, rest) = ctx.t.upgrade(false).await?;
        let (r, mut w) = tokio::io::split(io);
        let mut rx = net::spawn_reader(r, rest);
        let mut chunk = Vec::new();
        let mut first = true;
        let mut sent = 0u64;
        let write_error;
        loop {
            let size = if sent >= limit {
                64 << 10
            } else {
                (limit - sent).min(1 << 20)
            };
            chunk.clear();
            frame(
                &mut chunk,
                false,
                if first { 0x1 } else { 0x0 },
                &vec![b'a'; size as usize],
            );
            first = false;
            match tokio::time::timeout(Duration::from_secs(10), net::send_all(&mut w, &chunk)).await
            {
                Ok(Ok(())) => sent += size,
                Ok(Err(e)) => {
                    write_error = Some(net::describe(&e));
                    break;
                }
                Err(_) => {
                    write_error = Some("writes stalled 10 s".into());
                    break;
                }
            }
            if sent > limit {
                write_error = None;
                break;
            }
        }
        ctx.wait_served(Duration::from_secs(5)).await;
        let close = await_close(&mut rx, Duration::from_secs(10)).await;
        drop(w);
        Ok::<_, String>((sent, write_error, close))
    }
    .await;
    match r {
        Err(e) => outcome(false, e, peak_mib),
        Ok((sent, write_error, close)) => {
            let mut observed = format!("sent {} bytes (limit {limit})", sent);
            if let Some(e) = write_error {
                observed.push_str(&format!(", writing stopped: {e}"));
            }
            let pass = match close {
                Ok((code, how)) => {
                    observed.push_str(&format!("; close {}, then {how}", fmt_code(code)));
                    code == Some(1009) && how != "still open"
                }
                Err(e) => {
                    observed.push_str(&format!("; {e}"));
                    false
                }
            };
            outcome(pass && ctx.served(), observed, peak_mib)
        }
    }
}

/// 10,000 pings in one write: the last one's pong (a server may skip pongs of earlier
/// pings it has not answered yet, RFC 6455 5.5.3) and then an echo and a clean close, or
/// a clean close by the server.
async fn ping_flood(ctx: &Ctx) -> Outcome {
    const PINGS: u32 = 10_000;
    ctx.attack_on();
    let r = async {
        let (io, rest) = ctx.t.upgrade(false).await?;
        let (r, mut w) = tokio::io::split(io);
        let mut rx = net::spawn_reader(r, rest);
        let mut bytes = Vec::with_capacity(PINGS as usize * 10);
        for i in 0..PINGS {
            frame(&mut bytes, true, 0x9, &i.to_be_bytes());
        }
        net::send_all(&mut w, &bytes).await.map_err(|e| format!("write: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut pongs = 0u32;
        let last = (PINGS - 1).to_be_bytes().to_vec();
        loop {
            match next_ev(&mut rx, deadline).await {
                None => return Err(format!("{pongs} pongs, not the last one, in 20 s")),
                Some(Ev::Pong(p)) => {
                    pongs += 1;
                    if p == last {
                        break;
                    }
                }
                Some(Ev::Close(code)) => {
                    return Ok(format!(
                        "{pongs} pongs, then the server closed with {}",
                        fmt_code(code)
                    ))
                }
                Some(Ev::End(how)) => return Err(format!("{pongs} pongs, then {how}")),
                Some(_) => {}
            }
        }
        ctx.wait_served(Duration::from_secs(5)).await;
        // An echo after the pings (waited for: websockd drops a program's late output
        // once the client has closed), then the close handshake.
        let mut msg = Vec::new();
        frame(&mut msg, true, 0x1, b"after the pings");
        net::send_all(&mut w, &msg).await.map_err(|e| format!("write: {e}"))?;
        let mut echoed = false;
        loop {
            match next_ev(&mut rx, deadline).await {
                Some(Ev::Msg { head, .. }) => {
                    if !echoed && head == b"after the pings" {
                        echoed = true;
                        let mut close = Vec::new();
                        close_frame(&mut close, 1000);
                        net::send_all(&mut w, &close).await.map_err(|e| format!("write: {e}"))?;
                    }
                }
                Some(Ev::Pong(_)) => pongs += 1,
                Some(Ev::Close(code)) => {
                    return if echoed && code == Some(1000) {
                        Ok(format!(
                            "{pongs} pongs for {PINGS} pings (the last answered), echo after them, close 1000"
                        ))
                    } else {
                        Err(format!("{pongs} pongs; echo {echoed}; close {}", fmt_code(code)))
                    };
                }
                Some(Ev::End(how)) => return Err(format!("{pongs} pongs, then {how}")),
                Some(_) => {}
                None => return Err("no close after the pings".into()),
            }
        }
    }
    .await;
    match r {
        Ok(s) => outcome(ctx.served(), s, 16),
        Err(e) => outcome(false, e, 16),
    }
}

/// One text message of 1,000,000 one-byte frames: echoed whole, or 1009 when the limit is
/// smaller.
async fn million_fragments(ctx: &Ctx) -> Outcome {
    const N: usize = 1_000_000;
    let expect_1009 = (N as u64) > ctx.max_message;
    ctx.attack_on();
    let r = async {
        let (io, rest) = ctx.t.upgrade(false).await?;
        let (r, mut w) = tokio::io::split(io);
        let mut rx = net::spawn_reader(r, rest);
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(7 * 10_000);
            for i in 0..N {
                let opcode = if i == 0 { 0x1 } else { 0x0 };
                frame(&mut buf, i == N - 1, opcode, b"a");
                if buf.len() >= 7 * 10_000 || i == N - 1 {
                    if net::send_all(&mut w, &buf).await.is_err() {
                        return w;
                    }
                    buf.clear();
                }
            }
            w
        });
        let deadline = started + Duration::from_secs(60);
        let got = loop {
            match next_ev(&mut rx, deadline).await {
                None => return Err("no answer in 60 s".to_string()),
                Some(Ev::Msg { text, len, .. }) => break Ok((text, len)),
                Some(Ev::Close(code)) => break Err(code),
                Some(Ev::End(how)) => return Err(format!("{how} without an answer")),
                Some(_) => {}
            }
        };
        let took = started.elapsed();
        ctx.wait_served(Duration::from_secs(5)).await;
        let mut w = tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .map_err(|_| "the writer is stuck".to_string())?
            .map_err(|e| e.to_string())?;
        match got {
            Ok((text, len)) => {
                if !text {
                    return Err(format!("the echo of {len} bytes came back as binary"));
                }
                let mut bytes = Vec::new();
                close_frame(&mut bytes, 1000);
                net::send_all(&mut w, &bytes)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let (code, how) = await_close(&mut rx, Duration::from_secs(5)).await?;
                Ok((Some(len), code, how, took))
            }
            Err(code) => {
                let (_, how) = await_close(&mut rx, Duration::from_secs(5))
                    .await
                    .unwrap_or((None, "?".into()));
                Ok((None, code, how, took))
            }
        }
    }
    .await;
    match r {
        Err(e) => outcome(false, e, 64),
        Ok((len, code, how, took)) => {
            let observed = match len {
                Some(len) => format!(
                    "echoed as one text message of {len} bytes in {:.2} s; close {}, then {how}",
                    took.as_secs_f64(),
                    fmt_code(code)
                ),
                None => format!(
                    "closed with {} after {:.2} s (limit {}), then {how}",
                    fmt_code(code),
                    took.as_secs_f64(),
                    ctx.max_message
                ),
            };
            let pass = if expect_1009 {
                code == Some(1009)
            } else {
                len == Some(N) && code == Some(1000)
            };
            outcome(pass && ctx.served(), observed, 64)
        }
    }
}

/// Connections dropped at every stage, half with a FIN and half with a reset, 32 at a
/// time: during the head, right after it, in the middle of a frame, in the middle of a
/// message, during the close handshake.
async fn disconnects(ctx: &Ctx) -> Outcome {
    const STAGES: [&str; 5] = ["head", "after-head", "mid-frame", "mid-message", "closing"];
    let n = ctx.disconnects;
    ctx.attack_on();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = match Arc::clone(&sem).acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let t = ctx.t.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let stage = i % STAGES.len();
            let rst = (i / STAGES.len()) % 2 == 0;
            let mut rng = Rng::new(i as u64);
            let r: Result<(), String> = async {
                match stage {
                    0 => {
                        let mut io = t.open(rst).await.map_err(|e| format!("connect: {e}"))?;
                        let req = t.upgrade_request();
                        let cut = 1 + rng.below(req.len() as u64 - 2) as usize;
                        let _ = net::send_all(&mut io, &req.as_bytes()[..cut]).await;
                    }
                    1 => {
                        let mut io = t.open(rst).await.map_err(|e| format!("connect: {e}"))?;
                        let _ = net::send_all(&mut io, t.upgrade_request().as_bytes()).await;
                    }
                    2 => {
                        let (mut io, _) = t.upgrade(rst).await?;
                        let mut f = Vec::new();
                        frame(&mut f, true, 0x2, &[7u8; 1000]);
                        let cut = 1 + rng.below(f.len() as u64 - 2) as usize;
                        let _ = net::send_all(&mut io, &f[..cut]).await;
                    }
                    3 => {
                        let (mut io, _) = t.upgrade(rst).await?;
                        let mut f = Vec::new();
                        frame(&mut f, false, 0x1, &[b'x'; 100]);
                        frame(&mut f, false, 0x0, &[b'y'; 100]);
                        let _ = net::send_all(&mut io, &f).await;
                    }
                    _ => {
                        let (mut io, _) = t.upgrade(rst).await?;
                        let mut f = Vec::new();
                        close_frame(&mut f, 1000);
                        let _ = net::send_all(&mut io, &f).await;
                    }
                }
                Ok(())
            }
            .await;
            (stage, r)
        }));
    }
    let mut errors = [0usize; 5];
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok((_, Ok(()))) => {}
            Ok((stage, Err(e))) => {
                errors[stage] += 1;
                first_error.get_or_insert(format!("{}: {e}", STAGES[stage]));
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let served = ctx.wait_served(Duration::from_secs(5)).await;
    let total: usize = errors.iter().sum();
    let mut observed = format!(
        "{n} connections dropped ({} per stage: {}; half FIN, half RST)",
        n / STAGES.len(),
        STAGES.join(", ")
    );
    if let Some(e) = first_error {
        observed.push_str(&format!("; {total} not served before the drop, e.g. {e}"));
    }
    outcome(total == 0 && served, observed, 48)
}

/// 500 WebSocket connections open at once, each with one message echoed, then all reset in
/// the same instant: everything they held (and, for websockd, their programs) is freed.
async fn burst_reset(ctx: &Ctx) -> Outcome {
    const N: usize = 500;
    ctx.attack_on();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..N {
        let t = ctx.t.clone();
        let sem = Arc::clone(&sem);
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            let (io, rest) = t.upgrade(true).await?;
            let (r, mut w) = tokio::io::split(io);
            let mut rx = net::spawn_reader(r, rest);
            let mut f = Vec::new();
            let text = format!("burst {i}");
            frame(&mut f, true, 0x1, text.as_bytes());
            net::send_all(&mut w, &f)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match next_ev(&mut rx, deadline).await {
                    Some(Ev::Msg { head, .. }) if head == text.as_bytes() => break,
                    Some(Ev::Msg { .. } | Ev::Ping | Ev::Pong(_)) => {}
                    other => return Err(format!("no echo: {other:?}")),
                }
            }
            drop(permit);
            Ok::<_, String>((rx, w))
        }));
    }
    let mut held = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(conn)) => held.push(conn),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let served = ctx.wait_served(Duration::from_secs(5)).await;
    let open = held.len();
    // Dropping both halves closes each socket; SO_LINGER 0 makes it a reset.
    drop(held);
    let mut observed =
        format!("{open} of {N} connections open and echoing at once, then all reset");
    if let Some(e) = errors.first() {
        observed.push_str(&format!("; {} failed, e.g. {e}", errors.len()));
    }
    outcome(errors.is_empty() && served, observed, 64)
}

/// Sends 64 KiB text messages (up to 100 MiB) to an echo and never reads: the server must
/// push back (stop reading) with bounded memory, serve others meanwhile, and free
/// everything after the reset.
async fn never_reads(ctx: &Ctx) -> Outcome {
    const TOTAL: u64 = 100 << 20;
    ctx.attack_on();
    let r = async {
        let (mut io, _) = ctx.t.upgrade(true).await?;
        let mut msg = Vec::new();
        frame(&mut msg, true, 0x1, &[b'z'; 64 << 10]);
        let mut sent = 0u64;
        let mut stalled = false;
        while sent < TOTAL {
            match tokio::time::timeout(Duration::from_secs(2), net::send_all(&mut io, &msg)).await {
                Ok(Ok(())) => sent += 64 << 10,
                Ok(Err(e)) => return Err(format!("after {sent} bytes: {}", net::describe(&e))),
                Err(_) => {
                    stalled = true;
                    break;
                }
            }
        }
        // Hold the stalled connection while the good client is served.
        ctx.wait_served(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(io); // SO_LINGER 0: a reset
        Ok((sent, stalled))
    }
    .await;
    match r {
        Err(e) => outcome(false, e, 32),
        Ok((sent, stalled)) => outcome(
            ctx.served(),
            if stalled {
                format!(
                    "the server pushed back after {:.1} MiB of 100 MiB (writes stalled 2 s); reset",
                    sent as f64 / 1048576.0
                )
            } else {
                "all 100 MiB were taken without reading (memory checked below); reset".into()
            },
            32,
        ),
    }
}

/// Random bytes after the handshake, drawn until their first frame header is itself
/// invalid (RSV bits, a reserved opcode, no mask, a fragmented or long control frame), so
/// that 1002 is the only right answer; 16 connections, 4 KiB each.
async fn random_bytes(ctx: &Ctx) -> Outcome {
    ctx.attack_on();
    let mut rng = Rng::new(0x5eed);
    let mut seen = std::collections::BTreeSet::new();
    let mut pass = true;
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rounds < 16 || (!ctx.served() && Instant::now() < deadline) {
        rounds += 1;
        let mut bytes = vec![0u8; 4096];
        loop {
            rng.fill(&mut bytes);
            let (b0, b1) = (bytes[0], bytes[1]);
            let opcode = b0 & 0x0f;
            let control = opcode >= 8;
            let invalid = b0 & 0x70 != 0
                || matches!(opcode, 3..=7 | 11..=15)
                || b1 & 0x80 == 0
                || (control && (b0 & 0x80 == 0 || b1 & 0x7f > 125));
            if invalid {
                break;
            }
        }
        let r = async {
            let (io, rest) = ctx.t.upgrade(false).await?;
            let (r, mut w) = tokio::io::split(io);
            let mut rx = net::spawn_reader(r, rest);
            let _ = net::send_all(&mut w, &bytes).await;
            let r = await_close(&mut rx, Duration::from_secs(5)).await;
            drop(w);
            r
        }
        .await;
        match r {
            Ok((code, how)) => {
                pass &= code == Some(1002) && how != "still open";
                seen.insert(format!("close {}, then {how}", fmt_code(code)));
            }
            Err(e) => {
                pass = false;
                seen.insert(e);
            }
        }
    }
    outcome(
        pass && ctx.served(),
        format!(
            "{rounds} connections: {}",
            seen.into_iter().collect::<Vec<_>>().join("; ")
        ),
        16,
    )
}

/// Close handshakes the client never finishes: it sends a close frame and then neither
/// reads nor closes for a while (the reply waits in its buffer), or it makes the server
/// close (a frame with RSV bits: 1002) and never answers the close. Either way the server
/// must end the TCP connection itself within its close timeout (5 s by default) and slack.
async fn unfinished_close(ctx: &Ctx) -> Outcome {
    const EACH: usize = 10;
    let bound = Duration::from_secs(9);
    ctx.attack_on();
    let mut tasks = Vec::new();
    for i in 0..2 * EACH {
        let t = ctx.t.clone();
        tasks.push(tokio::spawn(async move {
            let client_closes = i % 2 == 0;
            let (io, rest) = t.upgrade(false).await?;
            let (r, mut w) = tokio::io::split(io);
            let mut f = Vec::new();
            if client_closes {
                close_frame(&mut f, 1000);
            } else {
                f.extend_from_slice(&[0xc2, 0x80, 0, 0, 0, 0]); // RSV1 without an extension
            }
            net::send_all(&mut w, &f)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let start = Instant::now();
            if client_closes {
                // Not reading for 2 s: the reply sits unread, the socket stays open.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let mut rx = net::spawn_reader(r, rest);
            let mut code = None;
            let how = loop {
                match next_ev(&mut rx, start + bound).await {
                    None => return Err(format!("still open {bound:?} after the close")),
                    Some(Ev::Close(c)) => code = Some(c),
                    Some(Ev::End(how)) => break how,
                    Some(_) => {}
                }
            };
            drop(w);
            Ok::<_, String>((client_closes, code.flatten(), how, start.elapsed()))
        }));
    }
    let served = ctx.wait_served(Duration::from_secs(5)).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut pass = true;
    let mut longest = [Duration::ZERO; 2];
    for t in tasks {
        match t.await {
            Ok(Ok((client_closes, code, how, after))) => {
                let want = if client_closes { 1000 } else { 1002 };
                pass &= code == Some(want);
                let i = client_closes as usize;
                longest[i] = longest[i].max(after);
                seen.insert(format!(
                    "{}: close {}, then {how}",
                    if client_closes {
                        "client's close, reply unread 2 s"
                    } else {
                        "server's close (1002) never answered"
                    },
                    fmt_code(code)
                ));
            }
            Ok(Err(e)) => {
                pass = false;
                seen.insert(e);
            }
            Err(e) => {
                pass = false;
                seen.insert(e.to_string());
            }
        }
    }
    outcome(
        pass && served,
        format!(
            "{}; TCP ended {:.1} s after the client's close (2 s of it unread) and {:.1} s after the server's",
            seen.into_iter().collect::<Vec<_>>().join("; "),
            longest[1].as_secs_f64(),
            longest[0].as_secs_f64()
        ),
        16,
    )
}
