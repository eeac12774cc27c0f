//! Fuzz target for the receive path of `weft_proto::Connection`: frame headers, unmasking,
//! UTF-8 validation, the three receive levels, limits, control frames and the close/fail rules.
//!
//! Input layout: 5 setup bytes, then the bytes that arrive from the peer.
//!
//! - byte 0: bit 0 role (0 client, 1 server); bits 1-2 receive level (message, frame, chunk,
//!   chunk); bits 3-4 how bytes go in (`receive`, `read_buf` + `extend_from_slice`, a mix of
//!   both); bits 5-6 how the outgoing queue is drained after each piece (not at all, fully
//!   with `write_to`, partly with `chunk` + `advance`); bit 7 `auto_pong`.
//! - byte 1: `max_frame_size` (0: none, else `(b - 1) * 8` bytes; message and frame levels).
//! - byte 2: `max_message_size` (0: none, else `(b - 1) * 16` bytes; message level).
//! - byte 3: bit 0 `auto_close`; bits 1-3 `extension_rsv`; bits 4-5 `read_buffer_size`;
//!   bits 6-7 the largest piece size.
//! - byte 4: seed of the split pattern.
//!
//! The input is fed in pieces of pseudo-random size, draining `poll_event` after each one, and
//! checked against what the engine promises:
//!
//! - the events follow the grammar of their level (`MessageStart`, frames, `MessageEnd`...),
//!   every limit holds, text is valid UTF-8 (and every prefix handed out can still become
//!   valid; text that an extension transforms, RSV bits set, is exempt until it is whole),
//!   nothing follows `Close`;
//! - after an error every later `poll_event` returns the same error and `want_read` is false;
//! - the outgoing queue stays bounded (pongs, at most 32 waiting, and one close frame), and
//!   what the engine writes decodes cleanly with a connection of the other role: one pong per
//!   ping in order, and a close frame with the error's close code (or echoing the peer's);
//! - the same input fed in one piece gives the same events and the same error (the split
//!   property); at the chunk level `FrameData` boundaries are merged before comparing;
//! - at the frame and chunk levels, a `MessageAssembler` fed the events rebuilds the messages,
//!   control events and error that the message level gives for the same input.
#![no_main]

use bytes::{Buf, BufMut};
use libfuzzer_sys::fuzz_target;
use std::io::IoSlice;
use weft_fuzz::Rng;
use weft_proto::frame::FrameHeader;
use weft_proto::{
    CloseCode, Config, Connection, Error, Event, Message, MessageAssembler, MessageKind,
    ProtocolError, RecvLevel, Role,
};

/// How many setup bytes precede the wire bytes.
const SETUP_LEN: usize = 5;

/// The longest control frame on the wire: 2 + 4 (mask) + 125.
const MAX_CONTROL_FRAME: usize = 131;

/// How many automatic pongs may wait unsent before the newest is replaced by the next one
/// (the engine's `outq::MAX_WAITING_PONGS`, private; keep the two equal).
const MAX_WAITING_PONGS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Feed {
    Receive,
    ReadBuf,
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Drain {
    None,
    Full,
    Partial,
}

#[derive(Debug, Clone)]
struct Setup {
    role: Role,
    config: Config,
    feed: Feed,
    drain: Drain,
    max_piece: usize,
    seed: u32,
}

fn setup(b: &[u8]) -> Setup {
    let role = if b[0] & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let mut config = Config::default();
    config.recv_level = match (b[0] >> 1) & 3 {
        0 => RecvLevel::Message,
        1 => RecvLevel::Frame,
        _ => RecvLevel::Chunk,
    };
    let feed = match (b[0] >> 3) & 3 {
        0 => Feed::Receive,
        1 => Feed::ReadBuf,
        _ => Feed::Mixed,
    };
    let drain = match (b[0] >> 5) & 3 {
        1 => Drain::Full,
        2 => Drain::Partial,
        _ => Drain::None,
    };
    config.auto_pong = b[0] & 0x80 != 0;
    config.max_frame_size = match b[1] {
        0 => None,
        n => Some((n as u64 - 1) * 8),
    };
    config.max_message_size = match b[2] {
        0 => None,
        n => Some((n as u64 - 1) * 16),
    };
    config.auto_close = b[3] & 1 != 0;
    config.extension_rsv = (b[3] >> 1) & 7;
    config.read_buffer_size = [4096, 0, 1, 16][((b[3] >> 4) & 3) as usize];
    let max_piece = [1, 7, 64, 1024][(b[3] >> 6) as usize];
    Setup {
        role,
        config,
        feed,
        drain,
        max_piece,
        seed: b[4] as u32,
    }
}

/// An event, normalised for comparison: consecutive `FrameData` are merged into one `Data`.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Message(MessageKind, Vec<u8>),
    Start(MessageKind, u8),
    Frame(Vec<u8>),
    FrameStart(FrameHeader),
    Data(Vec<u8>),
    FrameEnd,
    MessageEnd,
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, Vec<u8>)>),
}

/// Checks the order and the contents of the events of one connection as they come.
struct Grammar {
    role: Role,
    level: RecvLevel,
    max_frame: Option<u64>,
    max_message: Option<u64>,
    extension_rsv: u8,
    /// The open message: whether its text is validated as it arrives (text whose first
    /// frame has an extension's RSV bits is not: the extension decodes it first), and its
    /// payload so far.
    msg: Option<(bool, Vec<u8>)>,
    /// At the chunk level, the open frame: its FIN bit and the payload bytes still to come.
    frame: Option<(bool, u64)>,
    /// The FIN bit of the last frame that ended (chunk level).
    last_fin: bool,
    closed: bool,
}

impl Grammar {
    fn new(s: &Setup) -> Self {
        Grammar {
            role: s.role,
            level: s.config.recv_level,
            // The limits bound what the engine buffers: frames at the frame and message
            // levels, messages at the message level; the chunk level buffers nothing.
            max_frame: match s.config.recv_level {
                RecvLevel::Chunk => None,
                _ => s.config.max_frame_size,
            },
            max_message: match s.config.recv_level {
                RecvLevel::Message => s.config.max_message_size,
                _ => None,
            },
            extension_rsv: s.config.extension_rsv,
            msg: None,
            frame: None,
            last_fin: false,
            closed: false,
        }
    }

    fn within(limit: Option<u64>, n: usize) -> bool {
        limit.is_none_or(|l| n as u64 <= l)
    }

    /// Text handed out so far must be valid UTF-8 up to at most a cut code point at its end.
    fn check_text_prefix(acc: &[u8]) {
        if let Err(e) = std::str::from_utf8(acc) {
            assert!(
                e.error_len().is_none(),
                "text handed out that cannot become valid UTF-8: {acc:02x?}"
            );
        }
    }

    fn add_data(&mut self, data: &[u8]) {
        let (text, acc) = self.msg.as_mut().expect("data with no message open");
        acc.extend_from_slice(data);
        assert!(
            Self::within(self.max_message, acc.len()),
            "message over the limit"
        );
        if *text {
            Self::check_text_prefix(acc);
        }
    }

    fn event(&mut self, e: &Event) {
        assert!(!self.closed, "an event after Close: {e:?}");
        match e {
            Event::Message(m) => {
                assert_eq!(self.level, RecvLevel::Message);
                assert!(self.msg.is_none());
                if let Message::Text(t) = m {
                    assert!(
                        std::str::from_utf8(t.as_bytes()).is_ok(),
                        "a text message that is not UTF-8"
                    );
                }
                assert!(
                    Self::within(self.max_message, m.len()),
                    "message over the limit"
                );
            }
            Event::MessageStart { kind, rsv } => {
                assert_ne!(self.level, RecvLevel::Message);
                assert!(self.msg.is_none(), "MessageStart inside a message");
                assert!(*rsv < 8);
                assert_eq!(*rsv & !self.extension_rsv, 0, "RSV bits no extension uses");
                let validated = *kind == MessageKind::Text && *rsv & self.extension_rsv == 0;
                self.msg = Some((validated, Vec::new()));
            }
            Event::Frame(b) => {
                assert_eq!(self.level, RecvLevel::Frame);
                assert!(
                    Self::within(self.max_frame, b.len()),
                    "frame over the limit"
                );
                self.add_data(b);
            }
            Event::FrameStart(h) => {
                assert_eq!(self.level, RecvLevel::Chunk);
                assert!(self.msg.is_some(), "FrameStart with no message open");
                assert!(self.frame.is_none(), "FrameStart inside a frame");
                assert!(!h.opcode.is_control());
                assert_eq!(h.mask.is_some(), self.role == Role::Server);
                assert!(Self::within(self.max_frame, h.payload_len as usize));
                self.frame = Some((h.fin, h.payload_len));
            }
            Event::FrameData(b) => {
                assert_eq!(self.level, RecvLevel::Chunk);
                assert!(!b.is_empty(), "an empty FrameData");
                let (_, left) = self.frame.as_mut().expect("FrameData outside a frame");
                assert!(
                    b.len() as u64 <= *left,
                    "more FrameData than the header said"
                );
                *left -= b.len() as u64;
                self.add_data(b);
            }
            Event::FrameEnd => {
                let (fin, left) = self.frame.take().expect("FrameEnd outside a frame");
                assert_eq!(left, 0, "FrameEnd before the frame's payload was complete");
                self.last_fin = fin;
            }
            Event::MessageEnd => {
                assert_ne!(self.level, RecvLevel::Message);
                assert!(self.frame.is_none(), "MessageEnd inside a frame");
                if self.level == RecvLevel::Chunk {
                    assert!(self.last_fin, "MessageEnd after a frame without FIN");
                }
                let (text, acc) = self.msg.take().expect("MessageEnd with no message open");
                if text {
                    assert!(
                        std::str::from_utf8(&acc).is_ok(),
                        "a text message not UTF-8"
                    );
                }
            }
            Event::Ping(p) | Event::Pong(p) => {
                assert!(p.len() <= 125, "a control payload over 125 bytes");
                assert!(
                    self.frame.is_none(),
                    "a control event inside a frame's chunks"
                );
            }
            Event::Close(c) => {
                assert!(
                    self.frame.is_none(),
                    "a control event inside a frame's chunks"
                );
                if let Some(c) = c {
                    assert!(c.code.is_sendable(), "a close code that may not be sent");
                    assert!(c.reason.len() <= 123);
                    assert!(std::str::from_utf8(c.reason.as_bytes()).is_ok());
                }
                self.closed = true;
            }
        }
    }
}

fn push_event(events: &mut Vec<Ev>, e: &Event) {
    let ev = match e {
        Event::Message(m) => Ev::Message(m.kind(), m.payload().to_vec()),
        Event::MessageStart { kind, rsv } => Ev::Start(*kind, *rsv),
        Event::Frame(b) => Ev::Frame(b.to_vec()),
        Event::FrameStart(h) => Ev::FrameStart(*h),
        Event::FrameData(b) => {
            if let Some(Ev::Data(d)) = events.last_mut() {
                d.extend_from_slice(b);
                return;
            }
            Ev::Data(b.to_vec())
        }
        Event::FrameEnd => Ev::FrameEnd,
        Event::MessageEnd => Ev::MessageEnd,
        Event::Ping(p) => Ev::Ping(p.to_vec()),
        Event::Pong(p) => Ev::Pong(p.to_vec()),
        Event::Close(c) => Ev::Close(c.as_ref().map(|c| (c.code.0, c.reason.as_bytes().to_vec()))),
    };
    events.push(ev);
}

/// What one run produced.
struct Run {
    events: Vec<Ev>,
    /// The whole messages and control events, at the frame and chunk levels as a
    /// `MessageAssembler` builds them from the events, up to its first error.
    assembled: Vec<Ev>,
    /// The assembler's error: text that an extension transformed is validated only when
    /// the whole message is there.
    assembler_error: Option<ProtocolError>,
    error: Option<ProtocolError>,
    /// Every byte the engine queued to send, in order.
    out: Vec<u8>,
    close_sent: Option<u16>,
}

fn protocol_error(e: Error) -> ProtocolError {
    match e {
        Error::Protocol(p) => p,
        other => panic!("poll_event returned a non-protocol error: {other:?}"),
    }
}

/// Keeps whole messages and control events; data events go through `asm`, which must
/// accept every event stream the engine produces and rebuild every message (it may refuse
/// only text that it is the first to validate).
fn assemble(asm: &mut MessageAssembler, out: &mut Vec<Ev>, e: &Event) -> Option<ProtocolError> {
    match e {
        Event::Message(_) | Event::Ping(_) | Event::Pong(_) | Event::Close(_) => push_event(out, e),
        _ => match asm.push(e) {
            Ok(Some(m)) => push_event(out, &Event::Message(m)),
            Ok(None) => {}
            Err(Error::Protocol(p @ ProtocolError::InvalidUtf8)) => return Some(p),
            Err(err) => panic!("MessageAssembler refused {e:?}: {err:?}"),
        },
    }
    None
}

/// Takes queued bytes out of the connection the way a transport would.
fn drain(conn: &mut Connection, mode: Drain, rng: &mut Rng, out: &mut Vec<u8>) {
    match mode {
        Drain::None => {}
        Drain::Full => {
            let mut buf = [0u8; 37];
            loop {
                let n = conn.outgoing().write_to(&mut buf);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(conn.queued_bytes(), 0);
            assert_eq!(conn.queued_messages(), 0);
            assert!(!conn.want_write());
        }
        Drain::Partial => {
            let q = conn.outgoing();
            if q.has_remaining() {
                let c = q.chunk();
                let n = rng.size(c.len().max(1)).min(c.len());
                out.extend_from_slice(&c[..n]);
                q.advance(n);
            }
        }
    }
}

/// Takes the rest of the queue, checking that the vectored view matches the plain one.
fn drain_all(conn: &mut Connection, out: &mut Vec<u8>) {
    let q = conn.outgoing();
    let mut slices = [IoSlice::new(&[]); 64];
    let n = q.chunks_vectored(&mut slices);
    let all_slices = n < slices.len();
    let vectored: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    let len = q.remaining();
    let mut rest = Vec::with_capacity(len);
    rest.put(q);
    assert_eq!(rest.len(), len);
    if all_slices {
        assert_eq!(
            vectored, rest,
            "chunks_vectored disagrees with chunk/advance"
        );
    }
    out.extend_from_slice(&rest);
}

/// Feeds `wire` into a fresh connection in pieces and checks every invariant along the way.
fn run(s: &Setup, wire: &[u8], split: bool) -> Run {
    let mut conn = Connection::new(s.role, s.config.clone());
    // Fixed masking keys (a client masks its pongs and close), so a run can be replayed.
    let mut key = 0x5851_f42du32;
    conn.set_mask_source(move || {
        key = key.rotate_left(7) ^ 0x9e37_79b9;
        key.to_le_bytes()
    });
    let mut rng = Rng::new(s.seed);
    let mut grammar = Grammar::new(s);
    let mut events = Vec::new();
    let mut assembler = MessageAssembler::new(None);
    let mut assembled = Vec::new();
    let mut assembler_error = None;
    let mut error: Option<ProtocolError> = None;
    let mut out = Vec::new();
    // Bytes the engine had produced when it stopped (error or close): nothing may follow.
    let mut produced_at_end: Option<usize> = None;
    let mut pos = 0;
    while pos < wire.len() {
        let n = if split {
            rng.size(s.max_piece).min(wire.len() - pos)
        } else {
            wire.len()
        };
        let piece = &wire[pos..pos + n];
        pos += n;
        let use_read_buf = split
            && match s.feed {
                Feed::Receive => false,
                Feed::ReadBuf => true,
                Feed::Mixed => rng.next_u32() & 1 == 1,
            };
        if use_read_buf {
            let want = conn.want_read();
            let rsize = conn.config().read_buffer_size;
            let buf = conn.read_buf();
            if want {
                assert!(
                    buf.capacity() - buf.len() >= rsize,
                    "read_buf lent less than read_buffer_size of spare capacity"
                );
            }
            buf.extend_from_slice(piece);
        } else {
            conn.receive(piece);
        }

        // Drain the events this piece makes available.
        loop {
            match conn.poll_event() {
                Ok(Some(e)) => {
                    assert!(error.is_none(), "an event after an error: {e:?}");
                    grammar.event(&e);
                    push_event(&mut events, &e);
                    if assembler_error.is_none() {
                        assembler_error = assemble(&mut assembler, &mut assembled, &e);
                    }
                }
                Ok(None) => {
                    assert!(error.is_none(), "Ok(None) after an error");
                    break;
                }
                Err(e) => {
                    let p = protocol_error(e);
                    if let Some(first) = &error {
                        assert_eq!(&p, first, "a later poll_event changed the error");
                    }
                    error = Some(p);
                    break;
                }
            }
        }
        if let Some(p) = &error {
            assert!(!conn.want_read(), "want_read after an error");
            assert_eq!(conn.error(), Some(p));
            assert!(conn.is_closed());
            // Every later call fails the same way.
            for _ in 0..2 {
                match conn.poll_event() {
                    Err(e) => assert_eq!(&protocol_error(e), p),
                    Ok(e) => panic!("poll_event after an error returned Ok({e:?})"),
                }
            }
        }
        if grammar.closed {
            assert!(!conn.want_read(), "want_read after the peer's close");
            assert!(matches!(conn.poll_event(), Ok(None)));
        }

        // Receiving queues only pongs (each at most 4 bytes longer than its ping, which is at
        // least 2 bytes) and one close frame; and at most MAX_WAITING_PONGS unsent pongs, plus
        // one being written, plus the close.
        let max_frames = MAX_WAITING_PONGS + 2;
        assert!(
            conn.queued_bytes() <= 3 * wire.len() + 256,
            "queue grows with input"
        );
        assert!(
            conn.queued_bytes() <= max_frames * MAX_CONTROL_FRAME,
            "queue of {} bytes ({} frames) from receiving alone",
            conn.queued_bytes(),
            conn.queued_messages()
        );
        assert!(
            conn.queued_messages() <= max_frames,
            "{} frames ({} bytes) queued from receiving alone; events so far {events:?}",
            conn.queued_messages(),
            conn.queued_bytes()
        );
        assert_eq!(conn.want_write(), conn.queued_bytes() > 0);
        if error.is_some() || grammar.closed {
            let produced = out.len() + conn.queued_bytes();
            match produced_at_end {
                None => produced_at_end = Some(produced),
                Some(p) => assert_eq!(p, produced, "bytes queued after the connection ended"),
            }
        }

        drain(&mut conn, s.drain, &mut rng, &mut out);
    }

    if !split && grammar.closed {
        // Bytes after the close frame stay unread, and they are the input's last bytes.
        let rest = conn.take_read_buffer();
        assert!(
            wire.ends_with(&rest),
            "take_read_buffer is not the rest of the input"
        );
    }
    drain_all(&mut conn, &mut out);
    Run {
        events,
        assembled,
        assembler_error,
        error,
        out,
        close_sent: conn.close_sent().map(|c| c.code.0),
    }
}

/// Decodes what the engine wrote with a connection of the other role and checks it.
fn check_output(s: &Setup, r: &Run) {
    let peer_role = match s.role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut config = Config::default();
    config.max_frame_size = None;
    config.max_message_size = None;
    config.auto_pong = false;
    config.auto_close = false;
    let mut peer = Connection::new(peer_role, config);
    peer.receive(&r.out);
    let mut sent = Vec::new();
    loop {
        match peer.poll_event() {
            Ok(Some(e)) => sent.push(e),
            Ok(None) => break,
            Err(e) => panic!(
                "the engine wrote bytes its peer cannot decode: {e}\n{:02x?}",
                r.out
            ),
        }
    }
    assert_eq!(
        peer.buffered(),
        0,
        "bytes after the close frame, or a cut frame"
    );

    let pings: Vec<&[u8]> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Ping(p) => Some(&p[..]),
            _ => None,
        })
        .collect();
    let mut close = None;
    let mut pongs = Vec::new();
    for e in &sent {
        assert!(close.is_none(), "a frame written after the close frame");
        match e {
            Event::Pong(p) => pongs.push(&p[..]),
            Event::Close(c) => close = Some(c.as_ref().map(|c| c.code)),
            other => panic!("receiving made the engine write {other:?}"),
        }
    }
    // One pong per ping, in order; only past MAX_WAITING_PONGS unsent ones is the newest
    // replaced by the next, so the latest ping is always answered.
    if !s.config.auto_pong {
        assert!(pongs.is_empty(), "a pong written with auto_pong off");
    } else if pings.len() <= MAX_WAITING_PONGS {
        assert_eq!(pongs, pings, "the pongs do not answer the pings one by one");
    } else {
        let mut rest = pings.iter();
        for p in &pongs {
            assert!(
                rest.any(|q| q == p),
                "pongs out of order, or echoing no ping"
            );
        }
        assert_eq!(
            pongs.last(),
            pings.last(),
            "the latest ping is not answered"
        );
    }

    let received_close = r.events.iter().find_map(|e| match e {
        Ev::Close(c) => Some(c.as_ref().map(|c| c.0)),
        _ => None,
    });
    match (&r.error, received_close) {
        (Some(p), _) => {
            let want = p.close_code();
            assert_eq!(
                close,
                Some(Some(want)),
                "error {p:?} without its close frame"
            );
            assert_eq!(r.close_sent, Some(want.0));
        }
        (None, Some(code)) if s.config.auto_close => {
            assert_eq!(
                close,
                Some(code.map(CloseCode)),
                "close reply does not echo the code"
            );
            assert_eq!(r.close_sent, Some(code.unwrap_or(CloseCode::NO_STATUS.0)));
        }
        _ => {
            assert_eq!(close, None, "a close frame written with no reason to");
            assert_eq!(r.close_sent, None);
        }
    }
}

/// The split property: feeding the input in one piece gives the same events and error.
fn check_split(s: &Setup, split: &Run, whole: &Run) {
    assert_eq!(split.error, whole.error, "the split changed the error");
    assert_eq!(split.close_sent, whole.close_sent);
    let n = whole.events.len();
    if split.error.is_some()
        && s.config.recv_level == RecvLevel::Chunk
        && split.events.len() == n + 1
    {
        // In pieces, the valid start of the frame that failed can be handed out before the
        // failing byte arrives; in one piece the frame fails before any of it is.
        assert!(matches!(split.events[n], Ev::Data(_)));
        assert!(matches!(whole.events.last(), Some(Ev::FrameStart(_))));
        assert_eq!(split.events[..n], whole.events[..]);
    } else {
        assert_eq!(split.events, whole.events, "the split changed the events");
    }
}

/// Message assembly is a layer over the frame and chunk levels: the same input received at
/// the message level (with the same limits) gives the same messages, control events and
/// error.
fn check_levels(s: &Setup, split: &Run, wire: &[u8]) {
    if s.config.recv_level == RecvLevel::Message {
        return;
    }
    // With the limits that apply at the level of the run (the message level's own limit on
    // whole messages does not).
    let mut at_message_level = s.clone();
    at_message_level.config.recv_level = RecvLevel::Message;
    at_message_level.config.max_message_size = None;
    if s.config.recv_level == RecvLevel::Chunk {
        at_message_level.config.max_frame_size = None;
    }
    let m = run(&at_message_level, wire, false);
    let error = split.assembler_error.as_ref().or(split.error.as_ref());
    assert_eq!(
        error,
        m.error.as_ref(),
        "the receive level changed the error"
    );
    assert_eq!(
        split.assembled, m.events,
        "assembled messages differ from the message level"
    );
}

fuzz_target!(|data: &[u8]| {
    if data.len() < SETUP_LEN {
        return;
    }
    let s = setup(&data[..SETUP_LEN]);
    let wire = &data[SETUP_LEN..];
    let split = run(&s, wire, true);
    check_output(&s, &split);
    let whole = run(&s, wire, false);
    check_output(&s, &whole);
    if std::env::var_os("WEFT_FUZZ_DEBUG").is_some() {
        // For reading a crash or a seed: WEFT_FUZZ_DEBUG=1 cargo fuzz run ... <file>
        eprintln!(
            "{s:?}\nevents: {:?}\nerror: {:?}\nout: {:02x?}",
            split.events, split.error, split.out
        );
    }
    check_split(&s, &split, &whole);
    check_levels(&s, &split, wire);
});
