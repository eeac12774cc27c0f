//! Fuzz target for the send side of `weft_proto::Connection`: a sequence of send calls (whole
//! messages, begin / frame x N / end, frames of declared length fed in chunks, vectored
//! messages, ping, pong, close) with the outgoing queue drained in between, decoded by a
//! connection of the other role.
//!
//! Input layout: 3 setup bytes, then operations.
//!
//! - byte 0: bit 0 the sender's role (0 client, 1 server); bits 1-2 `fragment_size` (none,
//!   1, 7, 100); bits 3-4 `coalesce_threshold` (1024, 0, 1, 16); bits 5-7 how much the
//!   queue is drained by a drain operation.
//! - bytes 1-2: seed of the masking keys.
//! - then operations: one byte (its low 4 bits select the call, the high 4 bits are a
//!   small argument), and for calls with a payload, a length byte and that many bytes.
//!
//! A model of the send state predicts whether each call succeeds (the order rules, control
//! payload and close reason lengths, sendable close codes, text that can still become valid
//! UTF-8), and what the peer must receive: the same data messages in order, the same control
//! frames in order, nothing after the close frame, and no protocol error ever.
#![no_main]

use bytes::{Buf, Bytes};
use libfuzzer_sys::fuzz_target;
use weft_proto::{
    CloseCode, Config, Connection, Error, Event, Message, MessageKind, RecvLevel, Role,
};

const SETUP_LEN: usize = 3;
const CLOSE_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1011, 1014, 1015, 1016, 2999, 3000, 4999, 5000, 0,
];

/// Reads operations and their payloads from the input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A length byte, then that many bytes (fewer at the end of the input). Lengths from
    /// 200 up mean 200 + 16 * (n - 200), for payloads over the 125-byte control limit and
    /// over the coalescing threshold.
    fn payload(&mut self) -> &'a [u8] {
        let n = match self.byte().unwrap_or(0) as usize {
            n if n >= 200 => 200 + 16 * (n - 200),
            n => n,
        };
        let n = n.min(self.0.len());
        let (p, rest) = self.0.split_at(n);
        self.0 = rest;
        p
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// What has been sent, as the peer must see it.
#[derive(Default)]
struct Model {
    messages: Vec<(MessageKind, Vec<u8>)>,
    controls: Vec<Control>,
    /// The message begun with `begin_message`, and its payload so far.
    open: Option<(MessageKind, Vec<u8>)>,
    /// The frame begun with `begin_frame`: payload bytes still due, and its FIN bit.
    frame: Option<(u64, bool)>,
    closed: bool,
}

/// Whether `b` can still become valid UTF-8 (at most a code point cut at the end).
fn valid_prefix(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

impl Model {
    /// Whether adding `p` to the open message (ending it if `fin`) keeps its text valid.
    fn text_ok(&self, p: &[u8], fin: bool) -> bool {
        let Some((kind, acc)) = &self.open else {
            return false;
        };
        if *kind == MessageKind::Binary {
            return true;
        }
        let mut all = acc.clone();
        all.extend_from_slice(p);
        if fin {
            std::str::from_utf8(&all).is_ok()
        } else {
            valid_prefix(&all)
        }
    }

    fn add(&mut self, p: &[u8], fin: bool) {
        let (_, acc) = self.open.as_mut().expect("a message is open");
        acc.extend_from_slice(p);
        if fin {
            let m = self.open.take().expect("a message is open");
            self.messages.push(m);
        }
    }
}

fn kind_of(arg: u8) -> MessageKind {
    if arg & 1 == 0 {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

/// Checks a call's result against the model's prediction; `Ok` means the model applies it.
fn expect(op: &str, r: Result<(), Error>, ok: bool, closed: bool) -> bool {
    match (&r, ok) {
        (Ok(()), true) => true,
        (Err(e), false) => {
            if closed {
                assert!(matches!(e, Error::Closed), "{op} after close: {e:?}");
            }
            false
        }
        _ => panic!(
            "{op}: predicted {}, got {r:?}",
            if ok { "Ok" } else { "Err" }
        ),
    }
}

fn drain(conn: &mut Connection, amount: usize, out: &mut Vec<u8>) {
    let q = conn.outgoing();
    let n = amount.min(q.remaining());
    out.extend_from_slice(&q.copy_to_bytes(n));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < SETUP_LEN {
        return;
    }
    let role = if data[0] & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let mut config = Config::default();
    config.fragment_size = [None, Some(1), Some(7), Some(100)][((data[0] >> 1) & 3) as usize];
    config.coalesce_threshold = [1024, 0, 1, 16][((data[0] >> 3) & 3) as usize];
    let drain_amount = [1, 3, 17, 64, 200, 1000, 4096, usize::MAX][(data[0] >> 5) as usize];
    let mut key = u32::from(data[1]) << 8 | u32::from(data[2]);
    let mut conn = Connection::new(role, config);
    conn.set_mask_source(move || {
        key = key.wrapping_mul(0x0101_0101).wrapping_add(0x9e37_79b9);
        key.to_le_bytes()
    });

    let mut model = Model::default();
    let mut out = Vec::new();
    let mut input = Input(&data[SETUP_LEN..]);
    while let Some(op) = input.byte() {
        let arg = op >> 4;
        let closed = model.closed;
        let can = !closed;
        match op & 15 {
            0 => {
                let p = input.payload();
                let msg = if arg & 1 == 0 {
                    Message::from(String::from_utf8_lossy(p).into_owned())
                } else {
                    Message::Binary(Bytes::copy_from_slice(p))
                };
                let ok = can && model.open.is_none();
                let (kind, payload) = (msg.kind(), msg.payload().to_vec());
                if expect("send", conn.send(msg), ok, closed) {
                    model.messages.push((kind, payload));
                }
            }
            1 => {
                let kind = kind_of(arg);
                let ok = can && model.open.is_none();
                if expect("begin_message", conn.begin_message(kind), ok, closed) {
                    model.open = Some((kind, Vec::new()));
                }
            }
            2 => {
                let p = input.payload();
                let fin = arg & 1 == 1;
                let ok = can && model.frame.is_none() && model.text_ok(p, fin);
                let r = conn.send_frame(Bytes::copy_from_slice(p), fin);
                if expect("send_frame", r, ok, closed) {
                    model.add(p, fin);
                }
            }
            3 => {
                let ok = can && model.frame.is_none() && model.text_ok(&[], true);
                if expect("end_message", conn.end_message(), ok, closed) {
                    model.add(&[], true);
                }
            }
            4 => {
                let len = u64::from(input.byte().unwrap_or(0));
                let fin = arg & 1 == 1;
                let ok = can
                    && model.open.is_some()
                    && model.frame.is_none()
                    && !(fin && len == 0 && !model.text_ok(&[], true));
                if expect("begin_frame", conn.begin_frame(len, fin), ok, closed) {
                    if len == 0 {
                        model.add(&[], fin);
                    } else {
                        model.frame = Some((len, fin));
                    }
                }
            }
            5 => {
                let p = input.payload();
                let (ok, completes, fin) = match model.frame {
                    Some((left, fin)) if p.len() as u64 <= left => {
                        let completes = p.len() as u64 == left;
                        (can && model.text_ok(p, completes && fin), completes, fin)
                    }
                    _ => (false, false, false),
                };
                let r = conn.send_frame_data(Bytes::copy_from_slice(p));
                if expect("send_frame_data", r, ok, closed) {
                    model.add(p, completes && fin);
                    model.frame = match model.frame {
                        Some((left, fin)) if !completes => Some((left - p.len() as u64, fin)),
                        _ => None,
                    };
                }
            }
            6 | 7 => {
                let p = input.payload();
                let ok = can && p.len() <= 125;
                let (name, r, c) = if op & 15 == 6 {
                    ("ping", conn.ping(p), Control::Ping(p.to_vec()))
                } else {
                    ("pong", conn.pong(p), Control::Pong(p.to_vec()))
                };
                if expect(name, r, ok, closed) {
                    model.controls.push(c);
                }
            }
            8 => {
                let code = CloseCode(CLOSE_CODES[arg as usize]);
                let reason = String::from_utf8_lossy(input.payload()).into_owned();
                let ok = can && code.is_sendable() && reason.len() <= 123 && model.frame.is_none();
                if expect("close", conn.close(code, &reason), ok, closed) {
                    model.controls.push(Control::Close(Some((code.0, reason))));
                    model.open = None;
                    model.closed = true;
                }
            }
            9 => {
                let kind = kind_of(arg);
                let parts: Vec<Bytes> = (0..(arg >> 1) + 1)
                    .map(|_| Bytes::copy_from_slice(input.payload()))
                    .collect();
                let all: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
                let text_ok = kind == MessageKind::Binary || std::str::from_utf8(&all).is_ok();
                let ok = can && model.open.is_none() && text_ok;
                let r = conn.send_vectored(kind, &parts);
                if expect("send_vectored", r, ok, closed) {
                    model.messages.push((kind, all));
                }
            }
            _ => drain(&mut conn, drain_amount, &mut out),
        }
        assert_eq!(conn.want_write(), conn.queued_bytes() > 0);
    }
    drain(&mut conn, usize::MAX, &mut out);
    assert_eq!(conn.queued_bytes(), 0);

    // The peer must read back exactly what the model says was sent.
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut config = Config::default();
    config.max_frame_size = None;
    config.max_message_size = None;
    config.auto_pong = false;
    config.auto_close = false;
    config.recv_level = RecvLevel::Message;
    let mut peer = Connection::new(peer_role, config);
    peer.receive(&out);
    let mut messages = Vec::new();
    let mut controls = Vec::new();
    loop {
        match peer.poll_event() {
            Ok(Some(Event::Message(m))) => messages.push((m.kind(), m.payload().to_vec())),
            Ok(Some(Event::Ping(p))) => controls.push(Control::Ping(p.to_vec())),
            Ok(Some(Event::Pong(p))) => controls.push(Control::Pong(p.to_vec())),
            Ok(Some(Event::Close(c))) => controls.push(Control::Close(
                c.map(|c| (c.code.0, c.reason.as_str().to_owned())),
            )),
            Ok(Some(other)) => panic!("unexpected event at the message level: {other:?}"),
            Ok(None) => break,
            Err(e) => panic!("the peer cannot decode what was sent: {e}"),
        }
    }
    assert_eq!(
        messages, model.messages,
        "the peer received other data messages"
    );
    if model.frame.is_some() {
        // Control frames queued while the streamed frame is open wait for it to complete.
        let mut rest = model.controls.iter();
        for c in &controls {
            assert!(
                rest.any(|m| m == c),
                "control frame {c:?} not sent, or out of order"
            );
        }
    } else {
        assert_eq!(
            controls, model.controls,
            "the peer received other control frames"
        );
    }
    if model.closed {
        assert_eq!(peer.buffered(), 0, "bytes sent after the close frame");
    }
});
