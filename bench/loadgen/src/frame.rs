//! The load generator's own WebSocket framing: masked client frames out, a streaming parser
//! that checks the server's echoes in (length, kind, and sampled payload bytes), and the
//! client half of the opening handshake. No WebSocket library is used.

/// The fixed key of every handshake (RFC 6455's example) and the accept value it must get.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The mask key of every frame. Servers cannot tell a fixed key from a random one, and a
/// fixed key lets every payload body be masked once, up front (see [`Template`]).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How many leading bytes of a payload carry the message's tag.
pub const TAG_LEN: usize = 8;

/// How many extra sampled positions beyond the tag (besides the last byte) are checked.
const SAMPLES: usize = 4;

/// The payload byte at position `p` past the tag: printable ASCII for text (valid UTF-8),
/// all byte values but a few for binary.
#[inline]
pub fn pattern(p: usize, text: bool) -> u8 {
    if text {
        b'a' + (p % 26) as u8
    } else {
        (p.wrapping_mul(131).wrapping_add(7) % 251) as u8
    }
}

/// A message's tag: eight lowercase hex digits of `id` (ASCII, so valid in text too).
pub fn tag(id: u32) -> [u8; TAG_LEN] {
    let hex = b"0123456789abcdef";
    let mut t = [0u8; TAG_LEN];
    for (i, b) in t.iter_mut().enumerate() {
        *b = hex[((id >> (28 - 4 * i)) & 0xf) as usize];
    }
    t
}

/// Whether every message of `t` can go through a line-based program and come back whole:
/// text, and no `\n` or `\r` in any payload (the pattern past the tag, and every tag: hex
/// digits). `Err` names the first offending position.
pub fn line_safe(t: &Template) -> Result<(), String> {
    if !t.text {
        return Err("binary messages".into());
    }
    let is_break = |b: u8| b == b'\n' || b == b'\r';
    if let Some(p) = t.plain().iter().skip(TAG_LEN).position(|&b| is_break(b)) {
        return Err(format!("a line break at byte {}", p + TAG_LEN));
    }
    // Every tag is eight hex digits: check the digits themselves.
    if let Some(d) = (0..16u32)
        .map(|d| tag(d * 0x1111_1111))
        .find(|t| t.iter().any(|&b| is_break(b)))
    {
        return Err(format!("a line break in tag {d:?}"));
    }
    Ok(())
}

/// What the next echo must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub tag: [u8; TAG_LEN],
    pub len: usize,
    pub text: bool,
}

impl Expect {
    /// The byte the echo must have at position `p`.
    #[inline]
    pub fn byte_at(&self, p: usize) -> u8 {
        if p < TAG_LEN {
            self.tag[p]
        } else {
            pattern(p, self.text)
        }
    }

    /// The sampled positions past the tag: a few spread by the tag, and the last byte.
    fn samples(&self) -> [usize; SAMPLES + 1] {
        let mut s = [usize::MAX; SAMPLES + 1];
        if self.len > TAG_LEN {
            let span = self.len - TAG_LEN;
            let mut h = u64::from_le_bytes(self.tag) | 1;
            for slot in s.iter_mut().take(SAMPLES) {
                h ^= h << 13;
                h ^= h >> 7;
                h ^= h << 17;
                *slot = TAG_LEN + (h % span as u64) as usize;
            }
            s[SAMPLES] = self.len - 1;
        }
        s
    }
}

/// The masked payload bodies of one size and kind: the pattern, masked with [`MASK`] once.
/// A message is its header plus its tag (masked per message) plus `body()` (shared).
pub struct Template {
    pub len: usize,
    pub text: bool,
    masked: Vec<u8>,
}

impl Template {
    pub fn new(len: usize, text: bool) -> Template {
        let masked = (0..len).map(|p| pattern(p, text) ^ MASK[p % 4]).collect();
        Template { len, text, masked }
    }

    /// The bytes after the tag, already masked.
    pub fn body(&self) -> &[u8] {
        &self.masked[self.len.min(TAG_LEN)..]
    }

    /// The frame header, mask key and masked tag of message `id`: at most 22 bytes.
    pub fn head(&self, id: u32) -> ([u8; 22], usize) {
        let mut h = [0u8; 22];
        h[0] = 0x80 | if self.text { 1 } else { 2 };
        let mut n = 2;
        if self.len < 126 {
            h[1] = 0x80 | self.len as u8;
        } else if self.len <= 0xffff {
            h[1] = 0x80 | 126;
            h[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            n = 4;
        } else {
            h[1] = 0x80 | 127;
            h[2..10].copy_from_slice(&(self.len as u64).to_be_bytes());
            n = 10;
        }
        h[n..n + 4].copy_from_slice(&MASK);
        n += 4;
        let t = tag(id);
        for (p, b) in t.iter().take(self.len.min(TAG_LEN)).enumerate() {
            h[n] = b ^ MASK[p % 4];
            n += 1;
        }
        (h, n)
    }

    /// The payload as sent, before masking, with the tag bytes left as the pattern.
    pub fn plain(&self) -> Vec<u8> {
        (0..self.len).map(|p| pattern(p, self.text)).collect()
    }

    pub fn expect(&self, id: u32) -> Expect {
        Expect {
            tag: tag(id),
            len: self.len,
            text: self.text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    /// Inside a data frame's payload.
    Data {
        remaining: u64,
        fin: bool,
    },
    /// Inside a ping/pong payload (skipped; counted).
    Control {
        remaining: u64,
    },
}

/// The streaming parser of the server's frames.
pub struct Parser {
    state: State,
    /// The opcode of the message under way (1 text, 2 binary), if one is.
    msg_kind: Option<u8>,
    /// How many payload bytes of that message arrived.
    msg_off: usize,
    expect: Option<Expect>,
    samples: [usize; SAMPLES + 1],
    /// Control frames seen (pings/pongs the server sent on its own).
    pub controls: u64,
    /// `--verify full`: the plain payload (pattern) to compare every byte past the tag with.
    pub full: Option<std::rc::Rc<[u8]>>,
}

/// What one call to [`Parser::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub consumed: usize,
    /// A whole message was received and checked (the caller pops what it expected).
    pub completed: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Header,
            msg_kind: None,
            msg_off: 0,
            expect: None,
            samples: [usize::MAX; SAMPLES + 1],
            controls: 0,
            full: None,
        }
    }
}

impl Parser {
    /// Parses from `data` up to the end of one message. `front` is the message the next echo
    /// must match (the oldest one in flight). `consumed == 0` and not `completed`: a header
    /// is cut short; call again with more bytes.
    pub fn feed(&mut self, data: &[u8], front: Option<&Expect>) -> Result<Progress, String> {
        let mut off = 0;
        loop {
            match self.state {
                State::Header => {
                    let Some((fin, opcode, len, hlen)) = parse_header(&data[off..])? else {
                        return Ok(Progress {
                            consumed: off,
                            completed: false,
                        });
                    };
                    off += hlen;
                    match opcode {
                        0x8 => return Err("the server sent a close frame".into()),
                        0x9 | 0xA => {
                            if !fin || len > 125 {
                                return Err("bad control frame".into());
                            }
                            self.controls += 1;
                            self.state = State::Control { remaining: len };
                        }
                        0x1 | 0x2 => {
                            if self.msg_kind.is_some() {
                                return Err("new message inside a fragmented one".into());
                            }
                            let Some(e) = front else {
                                return Err("an echo arrived that was never sent".into());
                            };
                            let want = if e.text { 1 } else { 2 };
                            if opcode != want {
                                return Err(format!(
                                    "echo kind: got opcode {opcode}, sent opcode {want}"
                                ));
                            }
                            self.msg_kind = Some(opcode);
                            self.msg_off = 0;
                            self.expect = Some(*e);
                            self.samples = e.samples();
                            self.state = State::Data {
                                remaining: len,
                                fin,
                            };
                        }
                        0x0 => {
                            if self.msg_kind.is_none() {
                                return Err("continuation frame outside a message".into());
                            }
                            self.state = State::Data {
                                remaining: len,
                                fin,
                            };
                        }
                        other => return Err(format!("reserved opcode {other}")),
                    }
                }
                State::Control { remaining } => {
                    let take = (data.len() - off).min(remaining as usize);
                    off += take;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::Control { remaining };
                        return Ok(Progress {
                            consumed: off,
                            completed: false,
                        });
                    }
                    self.state = State::Header;
                }
                State::Data { remaining, fin } => {
                    let e = self.expect.expect("a message is under way");
                    let take = (data.len() - off).min(remaining as usize);
                    let start = self.msg_off;
                    let end = start + take;
                    if end > e.len {
                        return Err(format!(
                            "echo longer than sent: at least {end} bytes, sent {}",
                            e.len
                        ));
                    }
                    let chunk = &data[off..off + take];
                    // The tag, byte by byte.
                    for p in start..end.min(TAG_LEN) {
                        if chunk[p - start] != e.byte_at(p) {
                            return Err(format!("echo payload differs at byte {p} (tag)"));
                        }
                    }
                    for &p in &self.samples {
                        if p >= start && p < end && chunk[p - start] != e.byte_at(p) {
                            return Err(format!(
                                "echo payload differs at byte {p}: got {:#04x}, sent {:#04x}",
                                chunk[p - start],
                                e.byte_at(p)
                            ));
                        }
                    }
                    if let Some(plain) = &self.full {
                        let from = start.max(TAG_LEN);
                        if from < end && chunk[from - start..] != plain[from..end] {
                            let p = (from..end)
                                .find(|&p| chunk[p - start] != plain[p])
                                .unwrap_or(from);
                            return Err(format!("echo payload differs at byte {p} (full check)"));
                        }
                    }
                    self.msg_off = end;
                    off += take;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::Data { remaining, fin };
                        return Ok(Progress {
                            consumed: off,
                            completed: false,
                        });
                    }
                    self.state = State::Header;
                    if fin {
                        if self.msg_off != e.len {
                            return Err(format!(
                                "echo shorter than sent: {} bytes, sent {}",
                                self.msg_off, e.len
                            ));
                        }
                        self.msg_kind = None;
                        self.expect = None;
                        return Ok(Progress {
                            consumed: off,
                            completed: true,
                        });
                    }
                }
            }
        }
    }
}

/// A server frame's header: `None` if cut short; `(fin, opcode, payload length, header
/// length)`; errors for a mask bit, RSV bits or a non-minimal length.
fn parse_header(b: &[u8]) -> Result<Option<(bool, u8, u64, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    if b[0] & 0x70 != 0 {
        return Err(format!("RSV bits set: {:#04x}", b[0]));
    }
    let opcode = b[0] & 0x0f;
    if b[1] & 0x80 != 0 {
        return Err("the server masked a frame".into());
    }
    let Some((len, hlen)) = payload_len(b) else {
        return Ok(None);
    };
    Ok(Some((fin, opcode, len, hlen)))
}

/// The payload length and header length of a server frame header whose first two bytes are
/// in `b`; `None` if the extended length is cut short.
pub fn payload_len(b: &[u8]) -> Option<(u64, usize)> {
    match b[1] & 0x7f {
        126 => Some((u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as u64, 4)),
        127 => {
            let l: [u8; 8] = b.get(2..10)?.try_into().ok()?;
            Some((u64::from_be_bytes(l), 10))
        }
        n => Some((n as u64, 2)),
    }
}

/// The client's upgrade request, with the fixed key and `extra` header lines (each ending
/// in CRLF; the extension offer).
pub fn request_with(host: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Checks a response head in `buf`: `Ok(None)` if it is not complete yet, `Ok(Some(n))` with
/// the head's length once it is a valid 101 with the right accept value.
pub fn check_response(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("handshake answered {status:?}"));
    }
    let mut accept_ok = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("sec-websocket-accept") {
                accept_ok = value.trim() == ACCEPT;
            }
        }
    }
    if !accept_ok {
        return Err("Sec-WebSocket-Accept missing or wrong".into());
    }
    Ok(Some(end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_safe_text_only() {
        for len in [0, 1, 8, 16, 1024, 65536] {
            assert_eq!(line_safe(&Template::new(len, true)), Ok(()), "{len}");
        }
        // Binary payloads hold 10 and 13 (and are refused anyway).
        assert!(line_safe(&Template::new(1024, false)).is_err());
        assert!(Template::new(1024, false).plain().contains(&b'\n'));
    }

    /// The server's echo of message `id` from `t`: unmasked, in `frames` pieces.
    fn echo(t: &Template, id: u32, frames: usize, corrupt: Option<usize>) -> Vec<u8> {
        let mut payload: Vec<u8> = (0..t.len).map(|p| t.expect(id).byte_at(p)).collect();
        if let Some(p) = corrupt {
            payload[p] ^= 1;
        }
        let mut out = Vec::new();
        let per = t.len.div_ceil(frames).max(1);
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[][..]]
        } else {
            payload.chunks(per).collect()
        };
        for (i, c) in chunks.iter().enumerate() {
            let op = if i == 0 {
                if t.text {
                    1
                } else {
                    2
                }
            } else {
                0
            };
            let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
            out.push(fin | op);
            if c.len() < 126 {
                out.push(c.len() as u8);
            } else if c.len() <= 0xffff {
                out.push(126);
                out.extend_from_slice(&(c.len() as u16).to_be_bytes());
            } else {
                out.push(127);
                out.extend_from_slice(&(c.len() as u64).to_be_bytes());
            }
            out.extend_from_slice(c);
        }
        out
    }

    /// Feeds `wire` in pieces of `piece` bytes (keeping unconsumed bytes, as the loop does)
    /// and returns the number of completed messages.
    fn run(wire: &[u8], piece: usize, expects: &[Expect]) -> Result<usize, String> {
        let mut p = Parser::default();
        let mut buf = Vec::new();
        let mut done = 0;
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            let mut off = 0;
            loop {
                let pr = p.feed(&buf[off..], expects.get(done))?;
                off += pr.consumed;
                if pr.completed {
                    done += 1;
                } else if pr.consumed == 0 || off == buf.len() {
                    break;
                }
            }
            buf.drain(..off);
        }
        Ok(done)
    }

    #[test]
    fn masked_frames_unmask_to_the_pattern() {
        for (len, text) in [
            (0, false),
            (5, true),
            (16, false),
            (200, true),
            (70_000, false),
        ] {
            let t = Template::new(len, text);
            let (h, n) = t.head(0xdead_beef);
            let mut frame = h[..n].to_vec();
            frame.extend_from_slice(t.body());
            let hlen = if len < 126 {
                2
            } else if len <= 0xffff {
                4
            } else {
                10
            };
            assert_eq!(frame.len(), hlen + 4 + len);
            assert_eq!(frame[0] & 0x0f, if text { 1 } else { 2 });
            assert_ne!(frame[1] & 0x80, 0, "masked");
            let mask = &frame[hlen..hlen + 4];
            let e = t.expect(0xdead_beef);
            for (p, b) in frame[hlen + 4..].iter().enumerate() {
                assert_eq!(b ^ mask[p % 4], e.byte_at(p), "byte {p}");
            }
            if text {
                let plain: Vec<u8> = (0..len).map(|p| e.byte_at(p)).collect();
                assert!(std::str::from_utf8(&plain).is_ok());
            }
        }
    }

    #[test]
    fn good_echoes_pass_in_any_split_and_fragmentation() {
        for (len, text) in [(16, false), (1024, true), (65536, false), (3, true)] {
            let t = Template::new(len, text);
            let ids = [1u32, 2, 0xffff_ffff];
            let expects: Vec<Expect> = ids.iter().map(|&i| t.expect(i)).collect();
            for frames in [1, 3] {
                let wire: Vec<u8> = ids
                    .iter()
                    .flat_map(|&i| echo(&t, i, frames, None))
                    .collect();
                for piece in [1, 7, 1000, wire.len()] {
                    assert_eq!(
                        run(&wire, piece, &expects),
                        Ok(3),
                        "len {len} piece {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_corrupt_tag_sample_or_last_byte_fails() {
        let t = Template::new(1024, false);
        let e = [t.expect(42)];
        for p in [0, 7, 1023] {
            let wire = echo(&t, 42, 1, Some(p));
            assert!(run(&wire, 100, &e).is_err(), "byte {p}");
        }
        // Every sampled position is checked.
        for p in e[0].samples() {
            let wire = echo(&t, 42, 1, Some(p));
            assert!(run(&wire, 100, &e).unwrap_err().contains("differs"));
        }
    }

    #[test]
    fn full_verification_finds_any_corrupt_byte() {
        let t = Template::new(5000, true);
        let e = [t.expect(9)];
        let run_full = |wire: &[u8]| -> Result<usize, String> {
            let mut p = Parser {
                full: Some(t.plain().into()),
                ..Parser::default()
            };
            let mut off = 0;
            let mut done = 0;
            while off < wire.len() {
                let pr = p.feed(&wire[off..], e.get(done))?;
                off += pr.consumed;
                done += pr.completed as usize;
            }
            Ok(done)
        };
        assert_eq!(run_full(&echo(&t, 9, 2, None)), Ok(1));
        // Byte 2345 is not among the samples: only the full check sees it.
        assert!(!e[0].samples().contains(&2345));
        assert_eq!(run(&echo(&t, 9, 1, Some(2345)), 5000, &e), Ok(1));
        assert!(run_full(&echo(&t, 9, 1, Some(2345)))
            .unwrap_err()
            .contains("2345"));
    }

    #[test]
    fn wrong_length_kind_order_or_mask_fails() {
        let t = Template::new(64, false);
        let e = [t.expect(1), t.expect(2)];
        // Echoes out of order: the tag differs.
        let wire: Vec<u8> = [2, 1].iter().flat_map(|&i| echo(&t, i, 1, None)).collect();
        assert!(run(&wire, 1000, &e).is_err());
        // Shorter and longer.
        let short = echo(&Template::new(63, false), 1, 1, None);
        assert!(run(&short, 1000, &e).unwrap_err().contains("shorter"));
        let long = echo(&Template::new(65, false), 1, 1, None);
        assert!(run(&long, 1000, &e).unwrap_err().contains("longer"));
        // Text where binary was sent.
        let text = echo(&Template::new(64, true), 1, 1, None);
        assert!(run(&text, 1000, &e).unwrap_err().contains("kind"));
        // A masked server frame.
        let mut masked = echo(&t, 1, 1, None);
        masked[1] |= 0x80;
        assert!(run(&masked, 1000, &e).is_err());
        // An echo nobody asked for.
        assert!(run(&echo(&t, 1, 1, None), 1000, &[]).is_err());
        // A close frame.
        assert!(run(&[0x88, 0x02, 0x03, 0xe8], 1000, &e).is_err());
    }

    #[test]
    fn pings_between_echoes_are_skipped() {
        let t = Template::new(16, true);
        let e = [t.expect(5)];
        let mut wire = vec![0x89, 0x03, b'a', b'b', b'c'];
        wire.extend(echo(&t, 5, 1, None));
        assert_eq!(run(&wire, 2, &e), Ok(1));
    }

    #[test]
    fn handshake_response_checks() {
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             sec-websocket-accept: {ACCEPT}\r\n\r\n\x01"
        );
        assert_eq!(check_response(ok.as_bytes()), Ok(Some(ok.len() - 1)));
        assert_eq!(check_response(&ok.as_bytes()[..20]), Ok(None));
        let bad = ok.replace("101 Switching Protocols", "400 Bad Request");
        assert!(check_response(bad.as_bytes()).is_err());
        let wrong = ok.replace(ACCEPT, "xxxx");
        assert!(check_response(wrong.as_bytes()).is_err());
    }
}
