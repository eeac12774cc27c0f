//! The load generator's permessage-deflate (RFC 7692), written against the RFC with flate2
//! for raw deflate, no WebSocket library: the offer and the check of the server's answer,
//! the pool of compressible text messages, the compression of each outgoing message (raw
//! deflate, sync flush, `00 00 ff ff` tail removed, RSV1, masked) and a parser that
//! collects each echo, inflates it (tail put back; the inflate context kept across messages
//! unless `server_no_context_takeover` was negotiated) and compares it with what was sent,
//! byte for byte.
//!
//! The same path runs without compression (`--payload json --deflate off`): the same pool,
//! sent as plain text frames, so a server without compression can be compared on the same
//! messages.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use loadgen::frame::{payload_len, Expect, MASK, TAG_LEN};

/// What a sync flush ends with; removed by the sender, appended by the receiver.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Where the tag sits in a pool message: after `{"seq":"`.
pub const TAG_AT: usize = 8;

/// The zlib level the load generator compresses with (weft's default; the servers' levels
/// are their own).
pub const LEVEL: u32 = 1;

/// What the load generator offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// No offer: plain text frames.
    Off,
    /// `permessage-deflate; client_max_window_bits`: both ends keep their LZ77 window
    /// across messages (context takeover), 15-bit windows unless the server asks otherwise.
    Takeover,
    /// Also `server_no_context_takeover; client_no_context_takeover`: each message is
    /// compressed on its own.
    NoContextTakeover,
}

impl Offer {
    pub fn parse(s: &str) -> Option<Offer> {
        match s {
            "off" => Some(Offer::Off),
            "takeover" => Some(Offer::Takeover),
            "no-context-takeover" => Some(Offer::NoContextTakeover),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Offer::Off => "off",
            Offer::Takeover => "takeover",
            Offer::NoContextTakeover => "no-context-takeover",
        }
    }

    /// The `Sec-WebSocket-Extensions` header line of the request (empty when off).
    pub fn header(self) -> &'static str {
        match self {
            Offer::Off => "",
            Offer::Takeover => {
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            }
            Offer::NoContextTakeover => {
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover; client_max_window_bits\r\n"
            }
        }
    }
}

/// What the server's response agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
}

fn window_bits(name: &str, v: Option<&str>) -> Result<u8, String> {
    let v = v
        .map(|v| v.trim_matches('"'))
        .ok_or_else(|| format!("{name} without a value"))?;
    match v.parse::<u8>() {
        Ok(b) if (8..=15).contains(&b) && !v.starts_with('0') => Ok(b),
        _ => Err(format!("{name}={v} is not 8-15")),
    }
}

/// Checks the server's answer to `offer` in the response head `head` (the bytes before the
/// blank line): `Ok(None)` when nothing was offered (and nothing accepted), the agreed
/// parameters when permessage-deflate was accepted. A declined offer, an extension not
/// offered, a parameter the offer did not allow or a malformed one are errors.
pub fn check_accept(head: &[u8], offer: Offer) -> Result<Option<Params>, String> {
    let head = std::str::from_utf8(head).map_err(|_| "response head not UTF-8")?;
    let mut elements: Vec<&str> = Vec::new();
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("sec-websocket-extensions") {
                elements.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()));
            }
        }
    }
    if offer == Offer::Off {
        return match elements.first() {
            None => Ok(None),
            Some(e) => Err(format!(
                "the server accepted an extension never offered: {e}"
            )),
        };
    }
    let element = match elements.as_slice() {
        [] => return Err("the server did not accept permessage-deflate".into()),
        [one] => *one,
        more => return Err(format!("the server accepted {} extensions", more.len())),
    };
    let mut parts = element.split(';').map(str::trim);
    let name = parts.next().unwrap_or("");
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err(format!(
            "the server accepted {name:?}, not permessage-deflate"
        ));
    }
    let mut p = Params {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut seen = Vec::new();
    for param in parts {
        let (k, v) = match param.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (param.to_ascii_lowercase(), None),
        };
        if seen.contains(&k) {
            return Err(format!("{k} given twice"));
        }
        match k.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" if v.is_some() => {
                return Err(format!("{k} takes no value"));
            }
            "server_no_context_takeover" => p.server_no_context_takeover = true,
            "client_no_context_takeover" => p.client_no_context_takeover = true,
            // The offer did not limit the server's window: it may still announce one.
            "server_max_window_bits" => p.server_max_window_bits = window_bits(&k, v)?,
            "client_max_window_bits" => p.client_max_window_bits = window_bits(&k, v)?,
            _ => return Err(format!("unknown parameter {k}")),
        }
        seen.push(k);
    }
    if offer == Offer::NoContextTakeover {
        // RFC 7692 §7.1.1.1: a server that accepts the offer confirms the request.
        if !p.server_no_context_takeover {
            return Err("server_no_context_takeover was asked for and not confirmed".into());
        }
        p.client_no_context_takeover = true;
    }
    if p.client_max_window_bits == 8 {
        // zlib cannot compress with a 256-byte window.
        return Err("the server asked for client_max_window_bits=8, which zlib cannot do".into());
    }
    Ok(Some(p))
}

/// A small xorshift64* generator: the pool is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "order", "filled", "partial", "cancel", "market", "limit", "price", "volume", "spread",
    "account", "session", "update", "delta", "snapshot", "ticker", "level", "depth", "trade",
    "buyer", "seller", "maker", "taker", "fee", "rebate", "margin", "position", "risk", "hedge",
    "alpha", "beta", "gamma", "settle", "clear", "route", "venue", "latency", "queue", "batch",
    "the", "a", "of", "to", "and", "in", "is", "for", "on", "with", "was", "at", "by", "from",
    "green", "red", "blue", "north", "south", "east", "west", "quick", "slow", "early", "late",
    "server", "client", "message", "window", "frame", "stream", "socket", "packet", "header",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
];
const TYPES: &[&str] = &[
    "order.new",
    "order.fill",
    "order.cancel",
    "quote.update",
    "trade.print",
    "user.login",
    "user.logout",
    "chat.message",
];
const TAGS: &[&str] = &[
    "vip", "new", "mobile", "web", "api", "eu", "us", "asia", "beta", "test",
];

/// The running values of an event stream: ids and timestamps that grow, a price that walks.
struct Stream {
    id: u64,
    ts: u64,
    price_cents: u64,
}

/// One JSON-like event record with varying ids, numbers and words.
fn record(r: &mut Rng, st: &mut Stream, out: &mut String) {
    use std::fmt::Write;
    st.id += 1 + r.below(3);
    st.ts += r.below(1000);
    st.price_cents = (st.price_cents + r.below(201)).saturating_sub(100).max(100);
    let id = st.id;
    let user = r.pick(NAMES);
    let n = r.below(100);
    let ty = r.pick(TYPES);
    let ts = st.ts;
    let price = format!("{}.{:02}", st.price_cents / 100, st.price_cents % 100);
    let qty = 1 + r.below(100);
    let _ = write!(
        out,
        "{{\"id\":{id},\"user\":\"{user}_{n}\",\"type\":\"{ty}\",\"ts\":{ts},\"price\":{price},\"qty\":{qty},\"tags\":["
    );
    for i in 0..1 + r.below(3) {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\"", r.pick(TAGS));
    }
    let _ = write!(
        out,
        "],\"status\":\"{}\",\"currency\":\"{}\",\"venue\":\"{}\",\"meta\":{{\"v\":2,\"source\":\"gateway-{}\",\"retries\":{}}}",
        r.pick(&["active", "active", "active", "pending", "closed"]),
        r.pick(&["USD", "USD", "EUR"]),
        r.pick(&["XNYS", "XNAS", "XLON"]),
        r.pick(&["eu-1", "eu-2", "us-1"]),
        r.below(2),
    );
    out.push_str(",\"note\":\"");
    for i in 0..3 + r.below(8) {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(r.pick(WORDS));
    }
    out.push_str("\"}");
}

/// Pre-generated text messages of one size: JSON documents
/// `{"seq":"TTTTTTTT","events":[{...},...]}` of exactly `size` bytes (padded with spaces
/// before the closing `]}`), the tag `T` written per message. Made before the measured
/// window, so generating them costs nothing during it.
pub struct Pool {
    msgs: Vec<Vec<u8>>,
    pub size: usize,
}

impl Pool {
    /// The smallest message size the pool can make.
    pub const MIN_SIZE: usize = 64;

    /// About 4 MiB of messages (at least 64, at most 1024), from a fixed seed.
    pub fn new(size: usize) -> Pool {
        assert!(size >= Pool::MIN_SIZE);
        let count = (4 << 20) / size;
        let count = count.clamp(64, 1024);
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut st = Stream {
            id: 48_210_000,
            ts: 1_718_000_000_000,
            price_cents: 10_000,
        };
        let mut msgs = Vec::with_capacity(count);
        let mut rec = String::new();
        for _ in 0..count {
            let mut m = String::with_capacity(size);
            m.push_str("{\"seq\":\"00000000\",\"events\":[");
            let mut first = true;
            loop {
                rec.clear();
                record(&mut r, &mut st, &mut rec);
                // Room for a comma and the closing "]}".
                if m.len() + rec.len() + 1 + 2 > size {
                    break;
                }
                if !first {
                    m.push(',');
                }
                m.push_str(&rec);
                first = false;
            }
            // Fill the rest with one short record of words, cut to fit exactly.
            let room = size - 2 - m.len();
            let open = if first {
                "{\"note\":\""
            } else {
                ",{\"note\":\""
            };
            if room >= open.len() + 2 {
                m.push_str(open);
                let words = room - open.len() - 2;
                let start = m.len();
                while m.len() - start < words {
                    m.push_str(r.pick(WORDS));
                    m.push(' ');
                }
                m.truncate(start + words);
                m.push_str("\"}");
            }
            while m.len() + 2 < size {
                m.push(' ');
            }
            m.push_str("]}");
            debug_assert_eq!(m.len(), size);
            msgs.push(m.into_bytes());
        }
        Pool { msgs, size }
    }

    /// The message that carries `tag`: a pool entry chosen by the tag (spread, so that a
    /// connection's consecutive messages differ), with the tag written in. Into `out`.
    pub fn message(&self, tag: &[u8; TAG_LEN], out: &mut Vec<u8>) {
        // Multiplying carries each tag byte's changes upwards: the last (fastest-changing)
        // byte is the lowest here, so the index bits (the high ones) depend on all.
        let h = u64::from_be_bytes(*tag).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let m = &self.msgs[(h >> 40) as usize % self.msgs.len()];
        out.clear();
        out.extend_from_slice(m);
        out[TAG_AT..TAG_AT + TAG_LEN].copy_from_slice(tag);
    }
}

/// The compressor of one connection's outgoing messages.
pub struct Deflater {
    c: Compress,
    reset_each_message: bool,
}

impl Deflater {
    pub fn new(p: &Params) -> Deflater {
        Deflater {
            c: Compress::new_with_window_bits(
                Compression::new(LEVEL),
                false,
                p.client_max_window_bits,
            ),
            reset_each_message: p.client_no_context_takeover,
        }
    }

    /// Compresses one whole message into `out` (appended): sync flush, tail removed.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 256);
            }
            let before = self.c.total_in();
            self.c
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("zlib compress");
            input = &input[(self.c.total_in() - before) as usize..];
            // The flush is complete once all input is taken and zlib left room in `out`.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            out.push(0);
        }
        if self.reset_each_message {
            self.c.reset();
        }
    }
}

/// Appends a masked client text frame holding `payload` (RSV1 when `compressed`) to `out`.
pub fn frame(payload: &[u8], compressed: bool, out: &mut Vec<u8>) {
    let len = payload.len();
    out.push(0x80 | if compressed { 0x40 } else { 0 } | 0x1);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= MASK[i & 3];
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data { remaining: u64, fin: bool },
    Control { remaining: u64 },
}

/// What a completed echo looked like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Frame bytes (headers and payloads of all its frames).
    pub wire_bytes: usize,
    pub compressed: bool,
}

/// The parser of the server's echoes in json/deflate mode: collects each message's payload,
/// inflates it when RSV1 is set, and compares it with the message that was sent.
pub struct Reader {
    state: State,
    in_message: bool,
    compressed: bool,
    wire: usize,
    /// The message's payload as received (compressed or not).
    payload: Vec<u8>,
    /// Inflated payload, and what the echo must be.
    plain: Vec<u8>,
    expected: Vec<u8>,
    inflate: Option<(Decompress, bool)>,
    pub controls: u64,
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            state: State::Header,
            in_message: false,
            compressed: false,
            wire: 0,
            payload: Vec::new(),
            plain: Vec::new(),
            expected: Vec::new(),
            inflate: None,
            controls: 0,
        }
    }

    /// Compression was agreed: RSV1 messages are inflated from now on.
    pub fn set_params(&mut self, p: &Params) {
        self.inflate = Some((
            Decompress::new_with_window_bits(false, p.server_max_window_bits.max(9)),
            p.server_no_context_takeover,
        ));
    }

    /// Parses from `data` up to the end of one message; `front` is the oldest message in
    /// flight. Returns the bytes consumed and the echo if one completed (and matched).
    pub fn feed(
        &mut self,
        data: &[u8],
        front: Option<&Expect>,
        pool: &Pool,
    ) -> Result<(usize, Option<Echo>), String> {
        let mut off = 0;
        loop {
            match self.state {
                State::Header => {
                    let Some((b0, len, hlen)) = header(&data[off..])? else {
                        return Ok((off, None));
                    };
                    off += hlen;
                    let fin = b0 & 0x80 != 0;
                    let rsv1 = b0 & 0x40 != 0;
                    let opcode = b0 & 0x0f;
                    match opcode {
                        0x8 => return Err("the server sent a close frame".into()),
                        0x9 | 0xA => {
                            if !fin || len > 125 || rsv1 {
                                return Err("bad control frame".into());
                            }
                            self.controls += 1;
                            self.state = State::Control { remaining: len };
                            continue;
                        }
                        0x1 | 0x2 => {
                            if self.in_message {
                                return Err("new message inside a fragmented one".into());
                            }
                            if front.is_none() {
                                return Err("an echo arrived that was never sent".into());
                            }
                            if opcode != 1 {
                                return Err(format!("echo kind: got opcode {opcode}, sent 1"));
                            }
                            if rsv1 && self.inflate.is_none() {
                                return Err("RSV1 set without permessage-deflate".into());
                            }
                            self.in_message = true;
                            self.compressed = rsv1;
                            self.wire = 0;
                            self.payload.clear();
                        }
                        0x0 => {
                            if !self.in_message {
                                return Err("continuation frame outside a message".into());
                            }
                            if rsv1 {
                                return Err("RSV1 on a continuation frame".into());
                            }
                        }
                        other => return Err(format!("reserved opcode {other}")),
                    }
                    self.wire += hlen;
                    self.state = State::Data {
                        remaining: len,
                        fin,
                    };
                }
                State::Control { remaining } => {
                    let take = (data.len() - off).min(remaining as usize);
                    off += take;
                    if remaining > take as u64 {
                        self.state = State::Control {
                            remaining: remaining - take as u64,
                        };
                        return Ok((off, None));
                    }
                    self.state = State::Header;
                }
                State::Data { remaining, fin } => {
                    let take = (data.len() - off).min(remaining as usize);
                    if self.payload.len() + take > pool.size + pool.size / 2 + 1024 {
                        return Err("echo payload far larger than the message sent".into());
                    }
                    self.payload.extend_from_slice(&data[off..off + take]);
                    self.wire += take;
                    off += take;
                    if remaining > take as u64 {
                        self.state = State::Data {
                            remaining: remaining - take as u64,
                            fin,
                        };
                        return Ok((off, None));
                    }
                    self.state = State::Header;
                    if fin {
                        let e = front.expect("checked at the message's first frame");
                        self.in_message = false;
                        self.check(e, pool)?;
                        return Ok((
                            off,
                            Some(Echo {
                                wire_bytes: self.wire,
                                compressed: self.compressed,
                            }),
                        ));
                    }
                }
            }
        }
    }

    fn check(&mut self, e: &Expect, pool: &Pool) -> Result<(), String> {
        pool.message(&e.tag, &mut self.expected);
        let got: &[u8] = if self.compressed {
            let (d, reset) = self.inflate.as_mut().expect("checked at the first frame");
            self.payload.extend_from_slice(&TAIL);
            self.plain.clear();
            let limit = self.expected.len() + 1;
            self.plain.reserve(limit + 64);
            let mut input = &self.payload[..];
            loop {
                let before = d.total_in();
                let status = d
                    .decompress_vec(input, &mut self.plain, FlushDecompress::Sync)
                    .map_err(|err| format!("inflate: {err}"))?;
                input = &input[(d.total_in() - before) as usize..];
                if self.plain.len() > limit {
                    return Err("inflated echo longer than sent".into());
                }
                if status == Status::StreamEnd {
                    return Err("echo ends its deflate stream (BFINAL)".into());
                }
                if input.is_empty() && self.plain.len() < self.plain.capacity() {
                    break;
                }
                if self.plain.len() == self.plain.capacity() {
                    self.plain.reserve(4096);
                }
            }
            if *reset {
                d.reset(false);
            }
            &self.plain
        } else {
            &self.payload
        };
        if got != &self.expected[..] {
            if got.len() != self.expected.len() {
                return Err(format!(
                    "echo is {} bytes, sent {} (compressed: {})",
                    got.len(),
                    self.expected.len(),
                    self.compressed
                ));
            }
            let p = (0..got.len())
                .find(|&i| got[i] != self.expected[i])
                .unwrap_or(0);
            return Err(format!(
                "echo differs at byte {p} (compressed: {}, full check)",
                self.compressed
            ));
        }
        Ok(())
    }
}

/// A server frame's header: `None` if cut short; `(first byte, payload length, header
/// length)`; errors for a mask bit or RSV2/RSV3.
fn header(b: &[u8]) -> Result<Option<(u8, u64, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x30 != 0 {
        return Err(format!("RSV2/RSV3 set: {:#04x}", b[0]));
    }
    if b[1] & 0x80 != 0 {
        return Err("the server masked a frame".into());
    }
    let Some((len, hlen)) = payload_len(b) else {
        return Ok(None);
    };
    Ok(Some((b[0], len, hlen)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgen::frame::{tag, Template};

    const ACCEPTED: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n";

    fn params(nct: bool) -> Params {
        Params {
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    /// The server's side: a compressor over the echoes, unmasked frames of `frames` pieces.
    fn server_echo(d: &mut Deflater, plain: &[u8], compress: bool, frames: usize) -> Vec<u8> {
        let mut payload = Vec::new();
        if compress {
            d.compress(plain, &mut payload);
        } else {
            payload.extend_from_slice(plain);
        }
        let per = payload.len().div_ceil(frames).max(1);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = payload.chunks(per).collect();
        for (i, c) in chunks.iter().enumerate() {
            let mut b0 = if i == 0 { 0x1 } else { 0x0 };
            if i == 0 && compress {
                b0 |= 0x40;
            }
            if i + 1 == chunks.len() {
                b0 |= 0x80;
            }
            out.push(b0);
            if c.len() < 126 {
                out.push(c.len() as u8);
            } else {
                out.push(126);
                out.extend_from_slice(&(c.len() as u16).to_be_bytes());
            }
            out.extend_from_slice(c);
        }
        out
    }

    fn run(
        r: &mut Reader,
        wire: &[u8],
        piece: usize,
        exp: &[Expect],
        pool: &Pool,
    ) -> Result<usize, String> {
        let mut buf = Vec::new();
        let mut done = 0;
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            let mut off = 0;
            loop {
                let (n, echo) = r.feed(&buf[off..], exp.get(done), pool)?;
                off += n;
                if echo.is_some() {
                    done += 1;
                } else if n == 0 || off == buf.len() {
                    break;
                }
            }
            buf.drain(..off);
        }
        Ok(done)
    }

    #[test]
    fn the_pool_is_exact_json_text_that_compresses_3_to_6_times() {
        for size in [1024, 16384] {
            let pool = Pool::new(size);
            let mut m = Vec::new();
            pool.message(&tag(7), &mut m);
            assert_eq!(m.len(), size);
            let s = std::str::from_utf8(&m).unwrap();
            assert!(
                s.starts_with("{\"seq\":\"00000007\",\"events\":[{\"id\":"),
                "{s}"
            );
            assert!(s.ends_with("]}"));
            // Consecutive messages of a connection differ.
            let mut m2 = Vec::new();
            pool.message(&tag(8), &mut m2);
            assert_ne!(m[TAG_AT + TAG_LEN..], m2[TAG_AT + TAG_LEN..]);
            // Compressed with context takeover, a run of messages shrinks 3-6 times.
            let mut d = Deflater::new(&params(false));
            let (mut plain, mut wire) = (0, 0);
            for i in 0..200 {
                pool.message(&tag(i), &mut m);
                let mut out = Vec::new();
                d.compress(&m, &mut out);
                plain += m.len();
                wire += out.len();
            }
            let ratio = plain as f64 / wire as f64;
            assert!((3.0..6.5).contains(&ratio), "size {size}: ratio {ratio:.2}");
        }
    }

    #[test]
    fn negotiation_checks() {
        let resp = |ext: &str| format!("{ACCEPTED}{ext}");
        let ok = resp("Sec-WebSocket-Extensions: permessage-deflate");
        assert_eq!(
            check_accept(ok.as_bytes(), Offer::Takeover),
            Ok(Some(params(false)))
        );
        let bits = resp("sec-websocket-extensions: permessage-deflate; client_max_window_bits=12; server_max_window_bits=10");
        let p = check_accept(bits.as_bytes(), Offer::Takeover)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.client_max_window_bits, p.server_max_window_bits),
            (12, 10)
        );
        // Declined, or not confirmed.
        assert!(check_accept(ACCEPTED.as_bytes(), Offer::Takeover).is_err());
        assert!(check_accept(ok.as_bytes(), Offer::NoContextTakeover).is_err());
        let nct = resp("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover");
        assert_eq!(
            check_accept(nct.as_bytes(), Offer::NoContextTakeover),
            Ok(Some(params(true)))
        );
        // Bad parameters, or an extension never offered.
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; foo",
            "x-webkit-deflate-frame",
            "permessage-deflate; client_max_window_bits=8",
        ] {
            let r = resp(&format!("Sec-WebSocket-Extensions: {bad}"));
            assert!(
                check_accept(r.as_bytes(), Offer::Takeover).is_err(),
                "{bad}"
            );
        }
        assert!(check_accept(ok.as_bytes(), Offer::Off).is_err());
        assert_eq!(check_accept(ACCEPTED.as_bytes(), Offer::Off), Ok(None));
    }

    #[test]
    fn echoes_inflate_and_match_in_any_split_with_and_without_takeover() {
        let pool = Pool::new(1024);
        let t = Template::new(1024, true);
        for nct in [false, true] {
            let p = params(nct);
            let mut server = Deflater::new(&p);
            let ids = [1u32, 2, 3, 4];
            let exp: Vec<Expect> = ids.iter().map(|&i| t.expect(i)).collect();
            let mut wire = Vec::new();
            let mut m = Vec::new();
            for (k, &i) in ids.iter().enumerate() {
                pool.message(&tag(i), &mut m);
                // One echo uncompressed (a server may), one in 3 frames.
                wire.extend(server_echo(
                    &mut server,
                    &m,
                    k != 2,
                    if k == 1 { 3 } else { 1 },
                ));
            }
            for piece in [1, 5, 700, wire.len()] {
                let mut r = Reader::new();
                r.set_params(&p);
                assert_eq!(
                    run(&mut r, &wire, piece, &exp, &pool),
                    Ok(4),
                    "nct {nct} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_echo_fails() {
        let pool = Pool::new(1024);
        let t = Template::new(1024, true);
        let exp = [t.expect(5)];
        let p = params(false);
        let mut m = Vec::new();
        pool.message(&tag(5), &mut m);
        let reader = || {
            let mut r = Reader::new();
            r.set_params(&p);
            r
        };
        // One byte changed before compression.
        let mut bad = m.clone();
        bad[600] ^= 1;
        let wire = server_echo(&mut Deflater::new(&p), &bad, true, 1);
        assert!(run(&mut reader(), &wire, 100, &exp, &pool)
            .unwrap_err()
            .contains("byte 600"));
        // The wrong message (order), uncompressed.
        pool.message(&tag(6), &mut bad);
        let wire = server_echo(&mut Deflater::new(&p), &bad, false, 1);
        assert!(run(&mut reader(), &wire, 100, &exp, &pool).is_err());
        // Corrupt compressed bytes.
        let mut wire = server_echo(&mut Deflater::new(&p), &m, true, 1);
        let n = wire.len();
        wire[n / 2] ^= 0x55;
        assert!(run(&mut reader(), &wire, 100, &exp, &pool).is_err());
        // RSV1 without an agreement.
        let wire = server_echo(&mut Deflater::new(&p), &m, true, 1);
        assert!(run(&mut Reader::new(), &wire, 100, &exp, &pool)
            .unwrap_err()
            .contains("RSV1"));
        // A server that kept its context but said it would not: the second echo breaks.
        let mut server = Deflater::new(&params(false));
        let exp2 = [t.expect(5), t.expect(5)];
        let mut wire = server_echo(&mut server, &m, true, 1);
        wire.extend(server_echo(&mut server, &m, true, 1));
        let mut r = Reader::new();
        r.set_params(&params(true));
        assert!(run(&mut r, &wire, 100000, &exp2, &pool).is_err());
    }

    #[test]
    fn client_frames_are_masked_with_rsv1() {
        let mut out = Vec::new();
        frame(b"abcdef", true, &mut out);
        assert_eq!(out[0], 0xc1);
        assert_eq!(out[1], 0x80 | 6);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i & 3])
            .collect();
        assert_eq!(unmasked, b"abcdef");
    }
}
