//! How a program's byte streams and WebSocket messages map onto each other, in the three
//! modes: pure functions, no I/O (the bridge moves the bytes).
//!
//! - **Text** (websocketd's default): each line the program writes (`\n`, or `\r\n`, ends
//!   it; the last line needs no newline) is one text message; each message received is
//!   written to the program followed by `\n`. Bytes that are not UTF-8 are replaced by
//!   U+FFFD (a text message must be UTF-8); a line longer than the message limit is sent in
//!   pieces of at most the limit, cut at character boundaries.
//! - **Binary** (websocketd's `--binary`): whatever one read of the program's stdout
//!   returns is one binary message; messages received are written as they are.
//! - **Framed** (websockd's own `--framed`): both directions carry frames of a 5-byte
//!   header — the kind (`1` text, `2` binary, as RFC 6455's opcodes) and the payload length
//!   as a big-endian `u32` — then the payload. Message boundaries and kinds survive both
//!   ways. A frame from the program with another kind, a length over the limit, or text
//!   that is not UTF-8 is a [`FramingError`].

use crate::proto::utf8::Utf8Bytes;
use crate::proto::Message;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// How messages and the program's bytes map onto each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A line is a text message.
    Text,
    /// A read is a binary message; messages are written raw.
    Binary,
    /// Length-prefixed frames with their kind, both ways.
    Framed,
}

/// The size of a framed-mode header: kind (1 byte) and length (4 bytes, big-endian).
pub const FRAME_HEADER: usize = 5;
/// The kind byte of a text message in framed mode.
pub const KIND_TEXT: u8 = 1;
/// The kind byte of a binary message in framed mode.
pub const KIND_BINARY: u8 = 2;

/// The program wrote something framed mode cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// A kind byte other than 1 (text) or 2 (binary).
    BadKind(u8),
    /// A frame longer than the message limit.
    TooLong {
        /// The length the header announced.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A text frame whose payload is not UTF-8.
    NotUtf8,
    /// The program's output ended inside a frame.
    Truncated,
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramingError::BadKind(k) => write!(f, "frame kind {k} (1 = text, 2 = binary)"),
            FramingError::TooLong { len, limit } => {
                write!(f, "frame of {len} bytes is over the limit of {limit}")
            }
            FramingError::NotUtf8 => f.write_str("text frame is not UTF-8"),
            FramingError::Truncated => f.write_str("output ended inside a frame"),
        }
    }
}

impl std::error::Error for FramingError {}

/// Appends what the program must read for `msg` to `out`.
pub fn encode_for_program(mode: Mode, msg: &Message, out: &mut BytesMut) {
    let payload = msg.payload();
    match mode {
        Mode::Text => {
            out.reserve(payload.len() + 1);
            out.put_slice(payload);
            out.put_u8(b'\n');
        }
        Mode::Binary => out.put_slice(payload),
        Mode::Framed => {
            let kind = match msg {
                Message::Text(_) => KIND_TEXT,
                Message::Binary(_) => KIND_BINARY,
            };
            out.reserve(FRAME_HEADER + payload.len());
            out.put_u8(kind);
            // Received messages are bounded by the limit, which `Config` keeps below 4 GiB.
            out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
            out.put_slice(payload);
        }
    }
}

/// Cuts the messages out of what the program wrote (`buf`), leaving a partial line or frame
/// in it. `eof`: the output ended, so a last line without a newline is a message too.
/// `limit`: the largest message (0: none).
pub fn decode_from_program(
    mode: Mode,
    buf: &mut BytesMut,
    eof: bool,
    limit: usize,
    out: &mut Vec<Message>,
) -> Result<(), FramingError> {
    match mode {
        Mode::Text => {
            decode_lines(buf, eof, limit, out);
            Ok(())
        }
        Mode::Binary => {
            while !buf.is_empty() {
                let n = if limit == 0 {
                    buf.len()
                } else {
                    buf.len().min(limit)
                };
                out.push(Message::Binary(buf.split_to(n).freeze()));
            }
            Ok(())
        }
        Mode::Framed => decode_frames(buf, eof, limit, out),
    }
}

fn decode_lines(buf: &mut BytesMut, eof: bool, limit: usize, out: &mut Vec<Message>) {
    loop {
        let newline = memchr(b'\n', buf);
        if let Some(pos) = newline.filter(|&pos| limit == 0 || pos <= limit) {
            let mut line = buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(pos - 1);
            }
            push_text(line.freeze(), out);
            continue;
        }
        // A line past the limit goes in pieces. The cut waits for three bytes past the limit
        // (or the line's end, or the output's): enough to see where the character at the
        // limit ends, so that a piece never depends on how the pipe split the output.
        if limit != 0
            && buf.len() >= limit
            && (buf.len() >= limit.saturating_add(3) || newline.is_some() || eof)
        {
            let cut = char_boundary(buf, limit);
            push_text(buf.split_to(cut).freeze(), out);
            continue;
        }
        if eof && !buf.is_empty() {
            let line = buf.split().freeze();
            push_text(line, out);
        }
        return;
    }
}

/// The largest cut at most `limit` that does not split a UTF-8 sequence: not before a
/// continuation byte, and not after the start of a character whose bytes have not all
/// arrived. A character wider than the limit goes whole; bytes that are not UTF-8 are cut
/// at the limit (they become U+FFFD, so such a piece may grow up to three times).
fn char_boundary(buf: &[u8], limit: usize) -> usize {
    let limit = limit.min(buf.len());
    let mut cut = limit;
    // Back over continuation bytes, to the start of the character that crosses the cut.
    while cut > 0 && limit - cut < 4 && (buf.get(cut).is_some_and(|b| b & 0xC0 == 0x80)) {
        cut -= 1;
    }
    if cut == limit {
        // Nothing crosses at `limit` itself; but the bytes before it may end in a character
        // that is not complete yet (its lead byte announces more than are there).
        let start = (limit.saturating_sub(3)..limit)
            .rev()
            .find(|&i| buf[i] & 0xC0 != 0x80)
            .unwrap_or(limit);
        if start < limit {
            let width = utf8_width(buf[start]);
            if start + width > limit {
                cut = start;
            }
        }
    }
    if cut == 0 {
        // One character wider than the limit: it goes whole (a limit under 4 bytes is not
        // one a client would set; cutting the character would only garble it).
        let width = utf8_width(buf[0]);
        if width > limit && width <= buf.len() && buf[1..width].iter().all(|&b| b & 0xC0 == 0x80) {
            return width;
        }
        return limit;
    }
    cut
}

/// The length of the UTF-8 sequence a lead byte starts (1 for anything else).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xF4 => 4,
        0xE0..=0xEF => 3,
        0xC2..=0xDF => 2,
        _ => 1,
    }
}

fn push_text(line: Bytes, out: &mut Vec<Message>) {
    match Utf8Bytes::try_from(line.clone()) {
        Ok(text) => out.push(Message::Text(text)),
        // Not UTF-8: a text message cannot carry it; the bytes that are not become U+FFFD.
        Err(_) => out.push(Message::Text(
            String::from_utf8_lossy(&line).into_owned().into(),
        )),
    }
}

fn decode_frames(
    buf: &mut BytesMut,
    eof: bool,
    limit: usize,
    out: &mut Vec<Message>,
) -> Result<(), FramingError> {
    loop {
        if buf.len() < FRAME_HEADER {
            break;
        }
        let kind = buf[0];
        if kind != KIND_TEXT && kind != KIND_BINARY {
            return Err(FramingError::BadKind(kind));
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if limit != 0 && len > limit {
            return Err(FramingError::TooLong {
                len: len as u64,
                limit: limit as u64,
            });
        }
        if buf.len() < FRAME_HEADER + len {
            // Room for the rest of the frame, so the next read can complete it.
            buf.reserve(FRAME_HEADER + len - buf.len());
            break;
        }
        buf.advance(FRAME_HEADER);
        let payload = buf.split_to(len).freeze();
        out.push(if kind == KIND_TEXT {
            Message::Text(Utf8Bytes::try_from(payload).map_err(|_| FramingError::NotUtf8)?)
        } else {
            Message::Binary(payload)
        });
    }
    if eof && !buf.is_empty() {
        return Err(FramingError::Truncated);
    }
    Ok(())
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &[Message]) -> Vec<String> {
        out.iter()
            .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
            .collect()
    }

    #[test]
    fn lines_are_messages() {
        let mut buf = BytesMut::from(&b"a\r\nb\n\nlast"[..]);
        let mut out = Vec::new();
        decode_from_program(Mode::Text, &mut buf, false, 0, &mut out).unwrap();
        assert_eq!(texts(&out), ["a", "b", ""]);
        assert_eq!(&buf[..], b"last");
        decode_from_program(Mode::Text, &mut buf, true, 0, &mut out).unwrap();
        assert_eq!(texts(&out), ["a", "b", "", "last"]);
    }

    #[test]
    fn long_lines_are_cut_at_the_limit_even_with_their_newline_in_the_buffer() {
        let mut buf = BytesMut::from(&b"0123456789\nxy\n"[..]);
        let mut out = Vec::new();
        decode_from_program(Mode::Text, &mut buf, false, 4, &mut out).unwrap();
        assert_eq!(texts(&out), ["0123", "4567", "89", "xy"]);
        // A cut never splits a character.
        let mut buf = BytesMut::from("ab\u{e9}\u{e9}".as_bytes());
        let mut out = Vec::new();
        decode_from_program(Mode::Text, &mut buf, true, 3, &mut out).unwrap();
        assert_eq!(texts(&out), ["ab", "\u{e9}", "\u{e9}"]);
        // ...also when the buffer ends inside a character (its rest not read yet).
        let mut buf = BytesMut::from(&"ab\u{e9}".as_bytes()[..3]);
        let mut out = Vec::new();
        decode_from_program(Mode::Text, &mut buf, false, 3, &mut out).unwrap();
        assert!(
            out.is_empty(),
            "the cut waits to see the character at the limit"
        );
        buf.extend_from_slice(&"\u{e9}zz".as_bytes()[1..]);
        decode_from_program(Mode::Text, &mut buf, true, 3, &mut out).unwrap();
        assert_eq!(texts(&out), ["ab", "\u{e9}z", "z"]);
    }

    #[test]
    fn framed_round_trip_and_errors() {
        let msgs = [
            Message::Text("hi\nthere".into()),
            Message::Binary(Bytes::from_static(&[0, 1, 2])),
            Message::Text("".into()),
        ];
        let mut wire = BytesMut::new();
        for m in &msgs {
            encode_for_program(Mode::Framed, m, &mut wire);
        }
        // Byte by byte, as slow pipes deliver it.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            decode_from_program(Mode::Framed, &mut buf, false, 100, &mut out).unwrap();
        }
        assert_eq!(out, msgs);
        let bad = |bytes: &[u8], limit| {
            let mut buf = BytesMut::from(bytes);
            decode_from_program(Mode::Framed, &mut buf, true, limit, &mut Vec::new())
        };
        assert_eq!(bad(&[9, 0, 0, 0, 0], 0), Err(FramingError::BadKind(9)));
        assert_eq!(
            bad(&[2, 0, 0, 0, 9], 4),
            Err(FramingError::TooLong { len: 9, limit: 4 })
        );
        assert_eq!(bad(&[1, 0, 0, 0, 1, 0xff], 0), Err(FramingError::NotUtf8));
        assert_eq!(bad(&[1, 0, 0], 0), Err(FramingError::Truncated));
    }

    #[test]
    fn binary_reads_are_cut_at_the_limit() {
        let mut buf = BytesMut::from(&[7u8; 10][..]);
        let mut out = Vec::new();
        decode_from_program(Mode::Binary, &mut buf, false, 4, &mut out).unwrap();
        let lens: Vec<usize> = out.iter().map(|m| m.payload().len()).collect();
        assert_eq!(lens, [4, 4, 2]);
    }
}
