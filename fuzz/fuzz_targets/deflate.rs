//! Fuzz target for permessage-deflate (RFC 7692) through the engine's extension path:
//! negotiation with random parameters (the client's offer, or a fuzzed
//! `Sec-WebSocket-Extensions` value, through the server's `DeflateConfig::negotiate`),
//! then compressed frames received by a `Connection` in random pieces, with the memory the
//! receive path allocates bounded by the limits.
//!
//! Input layout: 7 setup bytes, [an offer], then operations.
//!
//! - byte 0: bit 0 the mode (0 receive: frames from a peer plus raw frames and corrupted
//!   bytes; 1 round trip: only what a peer `Connection` sends); bit 1 the receiver's role
//!   (0 server, 1 client); bits 2-3 receive level (message, frame, chunk, chunk); bits 4-5
//!   the largest piece fed at once (1, 7, 64, 4096); bits 6-7 the offer (0-1 the client's
//!   own `DeflateConfig::offer`; 2-3 a fuzzed header value: a length byte, then that many
//!   bytes, parsed with `parse_extensions`).
//! - byte 1: bits 0-3 no_context_takeover flags (client offer: server, client; server
//!   config: server, client); bits 4-7 the client's server_max_window_bits (0-7 none, else
//!   the value 8-15).
//! - byte 2: bits 0-3 the server's own server_max_window_bits, bits 4-7 the server's
//!   client_max_window_bits (same coding).
//! - byte 3: bits 0-3 the client's client_max_window_bits (same coding); bits 4-5 the
//!   compression level (0, 1, 6, 9); bits 6-7 the threshold (0, 16, 64, 1000).
//! - byte 4: bits 0-2 the receiver's `max_message_size`, bits 3-5 its `max_frame_size`
//!   (none, 0, 1, 100, 1000, 4096, 65536, 1 MiB); bits 6-7 the peer's `fragment_size`
//!   (none, 1, 7, 100).
//! - bytes 5-6: seed of the split pattern and the masking keys.
//! - then operations: one byte (low 3 bits the operation, high 5 bits its argument):
//!   0 the peer sends a whole message (text or binary, bit 3; a payload follows: a length
//!   byte and that many bytes); 1 the peer sends a message frame by frame (1-4 frames,
//!   each a payload); 2 a bomb: a message of 2^(10 + arg % 11) equal bytes (up to 1 MiB,
//!   2 MiB in all, 64 Ki frames of `fragment_size`);
//!   3 a ping, pong or close from the peer; in receive mode only: 4 a raw data frame (a
//!   header byte: FIN, RSV, opcode; then a payload, as it is, masked if the receiver is
//!   the server), 5 flip a byte of the wire so far (two position bytes, one XOR byte),
//!   6 raw bytes appended. In round-trip mode 4-6 are 0-2.
//!
//! What is checked:
//!
//! - negotiation: the parameters are within 8-15, the response parses back to the same
//!   offer, honours what the offer asked for, and (for the client's own offer) the client
//!   accepts it with the same parameters;
//! - receive: no panic; the events follow the grammar of their level; every limit holds
//!   on decoded data (messages, frames, chunk-level pieces of at most 64 KiB); text is valid
//!   UTF-8; an error is sticky, its close code is 1002, 1007 or 1009 (never 1011: the
//!   extension always makes progress), and its close frame is what the receiver writes;
//! - memory: the read buffer never holds more than a frame within the limits (a compressed
//!   frame is decoded as it arrives, not buffered whole); while receiving, the process's
//!   Rust heap may not grow past what the wire,
//!   the limit and zlib's state account for (a counting allocator with a hard limit: past
//!   it the allocation fails and the run aborts), so a bomb costs no more than its limit;
//! - round trip: what the peer sent comes back identical and in order (messages, pings,
//!   pongs, close), across context takeover and any split; the only error allowed is
//!   1009 for a message whose decoded size (or a frame of it) is over a limit.
#![no_main]

use bytes::{Buf, Bytes};
use cap::Cap;
use libfuzzer_sys::fuzz_target;
use std::alloc::System;
use weft_fuzz::Rng;
use weft_proto::deflate::{Deflate, DeflateConfig, DeflateParams};
use weft_proto::handshake::{parse_extensions, ExtensionOffer};
use weft_proto::{
    CloseCode, Config, Connection, Error, Event, Message, MessageKind, ProtocolError, RecvLevel,
    Role,
};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const SETUP_LEN: usize = 7;
const LIMITS: [Option<u64>; 8] = [
    None,
    Some(0),
    Some(1),
    Some(100),
    Some(1000),
    Some(4096),
    Some(65536),
    Some(1 << 20),
];
/// The most decoded bytes one chunk-level event carries (the engine's `CHUNK_OUT`).
const CHUNK_OUT: usize = 64 * 1024;
/// zlib's state for both directions and everything else the engine holds besides the
/// buffers (about 430 KB with 15-bit windows), with room to spare.
const FIXED_SLACK: usize = 3 << 20;

fn bits(n: u8) -> Option<u8> {
    (n >= 8).then_some(n)
}

/// Reads operations and their payloads from the input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A length byte, then that many bytes (fewer at the end of the input). Lengths from
    /// 200 up mean 200 + 32 * (n - 200), for payloads over the thresholds.
    fn payload(&mut self) -> &'a [u8] {
        let n = match self.byte().unwrap_or(0) as usize {
            n if n >= 200 => 200 + 32 * (n - 200),
            n => n,
        };
        let n = n.min(self.0.len());
        let (p, rest) = self.0.split_at(n);
        self.0 = rest;
        p
    }
}

/// What the receiver must see, in order.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Message(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

/// The negotiated parameters, checked on the way.
fn negotiate(data: &[u8], input: &mut Input) -> (DeflateParams, DeflateConfig) {
    let client = DeflateConfig {
        server_no_context_takeover: data[1] & 1 != 0,
        client_no_context_takeover: data[1] & 2 != 0,
        server_max_window_bits: bits(data[1] >> 4),
        client_max_window_bits: bits(data[3] & 15),
        level: [0, 1, 6, 9][((data[3] >> 4) & 3) as usize],
        threshold: [0, 16, 64, 1000][(data[3] >> 6) as usize],
    };
    let server = DeflateConfig {
        server_no_context_takeover: data[1] & 4 != 0,
        client_no_context_takeover: data[1] & 8 != 0,
        server_max_window_bits: bits(data[2] & 15),
        client_max_window_bits: bits(data[2] >> 4),
        ..client.clone()
    };
    let own_offer = client.offer();
    let mut offers: Vec<ExtensionOffer> = Vec::new();
    if data[0] >> 6 >= 2 {
        let value = input.payload();
        if let Ok(parsed) = parse_extensions(value) {
            offers = parsed;
        }
    }
    let fuzzed = !offers.is_empty();
    let (params, response) = match server.negotiate(&offers) {
        Some(accepted) => accepted,
        None => server
            .negotiate(std::slice::from_ref(&own_offer))
            .expect("the server refused the client's own offer"),
    };
    for b in [params.server_max_window_bits, params.client_max_window_bits] {
        assert!((8..=15).contains(&b), "window bits {b} out of 8-15");
    }
    // The response as a header value parses back to itself.
    let text = response.to_string();
    let back = parse_extensions(text.as_bytes()).expect("the response does not parse");
    assert_eq!(back, vec![response.clone()], "the response changed: {text}");
    if server.server_no_context_takeover {
        assert!(params.server_no_context_takeover);
    }
    if server.client_no_context_takeover {
        assert!(params.client_no_context_takeover);
    }
    if let Some(own) = server.server_max_window_bits {
        assert!(params.server_max_window_bits <= own.clamp(8, 15));
    }
    // Which offer was taken: the first acceptable one, in order.
    let taken = if fuzzed
        && offers
            .iter()
            .any(|o| server.negotiate(std::slice::from_ref(o)).is_some())
    {
        offers
            .iter()
            .find(|o| server.negotiate(std::slice::from_ref(o)).is_some())
            .cloned()
    } else {
        Some(own_offer.clone())
    };
    if let Some(offer) = taken {
        // What the offer asked of the server is honoured.
        for p in &offer.params {
            let name = p.name.to_ascii_lowercase();
            if name == "server_no_context_takeover" {
                assert!(params.server_no_context_takeover, "{offer} -> {text}");
            }
            if name == "client_no_context_takeover" {
                assert!(params.client_no_context_takeover, "{offer} -> {text}");
            }
            if name == "server_max_window_bits" {
                let asked: u8 = p
                    .value
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(15);
                assert!(params.server_max_window_bits <= asked, "{offer} -> {text}");
            }
            if name == "client_max_window_bits" {
                if let Some(v) = p.value.as_deref().and_then(|v| v.parse::<u8>().ok()) {
                    assert!(params.client_max_window_bits <= v, "{offer} -> {text}");
                }
            }
        }
        if !offer
            .params
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case("client_max_window_bits"))
        {
            assert_eq!(params.client_max_window_bits, 15, "{offer} -> {text}");
            assert!(!response
                .params
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case("client_max_window_bits")));
        }
        if offer == own_offer {
            assert_eq!(
                client.accept_response(std::slice::from_ref(&response)),
                Ok(Some(params)),
                "the client refuses the server's answer to its own offer: {text}"
            );
        }
    }
    (params, client)
}

fn mask_source(seed: u32) -> impl FnMut() -> [u8; 4] {
    let mut key = seed ^ 0x5851_f42d;
    move || {
        key = key.rotate_left(7) ^ 0x9e37_79b9;
        key.to_le_bytes()
    }
}

/// A raw frame (masked with a fixed key for a server receiver).
fn raw_frame(out: &mut Vec<u8>, b0: u8, payload: &[u8], masked: bool) {
    out.push(b0);
    let m = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
}

fn take(conn: &mut Connection, wire: &mut Vec<u8>) {
    let q = conn.outgoing();
    let n = q.remaining();
    wire.extend_from_slice(&q.copy_to_bytes(n));
}

/// What the peer sent: the wire, the events the receiver must see (while the wire is
/// clean), and the largest decoded message.
struct Sent {
    wire: Vec<u8>,
    expected: Vec<Ev>,
    /// Raw frames or corrupted bytes are on the wire: only the invariants hold.
    tainted: bool,
    largest: usize,
    plain_total: usize,
}

fn build(
    data: &[u8],
    input: &mut Input,
    peer: &mut Connection,
    round_trip: bool,
    frag: usize,
) -> Sent {
    let mut s = Sent {
        wire: Vec::new(),
        expected: Vec::new(),
        tainted: false,
        largest: 0,
        plain_total: 0,
    };
    let receiver_is_server = data[0] & 2 == 0;
    let mut closed = false;
    let mut ops = 0;
    let mut bombs = 0usize;
    while let Some(op) = input.byte() {
        ops += 1;
        if ops > 64 {
            break;
        }
        let arg = op >> 3;
        let mut code = op & 7;
        if round_trip && code >= 4 {
            code -= 4;
        }
        match code {
            0 => {
                let p = input.payload();
                let msg = if arg & 1 == 0 {
                    Message::from(String::from_utf8_lossy(p).into_owned())
                } else {
                    Message::Binary(Bytes::copy_from_slice(p))
                };
                let ev = Ev::Message(msg.kind(), msg.payload().to_vec());
                if peer.send(msg).is_ok() {
                    s.largest = s.largest.max(p.len() * 3);
                    s.plain_total += p.len() * 3;
                    s.expected.push(ev);
                } else {
                    assert!(closed, "the peer refused a message before its close");
                }
            }
            1 => {
                let kind = if arg & 1 == 0 {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                let n = 1 + ((arg >> 1) & 3) as usize;
                if peer.begin_message(kind).is_err() {
                    assert!(closed);
                    continue;
                }
                let mut all = Vec::new();
                for i in 0..n {
                    let p = input.payload();
                    // Text frames are cut at character boundaries: valid on their own.
                    let p: Vec<u8> = match kind {
                        MessageKind::Text => String::from_utf8_lossy(p).into_owned().into_bytes(),
                        MessageKind::Binary => p.to_vec(),
                    };
                    all.extend_from_slice(&p);
                    peer.send_frame(Bytes::from(p), i + 1 == n)
                        .expect("a frame of an open message");
                }
                s.largest = s.largest.max(all.len());
                s.plain_total += all.len();
                s.expected.push(Ev::Message(kind, all));
            }
            2 => {
                // At most 1 MiB each, and 2 MiB in all; at most 64 Ki frames of
                // `fragment_size` (a bomb in 1-byte frames at level 0 is a million frames).
                let n = 1usize << (10 + (arg % 11));
                if bombs + n > (2 << 20).min(frag.saturating_mul(64 << 10)) {
                    continue;
                }
                bombs += n;
                let byte = input.byte().unwrap_or(0);
                let kind = if byte & 0x80 == 0 {
                    // ASCII: valid text.
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                let payload = vec![
                    byte & if kind == MessageKind::Text {
                        0x7f
                    } else {
                        0xff
                    };
                    n
                ];
                let msg = match kind {
                    MessageKind::Text => {
                        Message::from(String::from_utf8(payload.clone()).expect("ASCII"))
                    }
                    MessageKind::Binary => Message::Binary(Bytes::from(payload.clone())),
                };
                if peer.send(msg).is_ok() {
                    s.largest = s.largest.max(n);
                    s.plain_total += n;
                    s.expected.push(Ev::Message(kind, payload));
                }
            }
            3 => {
                let p = input.payload();
                let p = &p[..p.len().min(123)];
                let (r, ev) = match arg % 3 {
                    0 => (peer.ping(p), Ev::Ping(p.to_vec())),
                    1 => (peer.pong(p), Ev::Pong(p.to_vec())),
                    _ => {
                        let code = [1000u16, 1001, 3000, 4999][(arg as usize / 3) % 4];
                        let r = peer.close(CloseCode(code), "");
                        (r, Ev::Close(Some(code)))
                    }
                };
                if r.is_ok() {
                    if matches!(ev, Ev::Close(_)) {
                        closed = true;
                    }
                    s.expected.push(ev);
                }
            }
            4 => {
                take(peer, &mut s.wire);
                let b0 = input.byte().unwrap_or(0xc2);
                let p = input.payload();
                raw_frame(&mut s.wire, b0, p, receiver_is_server);
                s.plain_total += p.len() * 1100;
                s.tainted = true;
            }
            5 => {
                take(peer, &mut s.wire);
                let hi = input.byte().unwrap_or(0) as usize;
                let lo = input.byte().unwrap_or(0) as usize;
                let x = input.byte().unwrap_or(1) | 1;
                if !s.wire.is_empty() {
                    let at = (hi << 8 | lo) % s.wire.len();
                    s.wire[at] ^= x;
                    s.tainted = true;
                }
            }
            _ => {
                take(peer, &mut s.wire);
                let p = input.payload();
                s.wire.extend_from_slice(p);
                s.plain_total += p.len() * 1100;
                s.tainted = true;
            }
        }
        take(peer, &mut s.wire);
    }
    take(peer, &mut s.wire);
    s
}

/// What the receiver produced: each event is compared with the expected one as it comes
/// (nothing is kept, so the harness adds no memory beyond the open message).
struct Got<'a> {
    expected: &'a [Ev],
    /// Compare (the wire is clean).
    check: bool,
    /// How many events came.
    count: usize,
    error: Option<ProtocolError>,
}

impl Got<'_> {
    fn push(&mut self, kind: Option<MessageKind>, payload: &[u8], control: Option<&Ev>) {
        if self.check {
            let want = self.expected.get(self.count);
            let same = match (want, kind, control) {
                (Some(Ev::Message(k, p)), Some(kind), None) => *k == kind && p[..] == *payload,
                (Some(w), None, Some(c)) => w == c,
                _ => false,
            };
            assert!(
                same,
                "event {} differs: expected {:?}, got {kind:?} {:?} / {control:?}",
                self.count,
                want.map(short),
                &payload[..payload.len().min(32)]
            );
        }
        self.count += 1;
    }
}

/// An event, cut for a message.
fn short(e: &Ev) -> String {
    match e {
        Ev::Message(k, p) => format!("{k:?} of {} bytes {:?}", p.len(), &p[..p.len().min(32)]),
        other => format!("{other:?}"),
    }
}

/// Checks the grammar of one level and assembles messages (only while they are small
/// enough to keep: a bomb at the frame and chunk levels is counted, not kept).
struct Grammar {
    level: RecvLevel,
    max_message: Option<u64>,
    max_frame: Option<u64>,
    /// The open message: its kind, its bytes so far (`None` once past `keep`), its size.
    msg: Option<(MessageKind, Option<Vec<u8>>, usize)>,
    frame_open: bool,
    closed: bool,
    keep: usize,
}

impl Grammar {
    fn data(&mut self, d: &[u8]) {
        let keep = self.keep;
        let (kind, acc, size) = self.msg.as_mut().expect("data with no message open");
        *size += d.len();
        if let Some(a) = acc {
            if a.len() + d.len() > keep {
                *acc = None;
            } else {
                a.extend_from_slice(d);
                if *kind == MessageKind::Text {
                    if let Err(e) = std::str::from_utf8(a) {
                        assert!(e.error_len().is_none(), "text that cannot become UTF-8");
                    }
                }
            }
        }
    }

    fn event(&mut self, e: Event, got: &mut Got<'_>) {
        assert!(!self.closed, "an event after Close: {e:?}");
        match e {
            Event::Message(m) => {
                assert_eq!(self.level, RecvLevel::Message);
                if let Some(l) = self.max_message {
                    assert!(m.len() as u64 <= l, "a message over the limit");
                }
                if let Message::Text(t) = &m {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                got.push(Some(m.kind()), m.payload(), None);
            }
            Event::MessageStart { kind, .. } => {
                assert_ne!(self.level, RecvLevel::Message);
                assert!(self.msg.is_none(), "MessageStart inside a message");
                self.msg = Some((kind, Some(Vec::new()), 0));
            }
            Event::Frame(b) => {
                assert_eq!(self.level, RecvLevel::Frame);
                if let Some(l) = self.max_frame {
                    assert!(b.len() as u64 <= l, "a frame over the limit");
                }
                self.data(&b);
            }
            Event::FrameStart(h) => {
                assert_eq!(self.level, RecvLevel::Chunk);
                assert!(self.msg.is_some() && !self.frame_open);
                assert!(!h.opcode.is_control());
                self.frame_open = true;
            }
            Event::FrameData(b) => {
                assert_eq!(self.level, RecvLevel::Chunk);
                assert!(self.frame_open, "FrameData outside a frame");
                assert!(!b.is_empty(), "an empty FrameData");
                assert!(b.len() <= CHUNK_OUT, "a chunk of {} bytes", b.len());
                self.data(&b);
            }
            Event::FrameEnd => {
                assert!(self.frame_open, "FrameEnd outside a frame");
                self.frame_open = false;
            }
            Event::MessageEnd => {
                assert!(!self.frame_open, "MessageEnd inside a frame");
                let (kind, acc, size) = self.msg.take().expect("MessageEnd with no message");
                match acc {
                    Some(a) => {
                        if kind == MessageKind::Text {
                            assert!(std::str::from_utf8(&a).is_ok(), "text not UTF-8");
                        }
                        got.push(Some(kind), &a, None);
                    }
                    // Too big to keep: its size stands for it (never equal to a kept one).
                    None => {
                        assert!(!got.check, "a message of {size} bytes, more than was sent");
                        got.push(Some(kind), &[], None);
                    }
                }
            }
            Event::Ping(p) => {
                assert!(!self.frame_open);
                got.push(None, &[], Some(&Ev::Ping(p.to_vec())));
            }
            Event::Pong(p) => {
                assert!(!self.frame_open);
                got.push(None, &[], Some(&Ev::Pong(p.to_vec())));
            }
            Event::Close(c) => {
                assert!(!self.frame_open);
                self.closed = true;
                got.push(None, &[], Some(&Ev::Close(c.map(|c| c.code.0))));
            }
        }
    }
}

/// Lifts the heap limit before any panic is reported: reporting allocates (the message, a
/// backtrace), and failing there, inside the limit, would hang the run instead of
/// reporting the crash.
fn lift_limit_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = ALLOC.set_limit(usize::MAX);
            previous(info);
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    lift_limit_on_panic();
    if data.len() < SETUP_LEN {
        return;
    }
    let mut input = Input(&data[SETUP_LEN..]);
    let (params, client) = negotiate(data, &mut input);
    let round_trip = data[0] & 1 == 1;
    let (receiver_role, peer_role) = if data[0] & 2 == 0 {
        (Role::Server, Role::Client)
    } else {
        (Role::Client, Role::Server)
    };
    let level = match (data[0] >> 2) & 3 {
        0 => RecvLevel::Message,
        1 => RecvLevel::Frame,
        _ => RecvLevel::Chunk,
    };
    let max_piece = [1, 7, 64, 4096][((data[0] >> 4) & 3) as usize];
    let max_message = LIMITS[(data[4] & 7) as usize];
    let max_frame = LIMITS[((data[4] >> 3) & 7) as usize];
    let seed = u32::from(data[5]) << 8 | u32::from(data[6]);
    let settings = Deflate {
        params,
        level: client.level,
        threshold: client.threshold,
    };

    let mut peer_config = Config::default();
    peer_config.deflate = Some(settings);
    peer_config.fragment_size = [None, Some(1), Some(7), Some(100)][(data[4] >> 6) as usize];
    let mut peer = Connection::new(peer_role, peer_config);
    peer.set_mask_source(mask_source(seed));
    let frag = peer.config().fragment_size.unwrap_or(usize::MAX);
    let sent = build(data, &mut input, &mut peer, round_trip, frag);
    drop(peer);

    let mut config = Config::default();
    config.deflate = Some(settings);
    config.recv_level = level;
    config.max_message_size = max_message;
    config.max_frame_size = max_frame;
    config.auto_pong = true;
    config.auto_close = true;
    let mut conn = Connection::new(receiver_role, config);
    conn.set_mask_source(mask_source(!seed));

    // The bound that applies to decoded data kept by the engine at this level.
    let limit = match level {
        RecvLevel::Message => max_message,
        RecvLevel::Frame => max_frame,
        RecvLevel::Chunk => Some(CHUNK_OUT as u64),
    }
    .map_or(sent.plain_total, |l| {
        (l as usize).min(sent.plain_total.max(CHUNK_OUT))
    });
    // What the harness keeps of a message at the frame and chunk levels.
    let keep = sent.largest.max(4096).min(1 << 22);
    let mut grammar = Grammar {
        level,
        max_message: if level == RecvLevel::Message {
            max_message
        } else {
            None
        },
        max_frame: if level == RecvLevel::Frame {
            max_frame
        } else {
            None
        },
        msg: None,
        frame_open: false,
        closed: false,
        keep,
    };
    let mut got = Got {
        expected: &sent.expected,
        check: !sent.tainted,
        count: 0,
        error: None,
    };
    let mut out = Vec::with_capacity(64 * 1024);
    let mut rng = Rng::new(seed);

    // From here the heap may grow by the wire (read buffer, copies), the decoded data the
    // limit allows (twice: a Vec doubles), what the harness keeps, and zlib.
    let budget = 4 * sent.wire.len() + 3 * limit + 2 * keep + FIXED_SLACK;
    let base = ALLOC.allocated();
    ALLOC
        .set_limit(base + budget)
        .expect("the limit is above what is allocated");
    // At most about 4096 pieces: a long wire (a bomb at level 0) in small pieces would
    // cost seconds.
    let max_piece = max_piece.max(sent.wire.len() / 2048);
    let mut pos = 0;
    while pos < sent.wire.len() {
        let n = rng.size(max_piece).min(sent.wire.len() - pos);
        conn.receive(&sent.wire[pos..pos + n]);
        pos += n;
        loop {
            match conn.poll_event() {
                Ok(Some(e)) => {
                    assert!(got.error.is_none(), "an event after an error");
                    grammar.event(e, &mut got);
                }
                Ok(None) => break,
                Err(Error::Protocol(p)) => {
                    if let Some(first) = &got.error {
                        assert_eq!(&p, first, "the error changed");
                    }
                    got.error = Some(p);
                    break;
                }
                Err(other) => panic!("poll_event: {other:?}"),
            }
        }
        if got.error.is_some() {
            assert!(!conn.want_read());
        } else if !grammar.closed {
            // The read buffer holds at most one frame within the limits (and an extension's
            // frame, decoded as it arrives, not even that): a compressed frame that announces
            // more than the limits allow is not buffered whole first.
            let bound = match level {
                RecvLevel::Message => match (max_frame, max_message) {
                    (Some(f), Some(m)) => Some(f.min(m)),
                    (f, m) => f.or(m),
                },
                RecvLevel::Frame => max_frame,
                RecvLevel::Chunk => None,
            };
            if let Some(b) = bound {
                // (A control frame, up to 125 bytes, is buffered whole at any limit.)
                assert!(
                    conn.buffered() as u64 <= b.max(125) + 14,
                    "{} bytes buffered, limits {max_message:?}/{max_frame:?}",
                    conn.buffered()
                );
            }
        }
        // What the receiver writes (pongs, close), taken as a transport would.
        let q = conn.outgoing();
        let k = q.remaining().min(out.capacity() - out.len());
        out.extend_from_slice(&q.copy_to_bytes(k));
        if got.error.is_some() || grammar.closed {
            break;
        }
    }
    ALLOC.set_limit(usize::MAX).expect("no limit");
    let q = conn.outgoing();
    let k = q.remaining();
    out.extend_from_slice(&q.copy_to_bytes(k));

    // The error's code, and its close frame on the wire.
    if let Some(e) = &got.error {
        let code = e.close_code();
        assert!(
            [1002, 1007, 1009].contains(&code.0),
            "error {e:?} closes with {}",
            code.0
        );
        assert_eq!(conn.close_sent().map(|c| c.code), Some(code));
    }
    // Everything the receiver wrote decodes cleanly: pongs, then at most one close.
    let mut back = Connection::new(peer_role, {
        let mut c = Config::default();
        c.max_frame_size = None;
        c.max_message_size = None;
        c.auto_close = false;
        c.auto_pong = false;
        c
    });
    back.receive(&out);
    let mut close_seen = None;
    loop {
        match back.poll_event() {
            Ok(Some(Event::Pong(_))) => assert!(close_seen.is_none()),
            Ok(Some(Event::Close(c))) => close_seen = Some(c.map(|c| c.code.0)),
            Ok(Some(other)) => panic!("the receiver wrote {other:?}"),
            Ok(None) => break,
            Err(e) => panic!("the receiver wrote what its peer cannot decode: {e}"),
        }
    }
    if let Some(e) = &got.error {
        assert_eq!(close_seen, Some(Some(e.close_code().0)));
    }

    if std::env::var_os("WEFT_FUZZ_DEBUG").is_some() {
        // For reading a crash or a seed: WEFT_FUZZ_DEBUG=1 cargo fuzz run ... <file>
        eprintln!(
            "{params:?} {level:?} limits {max_message:?}/{max_frame:?} round trip {round_trip}: \
             {} wire bytes{}, {} of {} events, error {:?}, heap peak budget {budget}",
            sent.wire.len(),
            if sent.tainted { " (tainted)" } else { "" },
            got.count,
            sent.expected.len(),
            got.error
        );
    }
    if sent.tainted {
        return;
    }
    // Round trip (or a clean receive): what was sent came back (compared as it came), up
    // to a 1009.
    let n = got.count;
    match &got.error {
        None => {
            if !grammar.closed {
                assert_eq!(n, sent.expected.len(), "events missing, and no error");
            }
        }
        Some(e) => {
            assert_eq!(
                e.close_code(),
                CloseCode::MESSAGE_TOO_BIG,
                "a clean stream failed: {e:?}"
            );
            // The message that failed is over a limit, decoded or on the wire.
            let Some(Ev::Message(_, m)) = sent.expected.get(n) else {
                panic!("1009 at a control frame");
            };
            let small = |l: Option<u64>| l.map_or(true, |l| (m.len() as u64) <= l);
            match level {
                RecvLevel::Message => assert!(
                    !small(max_message) || max_frame.is_some(),
                    "1009 for a message of {} bytes (limits {max_message:?}/{max_frame:?})",
                    m.len()
                ),
                RecvLevel::Frame => assert!(
                    max_frame.is_some(),
                    "1009 at the frame level without a frame limit"
                ),
                RecvLevel::Chunk => panic!("1009 at the chunk level"),
            }
        }
    }
});
