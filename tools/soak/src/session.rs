//! The clients: one connection's life (connect, perhaps permessage-deflate, messages of mixed
//! sizes each verified byte for byte, then an ending), and the counters they add to.

use crate::net::{Rng, Target};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft::tokio::{MaybeTlsStream, WebSocket};
use weft::{CloseCode, Message, MessageKind, Options};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// What comes back for what is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Each message comes back as it went: kind, bytes, boundaries (weft's echo servers,
    /// websockd `--framed cat`).
    Echo,
    /// Text only, no newlines; each message comes back as one text message (websockd `cat`).
    Lines,
    /// Binary only; the bytes come back in order, in messages of any size (websockd
    /// `--binary cat`).
    Stream,
}

/// What every session shares.
pub struct Cfg {
    pub target: Target,
    pub mode: Mode,
    /// The largest message (bytes).
    pub max_size: usize,
    /// The share of connections that offer permessage-deflate (percent).
    pub deflate_percent: u64,
    /// The most messages one churn connection exchanges.
    pub max_messages: u64,
    /// The longest one session may take (a hang is an error).
    pub session_timeout: Duration,
}

/// An unexpected outcome: its kind (the key it is counted under) and a description.
pub type Fail = (&'static str, String);

/// Counters, shared by every client task.
#[derive(Default)]
pub struct Stats {
    /// Connections begun (TCP connect attempted).
    pub attempted: AtomicU64,
    /// WebSocket handshakes completed.
    pub opened: AtomicU64,
    /// Handshakes with permessage-deflate negotiated.
    pub deflate: AtomicU64,
    /// Messages sent and verified back.
    pub messages: AtomicU64,
    /// Of those, messages sent in several frames.
    pub fragmented: AtomicU64,
    /// Payload bytes sent and verified back (each counted once).
    pub bytes: AtomicU64,
    /// Endings: a clean close (1000 both ways).
    pub clean: AtomicU64,
    /// Endings: dropped between messages.
    pub drop_between: AtomicU64,
    /// Endings: dropped in the middle of a message (inside a frame or between frames).
    pub drop_mid: AtomicU64,
    /// Endings: dropped before the handshake completed.
    pub drop_pre: AtomicU64,
    /// Of the drops, those with a reset (SO_LINGER 0) rather than a FIN.
    pub resets: AtomicU64,
    /// Unexpected outcomes by kind: how many, and the first one's description.
    pub errors: Mutex<BTreeMap<&'static str, (u64, String)>>,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Records an unexpected outcome.
    pub fn error(&self, (kind, detail): Fail) {
        if let Ok(mut e) = self.errors.lock() {
            let entry = e.entry(kind).or_insert((0, detail));
            entry.0 += 1;
        }
    }

    /// How many unexpected outcomes there were.
    pub fn error_count(&self) -> u64 {
        self.errors
            .lock()
            .map(|e| e.values().map(|(n, _)| n).sum())
            .unwrap_or(u64::MAX)
    }

    /// "kind xN (first: ...)" for each kind, or "none".
    pub fn errors_line(&self) -> String {
        let Ok(e) = self.errors.lock() else {
            return "(lock poisoned)".into();
        };
        if e.is_empty() {
            return "none".into();
        }
        e.iter()
            .map(|(k, (n, first))| format!("{k} x{n} (first: {first})"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

enum Ending {
    Clean,
    DropBetween,
    DropMid,
    DropPre,
}

/// One churn connection, start to end, within the session timeout; unexpected outcomes are
/// counted in `stats`.
pub async fn churn(cfg: &Cfg, stats: &Stats, rng: &mut Rng) {
    let result = tokio::time::timeout(cfg.session_timeout, churn_inner(cfg, stats, rng))
        .await
        .unwrap_or_else(|_| {
            Err((
                "hang",
                format!("a churn session took over {:?}", cfg.session_timeout),
            ))
        });
    if let Err(f) = result {
        stats.error(f);
    }
}

async fn churn_inner(cfg: &Cfg, stats: &Stats, rng: &mut Rng) -> Result<(), Fail> {
    add(&stats.attempted, 1);
    let ending = match rng.below(100) {
        0..=69 => Ending::Clean,
        70..=79 => Ending::DropBetween,
        80..=89 => Ending::DropMid,
        _ => Ending::DropPre,
    };
    let rst = rng.below(2) == 0;
    if let Ending::DropPre = ending {
        drop_before_handshake(&cfg.target, rng, rst).await?;
        add(&stats.drop_pre, 1);
        add(&stats.resets, rst as u64);
        return Ok(());
    }
    let deflate = rng.below(100) < cfg.deflate_percent;
    let mut ws = open(cfg, deflate, stats).await?;
    let n = rng.below(cfg.max_messages + 1);
    let mut sent = 0;
    while sent < n {
        let batch: Vec<(Message, bool)> = if rng.below(5) == 0 {
            // Several small messages in one write (coalesced on the way out).
            (0..2 + rng.below(7))
                .map(|_| (message(cfg.mode, rng, 16, 4096), rng.below(4) == 0))
                .collect()
        } else {
            vec![(message(cfg.mode, rng, 16, cfg.max_size), rng.below(4) == 0)]
        };
        sent += batch.len() as u64;
        exchange(&mut ws, cfg.mode, rng, stats, batch).await?;
    }
    match ending {
        Ending::Clean => {
            close_clean(&mut ws).await?;
            add(&stats.clean, 1);
        }
        Ending::DropBetween => {
            if rst {
                set_rst(&ws);
            }
            drop(ws);
            add(&stats.drop_between, 1);
            add(&stats.resets, rst as u64);
        }
        Ending::DropMid | Ending::DropPre => {
            drop_mid_message(ws, cfg, rng, rst).await?;
            add(&stats.drop_mid, 1);
            add(&stats.resets, rst as u64);
        }
    }
    Ok(())
}

/// One connection of the open-and-close phase: connect (odd `i`: with permessage-deflate),
/// one small message echoed, then a clean close (or, one in eight, a reset).
pub async fn open_close(cfg: &Cfg, stats: &Stats, i: u64, rng: &mut Rng) {
    let inner = async {
        add(&stats.attempted, 1);
        let mut ws = open(cfg, i % 2 == 1, stats).await?;
        let msg = message(cfg.mode, rng, 16, 1024);
        exchange(&mut ws, cfg.mode, rng, stats, vec![(msg, false)]).await?;
        if i % 8 == 7 {
            set_rst(&ws);
            drop(ws);
            add(&stats.drop_between, 1);
            add(&stats.resets, 1);
        } else {
            close_clean(&mut ws).await?;
            add(&stats.clean, 1);
        }
        Ok::<(), Fail>(())
    };
    let result = tokio::time::timeout(cfg.session_timeout, inner)
        .await
        .unwrap_or_else(|_| {
            Err((
                "hang",
                format!("connection {i} took over {:?}", cfg.session_timeout),
            ))
        });
    if let Err(f) = result {
        stats.error(f);
    }
}

async fn open(cfg: &Cfg, deflate: bool, stats: &Stats) -> Result<Ws, Fail> {
    let mut options = Options::default();
    options.connect_timeout = Some(Duration::from_secs(10));
    options.handshake_timeout = Some(Duration::from_secs(10));
    options.close_timeout = Duration::from_secs(10);
    if deflate {
        options.deflate = Some(weft::proto::deflate::DeflateConfig::default());
    }
    let (ws, _) = weft::tokio::connect_url(&cfg.target.url, options)
        .await
        .map_err(|e| ("connect", e.to_string()))?;
    add(&stats.opened, 1);
    let negotiated = ws.connection().extension().is_some();
    if negotiated != deflate {
        return Err((
            "deflate-negotiation",
            format!("offered: {deflate}, negotiated: {negotiated}"),
        ));
    }
    add(&stats.deflate, negotiated as u64);
    Ok(ws)
}

/// Sends the batch (each message whole or in 2..6 frames), then reads the echoes and
/// compares them byte for byte.
async fn exchange(
    ws: &mut Ws,
    mode: Mode,
    rng: &mut Rng,
    stats: &Stats,
    batch: Vec<(Message, bool)>,
) -> Result<(), Fail> {
    let send_err = |e: weft::Error| ("send", e.to_string());
    let mut fragmented = 0;
    for (msg, fragment) in &batch {
        if *fragment && msg.len() >= 2 {
            fragmented += 1;
            let payload = msg.payload();
            let frames = 2 + rng.below(5) as usize;
            let mut cuts: Vec<usize> = (1..frames)
                .map(|_| rng.below(payload.len() as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            cuts.push(payload.len());
            let conn = ws.connection_mut();
            conn.begin_message(msg.kind())
                .map_err(|e| ("send", e.to_string()))?;
            let mut at = 0;
            for (k, &cut) in cuts.iter().enumerate() {
                conn.send_frame(payload.slice(at..cut), k + 1 == cuts.len())
                    .map_err(|e| ("send", e.to_string()))?;
                at = cut;
            }
        } else {
            ws.feed(msg.clone()).await.map_err(send_err)?;
        }
    }
    ws.flush().await.map_err(send_err)?;

    let total: usize = batch.iter().map(|(m, _)| m.len()).sum();
    match mode {
        Mode::Echo | Mode::Lines => {
            for (k, (sent, _)) in batch.iter().enumerate() {
                let got = recv(ws).await?;
                let want_kind = if mode == Mode::Lines {
                    MessageKind::Text
                } else {
                    sent.kind()
                };
                if got.kind() != want_kind || got.payload() != sent.payload() {
                    return Err((
                        "mismatch",
                        format!(
                            "message {k} of {}: sent {:?} of {} bytes, got {:?} of {} bytes{}",
                            batch.len(),
                            sent.kind(),
                            sent.len(),
                            got.kind(),
                            got.len(),
                            first_difference(sent.payload(), got.payload())
                        ),
                    ));
                }
            }
        }
        Mode::Stream => {
            let want: Vec<u8> = batch
                .iter()
                .flat_map(|(m, _)| m.payload().iter().copied())
                .collect();
            let mut at = 0;
            while at < want.len() {
                let got = recv(ws).await?;
                let end = at + got.len();
                if got.kind() != MessageKind::Binary
                    || end > want.len()
                    || got.payload()[..] != want[at..end]
                {
                    return Err((
                        "mismatch",
                        format!(
                            "stream: {:?} of {} bytes at offset {at} of {}{}",
                            got.kind(),
                            got.len(),
                            want.len(),
                            first_difference(&want[at..end.min(want.len())], got.payload())
                        ),
                    ));
                }
                at = end;
            }
        }
    }
    add(&stats.messages, batch.len() as u64);
    add(&stats.fragmented, fragmented);
    add(&stats.bytes, total as u64);
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(", first difference at byte {i}"),
        None if a.len() != b.len() => ", one a prefix of the other".into(),
        None => String::new(),
    }
}

async fn recv(ws: &mut Ws) -> Result<Message, Fail> {
    match ws.recv().await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err((
            "closed-early",
            format!(
                "the server closed while an echo was due: {:?}",
                ws.connection().close_received()
            ),
        )),
        Err(e) => Err(("recv", e.to_string())),
    }
}

async fn close_clean(ws: &mut Ws) -> Result<(), Fail> {
    ws.close(CloseCode::NORMAL, "")
        .await
        .map_err(|e| ("close", e.to_string()))?;
    match ws.connection().close_received() {
        Some(f) if f.code == CloseCode::NORMAL => Ok(()),
        Some(f) => Err((
            "close-code",
            format!("closed with {} {:?}", f.code.0, f.reason),
        )),
        None => Err(("close-missing", "no close frame back".into())),
    }
}

fn set_rst(ws: &Ws) {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        // Best effort: without it the drop is a FIN, which is also a drop.
        let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
    }
}

/// Connects, then nothing, part of the request head, or all of it, and drops.
async fn drop_before_handshake(target: &Target, rng: &mut Rng, rst: bool) -> Result<(), Fail> {
    let mut tcp = target
        .open_tcp(rst)
        .await
        .map_err(|e| ("connect", e.to_string()))?;
    let head = target.upgrade_request();
    let len = match rng.below(3) {
        0 => 0,
        1 => 1 + rng.below(head.len() as u64 - 1) as usize,
        _ => head.len(),
    };
    // The server may already have given up on us: a failed write is not an error here.
    let _ = tcp.write_all(&head.as_bytes()[..len]).await;
    drop(tcp);
    Ok(())
}

/// Starts a message of up to `max_size` bytes and drops the connection inside it: inside a
/// frame of declared length, or between two frames.
async fn drop_mid_message(mut ws: Ws, cfg: &Cfg, rng: &mut Rng, rst: bool) -> Result<(), Fail> {
    let msg = message(cfg.mode, rng, 1024, cfg.max_size.max(2048));
    let payload = msg.payload().clone();
    let part = 1 + rng.below(payload.len() as u64 - 1) as usize;
    let conn = ws.connection_mut();
    let api = |e: weft::proto::Error| ("client-api", e.to_string());
    conn.begin_message(msg.kind()).map_err(api)?;
    if rng.below(2) == 0 {
        conn.begin_frame(payload.len() as u64, true).map_err(api)?;
        conn.send_frame_data(payload.slice(..part)).map_err(api)?;
    } else {
        conn.send_frame(payload.slice(..part), false).map_err(api)?;
    }
    // The server may close first (it may not like a half message at its limit): not an error.
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.flush()).await;
    if rst {
        set_rst(&ws);
    }
    drop(ws);
    Ok(())
}

/// A message of `min..=max` bytes, the length log-uniform: text (ASCII with 2-, 3- and 4-byte
/// code points, never a newline) or binary (random, or a repeated pattern that compresses).
pub fn message(mode: Mode, rng: &mut Rng, min: usize, max: usize) -> Message {
    let (lo, hi) = ((min.max(1) as f64).ln(), (max.max(min) as f64).ln());
    let unit = rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
    let len = ((lo + (hi - lo) * unit).exp() as usize).clamp(min, max.max(min));
    let text = match mode {
        Mode::Lines => true,
        Mode::Stream => false,
        Mode::Echo => rng.below(2) == 0,
    };
    let compressible = rng.below(2) == 0;
    if text {
        Message::from(text_of(rng, len, compressible))
    } else {
        let mut data = vec![0u8; len];
        if compressible {
            let mut motif = vec![0u8; 1 + rng.below(64) as usize];
            rng.fill(&mut motif);
            for (i, b) in data.iter_mut().enumerate() {
                *b = motif[i % motif.len()];
            }
            // A few random bytes in it, so the echo of each position matters.
            for _ in 0..len / 512 + 1 {
                let i = rng.below(len as u64) as usize;
                data[i] = rng.next() as u8;
            }
        } else {
            rng.fill(&mut data);
        }
        Message::from(Bytes::from(data))
    }
}

/// About `len` bytes of UTF-8 (never more, never a `\n` or `\r`).
fn text_of(rng: &mut Rng, len: usize, compressible: bool) -> String {
    const WORDS: [&str; 8] = [
        "weft ", "soak ", "frame ", "é ", "漢字 ", "🦀 ", "deflate ", "echo, ",
    ];
    const WIDE: [char; 3] = ['é', '漢', '🦀'];
    let mut s = String::with_capacity(len + 8);
    while s.len() < len {
        if compressible {
            s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        } else if rng.below(16) == 0 {
            s.push(WIDE[rng.below(3) as usize]);
        } else {
            s.push((b' ' + rng.below(95) as u8) as char);
        }
    }
    let mut cut = len.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    if s.is_empty() {
        s.push('x');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fit_their_mode_and_bounds() {
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let m = message(Mode::Lines, &mut rng, 16, 262_144);
            assert_eq!(m.kind(), MessageKind::Text);
            assert!(m.len() >= 13 && m.len() <= 262_144, "{}", m.len());
            assert!(!m.payload().contains(&b'\n') && !m.payload().contains(&b'\r'));
            assert!(std::str::from_utf8(m.payload()).is_ok());
            let b = message(Mode::Stream, &mut rng, 16, 262_144);
            assert_eq!(b.kind(), MessageKind::Binary);
            assert!(b.len() >= 16 && b.len() <= 262_144);
        }
    }

    #[test]
    fn sizes_spread_over_the_range() {
        let mut rng = Rng::new(3);
        let lens: Vec<usize> = (0..4000)
            .map(|_| message(Mode::Echo, &mut rng, 16, 262_144).len())
            .collect();
        assert!(lens.iter().any(|&l| l < 64));
        assert!(lens.iter().any(|&l| l > 128 * 1024));
    }
}
