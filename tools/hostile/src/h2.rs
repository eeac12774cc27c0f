//! The attacks over HTTP/2 (RFC 8441 extended CONNECT), with the `h2` crate: h2c by prior
//! knowledge for ws:// targets, TLS with ALPN `h2` for wss:// ones. Only for servers that
//! speak HTTP/2 (`--h2`: weft::server and websockd).

use crate::cases::{outcome, Outcome};
use crate::net::{self, Io, Target};
use crate::Ctx;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most streams one attack opens on a connection (fewer if the server allows fewer).
const MAX_STREAMS: usize = 256;

/// An HTTP/2 connection to the target, its I/O driven by a task of its own (aborting the
/// task drops the socket; SO_LINGER 0 makes that a reset). `window`: the receive window
/// this client announces per stream, `conn_window` for the connection.
async fn open_h2(
    t: &Target,
    window: u32,
    conn_window: u32,
) -> Result<(SendRequest<Bytes>, tokio::task::JoinHandle<()>), String> {
    let tcp = t
        .open_tcp(true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io: Io = match &t.tls {
        None => Box::new(tcp),
        Some(config) => {
            let mut config = (**config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let name = rustls_pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| format!("server name: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake: {e}"))?;
            if tls.get_ref().1.alpn_protocol() != Some(&b"h2"[..]) {
                return Err("the server did not choose h2 by ALPN".into());
            }
            Box::new(tls)
        }
    };
    let (send, conn) = tokio::time::timeout(
        Duration::from_secs(5),
        h2::client::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(conn_window)
            .handshake::<_, Bytes>(io),
    )
    .await
    .map_err(|_| "HTTP/2 handshake timed out".to_string())?
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = match tokio::time::timeout(Duration::from_secs(5), send.ready()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            driver.abort();
            return Err(format!("HTTP/2 connection: {e}"));
        }
        Err(_) => {
            driver.abort();
            return Err("HTTP/2 connection not ready in 5 s".into());
        }
    };
    // The server's SETTINGS must allow extended CONNECT (RFC 8441 §3).
    let deadline = Instant::now() + Duration::from_secs(2);
    while !send.is_extended_connect_protocol_enabled() {
        if Instant::now() >= deadline {
            driver.abort();
            return Err("no SETTINGS_ENABLE_CONNECT_PROTOCOL from the server".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        if poll_fn(|cx| send.poll_ready(cx)).await.is_err() {
            driver.abort();
            return Err("HTTP/2 connection ended before its SETTINGS".into());
        }
    }
    Ok((send, driver))
}

/// Sends the extended CONNECT of a WebSocket (the response is left to the caller).
async fn connect_ws(
    send: &mut SendRequest<Bytes>,
    t: &Target,
) -> Result<(h2::client::ResponseFuture, SendStream<Bytes>), String> {
    let scheme = if t.tls.is_some() { "https" } else { "http" };
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{scheme}://{}:{}{}", t.host, t.port, t.path))
        .header("sec-websocket-version", "13")
        .body(())
        .map_err(|e| format!("request: {e}"))?;
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| send.poll_ready(cx)))
        .await
        .map_err(|_| "no room for another stream in 5 s".to_string())?
        .map_err(|e| format!("HTTP/2 connection: {e}"))?;
    send.send_request(req, false)
        .map_err(|e| format!("send_request: {e}"))
}

/// Opens up to `n` WebSockets on `send` and waits for their 200s (all within 10 s).
async fn open_streams(
    send: &mut SendRequest<Bytes>,
    t: &Target,
    n: usize,
) -> Result<Vec<(RecvStream, SendStream<Bytes>)>, String> {
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        pending.push(connect_ws(send, t).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = Vec::with_capacity(n);
    for (i, (response, stream)) in pending.into_iter().enumerate() {
        let r = tokio::time::timeout_at(deadline.into(), response)
            .await
            .map_err(|_| format!("stream {i}: no response within 10 s"))?
            .map_err(|e| format!("stream {i}: {e}"))?;
        if r.status() != http::StatusCode::OK {
            return Err(format!(
                "stream {i}: extended CONNECT answered {}",
                r.status()
            ));
        }
        open.push((r.into_body(), stream));
    }
    Ok(open)
}

/// Sends `data` on `stream` as flow control allows, until `deadline`; how much went.
async fn send_until(stream: &mut SendStream<Bytes>, data: &Bytes, deadline: Instant) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        stream.reserve_capacity(data.len() - sent);
        let granted =
            match tokio::time::timeout_at(deadline.into(), poll_fn(|cx| stream.poll_capacity(cx)))
                .await
            {
                Ok(Some(Ok(n))) => n,
                _ => break,
            };
        if granted == 0 {
            continue;
        }
        let n = granted.min(data.len() - sent);
        if stream.send_data(data.slice(sent..sent + n), false).is_err() {
            break;
        }
        sent += n;
    }
    sent
}

/// The streams the server allows at once on one connection (at most `MAX_STREAMS`).
fn stream_count(send: &SendRequest<Bytes>) -> usize {
    send.current_max_send_streams().clamp(1, MAX_STREAMS)
}

fn mib(n: usize) -> f64 {
    n as f64 / 1048576.0
}

/// One round of [`never_reads`]: the streams opened (and the server's limit), bytes
/// sent, streams pushed back, bytes echoed and left unread.
struct Round {
    streams: usize,
    max: usize,
    sent: usize,
    stalled: usize,
    unread: usize,
}

async fn never_reads_round(ctx: &Ctx) -> Result<Round, String> {
    const MESSAGE: usize = 32 << 10;
    const PER_STREAM: usize = 8;
    // 256 KiB per stream, 8 MiB for the connection: what the server may send before it
    // must wait for a window this client never gives back.
    let (mut send, driver) = open_h2(&ctx.t, 256 << 10, 8 << 20).await?;
    let max = send.current_max_send_streams();
    let n = stream_count(&send);
    let streams = match open_streams(&mut send, &ctx.t, n).await {
        Ok(s) => s,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    let mut frame = Vec::with_capacity(MESSAGE + 16);
    net::frame(&mut frame, true, 0x1, &[b'z'; MESSAGE]);
    let frame = Bytes::from(frame);
    // One task per stream, all sending at once for at most 2 s.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::with_capacity(streams.len());
    for (recv, mut stream) in streams {
        let frame = frame.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            for _ in 0..PER_STREAM {
                let n = send_until(&mut stream, &frame, deadline).await;
                sent += n;
                if n < frame.len() {
                    break;
                }
            }
            (sent, recv, stream)
        }));
    }
    let mut held = Vec::with_capacity(tasks.len());
    let (mut sent, mut stalled) = (0, 0);
    for t in tasks {
        if let Ok((n, recv, stream)) = t.await {
            sent += n;
            if n < PER_STREAM * frame.len() {
                stalled += 1;
            }
            held.push((recv, stream));
        }
    }
    // What the server sent, unread (and its window never released) on this side.
    let unread = held
        .iter_mut()
        .map(|(recv, _)| recv.flow_control().used_capacity())
        .sum();
    // Every stream held open, unread, while the good client is served.
    ctx.wait_served(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    driver.abort();
    drop(held);
    Ok(Round {
        streams: n,
        max,
        sent,
        stalled,
        unread,
    })
}

/// Many WebSockets on one HTTP/2 connection (as many as the server allows, up to 256),
/// each sent messages that the server echoes, while the client never reads a byte of what
/// comes back and never releases its flow-control window: the server's writes must stall
/// at the window (its memory bounded), other clients must be served meanwhile, and
/// everything must be freed when the connection is reset.
///
/// Freed is not given back: glibc keeps what the buffers of hundreds of streams freed in
/// its arenas (websockd, which holds up to 64 KiB each way per stream: 59.9 MiB RSS after
/// this attack, 8.0 MiB after `malloc_trim(0)`, measured with gdb; repeated attacks level
/// off near 58 MiB). With `--uring` (a ring and an arena per worker thread) more stays:
/// 55-71 MiB above the baseline after one attack in five CI runs, and over five attacks in
/// a row on one server 16, 75, 80, 81 and 83 MiB above the first baseline, levelling off.
/// So here the RSS after the attack cannot tell a leak from glibc's keeping, and may stay
/// as high as the peak allowed during it (96 MiB above the baseline); fds and child
/// processes must come back exactly, as after every case.
pub async fn never_reads(ctx: &Ctx) -> Outcome {
    const TOLERANCE_MIB: u64 = 96;
    ctx.attack_on();
    let mut out = match never_reads_round(ctx).await {
        Err(e) => outcome(false, e, 96),
        Ok(r) => outcome(
            ctx.served(),
            format!(
                "{} WebSockets on one connection (the server allows {}), {:.1} MiB sent, {} \
                 streams pushed back, {:.1} MiB echoed and never read (the client's window); \
                 reset",
                r.streams,
                r.max,
                mib(r.sent),
                r.stalled,
                mib(r.unread)
            ),
            96,
        ),
    };
    out.rss_tolerance_mib = TOLERANCE_MIB;
    out
}

/// Streams abandoned every way: on three connections in turn, as many WebSockets as the
/// server allows are opened and sent a message; then half are reset (RST_STREAM) and the
/// connection dropped under the rest; the same again with the connection dropped before
/// any response was read; and 500 streams opened and reset at once (a rapid reset; the
/// server may answer with GOAWAY). Other clients must be served, and nothing may be left.
pub async fn abandon(ctx: &Ctx) -> Outcome {
    ctx.attack_on();
    let r = async {
        let mut notes = Vec::new();
        let mut frame = Vec::new();
        net::frame(&mut frame, true, 0x1, b"abandoned soon");
        let frame = Bytes::from(frame);

        // 1. Open, a message each, half reset, the rest cut with the connection.
        let (mut send, driver) = open_h2(&ctx.t, 65535, 1 << 20).await?;
        let n = stream_count(&send);
        let streams = match open_streams(&mut send, &ctx.t, n).await {
            Ok(s) => s,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut held = Vec::with_capacity(streams.len());
        for (i, (recv, mut stream)) in streams.into_iter().enumerate() {
            send_until(&mut stream, &frame, deadline).await;
            if i % 2 == 0 {
                stream.send_reset(h2::Reason::CANCEL);
            }
            held.push((recv, stream));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        driver.abort();
        drop(held);
        notes.push(format!("{n} opened, half reset, the rest cut"));

        // 2. Requests sent, the connection dropped before any response was read.
        let (mut send, driver) = open_h2(&ctx.t, 65535, 1 << 20).await?;
        let n = stream_count(&send);
        let mut pending = Vec::with_capacity(n);
        for _ in 0..n {
            match connect_ws(&mut send, &ctx.t).await {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        driver.abort();
        notes.push(format!("{} cut before their responses", pending.len()));
        drop(pending);

        // 3. A rapid reset: each stream reset as soon as it is opened.
        let (mut send, driver) = open_h2(&ctx.t, 65535, 1 << 20).await?;
        let mut reset = 0;
        let mut refused = None;
        for _ in 0..500 {
            match connect_ws(&mut send, &ctx.t).await {
                Ok((_, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    reset += 1;
                }
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        driver.abort();
        notes.push(match refused {
            None => format!("{reset} reset at once"),
            Some(e) => format!("{reset} reset at once, then the server refused more ({e})"),
        });
        ctx.wait_served(Duration::from_secs(5)).await;
        Ok(notes.join("; "))
    }
    .await;
    match r {
        Err(e) => outcome(false, e, 64),
        Ok(notes) => outcome(ctx.served(), notes, 64),
    }
}
