//! The floor servers' framing (`floor-epoll`, `floor-uring`): the least an echo can cost.
//!
//! No I/O here: a [`Conn`] owns one fixed read buffer; the driver reads into
//! [`Conn::read_room`], calls [`Conn::on_read`], writes what [`Conn::output`] yields and tells
//! [`Conn::advance`] how much went out. Per frame: parse the header, unmask the payload in
//! place, send it back behind a server header. No validation (RSV bits, opcodes, UTF-8,
//! fragmentation rules: all echoed as they come), no allocation per echo, no copy of a large
//! payload:
//!
//! - the server header is the client's less the mask key, so it is written in place just in
//!   front of the payload (over the mask key, read first): each frame is one contiguous range
//!   of the read buffer, which goes out as it is;
//! - frames after the first in one read sit 4 bytes (their mask key) behind the output's
//!   end: a small one (up to [`JOIN`] bytes) is moved up to join it, so 8 small echoes leave
//!   in one `send`; a larger one becomes a range of its own (`writev`/`sendmsg`);
//! - a frame longer than what was read is echoed piece by piece as it arrives (the mask
//!   offset carried over), so any length passes through the fixed buffer;
//! - a header cut by the end of a read stays in the buffer and moves to its front before the
//!   next read.
//!
//! Pings are answered with pongs (the same frame, opcode changed), pongs dropped, a Close is
//! answered with the same Close and then the connection ends ([`Conn::closing`]). An unmasked
//! frame, a 64-bit length with its top bit set, or a handshake that does not fit the buffer
//! or has no `Sec-WebSocket-Key` ends the connection ([`Bad`]); nothing from the network can
//! panic here.
//!
//! The handshake answers any request that holds a `Sec-WebSocket-Key` with a 101 and its
//! accept value (weft_proto's `accept_key`); nothing else is checked. Its response is the one
//! allocation a connection makes besides its buffer ([`Conn::pending`], which also takes what
//! a driver could not write at once).

use std::io::IoSlice;
use weft_proto::mask::apply_mask;

/// Each connection's read buffer: a whole 64 KiB frame and its header fit.
pub const READ_BUF: usize = 64 * 1024 + 64;
/// The most output ranges one read can leave; past it every piece is moved to join the last.
pub const MAX_SEGS: usize = 32;
/// A piece (header or payload) up to this long is moved to join the previous range.
pub const JOIN: usize = 2048;

/// Why a connection is dropped: what the peer sent is not something to echo.
#[derive(Debug)]
pub struct Bad(pub &'static str);

/// One connection's state: its buffer, the frame being echoed, and the output waiting.
pub struct Conn {
    buf: Box<[u8]>,
    /// Bytes in `buf`.
    filled: usize,
    /// Where the unprocessed tail (a cut header) starts once the output is out.
    keep_from: usize,
    handshake: bool,
    /// Payload bytes of the current frame not yet seen.
    remaining: u64,
    mask: [u8; 4],
    /// Payload bytes of the current frame seen so far (mod 4 matters).
    mask_pos: usize,
    /// The current frame is not echoed (a pong).
    skip: bool,
    /// The current frame is a Close.
    close_frame: bool,
    /// A Close was echoed: end the connection once the output is out; ignore input.
    pub closing: bool,
    /// Output: ranges of `buf`, from `seg_head` to `nsegs`.
    segs: [(usize, usize); MAX_SEGS],
    seg_head: usize,
    nsegs: usize,
    /// Output owned here (the handshake's response, what could not be written at once),
    /// sent before the ranges; from `pending_pos`.
    pub pending: Vec<u8>,
    pending_pos: usize,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            buf: vec![0; READ_BUF].into_boxed_slice(),
            filled: 0,
            keep_from: 0,
            handshake: true,
            remaining: 0,
            mask: [0; 4],
            mask_pos: 0,
            skip: false,
            close_frame: false,
            closing: false,
            segs: [(0, 0); MAX_SEGS],
            seg_head: 0,
            nsegs: 0,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    /// Whether output is waiting (then the driver must not read: the buffer holds it).
    pub fn has_output(&self) -> bool {
        self.pending_pos < self.pending.len() || self.seg_head < self.nsegs
    }

    /// The free part of the buffer to read into (after moving a cut header to the front).
    /// Call only when [`has_output`](Self::has_output) is false. Empty when a handshake
    /// fills the whole buffer (then [`on_read`](Self::on_read) has already said [`Bad`]).
    pub fn read_room(&mut self) -> &mut [u8] {
        if self.keep_from > 0 {
            self.buf.copy_within(self.keep_from..self.filled, 0);
            self.filled -= self.keep_from;
            self.keep_from = 0;
        }
        &mut self.buf[self.filled..]
    }

    /// `n` bytes were read into [`read_room`](Self::read_room): answer the handshake, echo
    /// the frames. Afterwards [`output`](Self::output) holds what to send.
    pub fn on_read(&mut self, n: usize) -> Result<(), Bad> {
        self.filled = (self.filled + n).min(self.buf.len());
        if self.handshake && !self.answer_handshake()? {
            self.keep_from = 0;
            return Ok(());
        }
        self.frames();
        Ok(())
    }

    /// Parses the request once it is whole; writes the 101 to `pending`, moves the bytes
    /// after the request to the front. False: not whole yet.
    fn answer_handshake(&mut self) -> Result<bool, Bad> {
        let data = &self.buf[..self.filled];
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.filled == self.buf.len() {
                return Err(Bad("handshake larger than the buffer"));
            }
            return Ok(false);
        };
        write_response(&data[..end], &mut self.pending)?;
        let body = end + 4;
        self.buf.copy_within(body..self.filled, 0);
        self.filled -= body;
        self.handshake = false;
        Ok(true)
    }

    /// Echoes every frame (or piece of one) in `buf[..filled]` into output ranges; a cut
    /// header is left at `keep_from`.
    fn frames(&mut self) {
        let end = self.filled;
        let mut r = 0;
        // Each turn consumes a payload piece or a whole header, or stops: bounded by `end`.
        while r < end {
            if self.closing {
                r = end;
                break;
            }
            if self.remaining > 0 {
                let n = (end - r).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if !self.skip {
                    apply_mask(&mut self.buf[r..r + n], self.mask, self.mask_pos);
                    self.push(r, r + n);
                }
                self.mask_pos = (self.mask_pos + n) & 3;
                self.remaining -= n as u64;
                r += n;
                if self.remaining == 0 {
                    self.frame_done();
                }
                continue;
            }
            let avail = end - r;
            if avail < 2 {
                break;
            }
            let b0 = self.buf[r];
            let b1 = self.buf[r + 1];
            if b1 & 0x80 == 0 {
                // Unmasked: not a client's frame. Stop echoing; the driver sees `closing`
                // with nothing more to send and ends the connection.
                self.closing = true;
                r = end;
                break;
            }
            // `ext`: the header less the mask key (the server header's length).
            let (len, ext) = match b1 & 0x7f {
                126 => {
                    if avail < 4 {
                        break;
                    }
                    (
                        u64::from(u16::from_be_bytes([self.buf[r + 2], self.buf[r + 3]])),
                        4,
                    )
                }
                127 => {
                    if avail < 10 {
                        break;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[r + 2..r + 10]);
                    let len = u64::from_be_bytes(b);
                    if len >> 63 != 0 {
                        self.closing = true;
                        r = end;
                        break;
                    }
                    (len, 10)
                }
                n => (u64::from(n), 2),
            };
            let hlen = ext + 4;
            if avail < hlen {
                break;
            }
            self.mask.copy_from_slice(&self.buf[r + ext..r + hlen]);
            self.mask_pos = 0;
            let ps = r + hlen;
            let hs = ps - ext;
            // The server header: the client's first bytes, mask bit cleared, moved onto the
            // mask key so that it ends where the payload starts.
            self.buf.copy_within(r..r + ext, hs);
            self.buf[hs + 1] &= 0x7f;
            match b0 & 0x0f {
                0x9 => self.buf[hs] = (b0 & 0xf0) | 0xa,
                0xa => self.skip = true,
                0x8 => self.close_frame = true,
                _ => {}
            }
            if !self.skip {
                self.push(hs, ps);
            }
            self.remaining = len;
            r = ps;
            if len == 0 {
                self.frame_done();
            }
        }
        self.keep_from = r;
    }

    fn frame_done(&mut self) {
        if self.close_frame {
            self.closing = true;
        }
        self.skip = false;
        self.close_frame = false;
    }

    /// Adds `buf[a..b]` to the output: extends the last range when adjacent, else moves a
    /// small piece (or any piece once the ranges are all used) up to join it, else starts a
    /// range.
    fn push(&mut self, a: usize, b: usize) {
        if self.nsegs > self.seg_head {
            let last = &mut self.segs[self.nsegs - 1];
            if last.1 == a {
                last.1 = b;
                return;
            }
            if b - a <= JOIN || self.nsegs == MAX_SEGS {
                // `last.1 < a`: the output only ever trails the input.
                let to = last.1;
                last.1 = to + (b - a);
                self.buf.copy_within(a..b, to);
                return;
            }
        }
        if self.nsegs == self.seg_head {
            self.seg_head = 0;
            self.nsegs = 0;
        }
        self.segs[self.nsegs] = (a, b);
        self.nsegs += 1;
    }

    /// The output, in order, as slices into `out`; returns how many. `out` must have room for
    /// [`MAX_SEGS`] + 1.
    pub fn output<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut k = 0;
        if self.pending_pos < self.pending.len() && k < out.len() {
            out[k] = IoSlice::new(&self.pending[self.pending_pos..]);
            k += 1;
        }
        for &(a, b) in &self.segs[self.seg_head..self.nsegs] {
            if k == out.len() {
                break;
            }
            out[k] = IoSlice::new(&self.buf[a..b]);
            k += 1;
        }
        k
    }

    /// `n` bytes of the output went out.
    pub fn advance(&mut self, mut n: usize) {
        if self.pending_pos < self.pending.len() {
            let k = n.min(self.pending.len() - self.pending_pos);
            self.pending_pos += k;
            n -= k;
            if self.pending_pos == self.pending.len() {
                self.pending.clear();
                self.pending_pos = 0;
            }
        }
        while n > 0 && self.seg_head < self.nsegs {
            let (a, b) = self.segs[self.seg_head];
            if n >= b - a {
                n -= b - a;
                self.seg_head += 1;
            } else {
                self.segs[self.seg_head].0 = a + n;
                n = 0;
            }
        }
        if self.seg_head == self.nsegs {
            self.seg_head = 0;
            self.nsegs = 0;
        }
    }

    /// Moves the output still in the buffer into `pending` (a write that would block, a
    /// partial send): the slow path, the only one that copies.
    pub fn spill(&mut self) {
        for i in self.seg_head..self.nsegs {
            let (a, b) = self.segs[i];
            self.pending.extend_from_slice(&self.buf[a..b]);
        }
        self.seg_head = 0;
        self.nsegs = 0;
    }
}

/// Writes the 101 for the request head `head` (up to its blank line) into `out`: any
/// request that holds a `Sec-WebSocket-Key`.
pub fn write_response(head: &[u8], out: &mut Vec<u8>) -> Result<(), Bad> {
    let mut key = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"sec-websocket-key") {
            key = Some(line[colon + 1..].trim_ascii());
        }
    }
    let key = key.ok_or(Bad("no Sec-WebSocket-Key"))?;
    let accept = weft_proto::handshake::accept_key(key);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Ok(())
}

/// What the io_uring floor's loop drives: the floor's own framing ([`Conn`]) or, with
/// `floor-uring --engine`, weft's engine (`engine.rs`). One operation per connection at a
/// time: the driver reads only while no output waits, and touches nothing between
/// submitting an operation and its completion.
// (floor-epoll includes this file too, and drives `Conn` directly.)
#[allow(dead_code)]
pub trait Echo: Default {
    /// Whether output waits (then the driver sends it and does not read).
    fn has_output(&self) -> bool;
    /// The connection is to end once its output is out.
    fn closing(&self) -> bool;
    /// The memory to read into next (start and length): it stays put, and nothing reads
    /// it, until [`on_read`](Self::on_read). Length 0: nothing more can be read.
    fn read_room(&mut self) -> (*mut u8, usize);
    /// `n` bytes were read into the room.
    fn on_read(&mut self, n: usize) -> Result<(), Bad>;
    /// The output as slices (at most `out.len()`, which is [`MAX_SEGS`] + 1); how many.
    fn output<'a>(&'a mut self, out: &mut [IoSlice<'a>]) -> usize;
    /// `n` bytes of the output went out.
    fn advance(&mut self, n: usize);
    /// A send went out short: what is left must not depend on the read buffer.
    fn spill(&mut self);
}

impl Echo for Conn {
    fn has_output(&self) -> bool {
        Conn::has_output(self)
    }
    fn closing(&self) -> bool {
        self.closing
    }
    fn read_room(&mut self) -> (*mut u8, usize) {
        let room = Conn::read_room(self);
        (room.as_mut_ptr(), room.len())
    }
    fn on_read(&mut self, n: usize) -> Result<(), Bad> {
        Conn::on_read(self, n)
    }
    fn output<'a>(&'a mut self, out: &mut [IoSlice<'a>]) -> usize {
        Conn::output(self, out)
    }
    fn advance(&mut self, n: usize) {
        Conn::advance(self, n)
    }
    fn spill(&mut self) {
        Conn::spill(self)
    }
}

/// The floors' listener: `SO_REUSEADDR`, backlog 1024 (512 connections arrive at once),
/// blocking (floor-epoll makes it non-blocking for mio; io_uring wants it as it is).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn masked(op: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | op];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        f
    }

    fn plain(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | op];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `input` in pieces of `step` bytes (each read limited by the room too) and
    /// collects all output, sending it in pieces of `wstep` (spilling sometimes).
    fn run(input: &[u8], step: usize, wstep: usize) -> (Vec<u8>, bool) {
        let mut c = Conn::new();
        let mut out = Vec::new();
        let mut i = 0;
        let mut turn = 0;
        while i < input.len() && !c.closing {
            let room = c.read_room();
            let n = step.min(room.len()).min(input.len() - i);
            assert!(n > 0);
            room[..n].copy_from_slice(&input[i..i + n]);
            i += n;
            c.on_read(n).unwrap();
            turn += 1;
            if turn % 3 == 0 {
                c.spill();
            }
            while c.has_output() {
                let mut sl = [IoSlice::new(&[]); MAX_SEGS + 1];
                let k = c.output(&mut sl);
                let mut all = Vec::new();
                for s in &sl[..k] {
                    all.extend_from_slice(s);
                }
                let w = all.len().min(wstep);
                out.extend_from_slice(&all[..w]);
                c.advance(w);
            }
        }
        (out, c.closing)
    }

    #[test]
    fn echoes_in_every_split() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mid: Vec<u8> = (0..1024u32).map(|i| (i * 13) as u8).collect();
        let mut input = REQ.to_vec();
        let mut want = Vec::new();
        let key = [0x12, 0x34, 0x56, 0x78];
        for (op, p) in [
            (2u8, &b"0123456789abcdef"[..]),
            (1, &mid[..]),
            (2, &big[..]),
            (9, b"ping"),
            (0xa, b"pong"),
            (2, b""),
            (2, &big[..65536]),
            (1, b"x"),
        ] {
            input.extend_from_slice(&masked(op, p, key));
            match op {
                9 => want.extend_from_slice(&plain(0xa, p)),
                0xa => {}
                _ => want.extend_from_slice(&plain(op, p)),
            }
        }
        input.extend_from_slice(&masked(8, &[0x03, 0xe8], key));
        want.extend_from_slice(&plain(8, &[0x03, 0xe8]));
        input.extend_from_slice(&masked(2, b"after close", key));
        for step in [1, 2, 3, 5, 7, 13, 100, 1000, 4096, 65536, READ_BUF] {
            for wstep in [1, 7, 1000, usize::MAX] {
                if step < 50 && wstep < 50 && !(step == 1 && wstep == 1) {
                    continue;
                }
                let (out, closing) = run(&input, step, wstep);
                let resp = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                assert!(out.starts_with(b"HTTP/1.1 101"));
                assert!(std::str::from_utf8(&out[..resp])
                    .unwrap()
                    .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
                assert!(out[resp..] == want[..], "step {step} wstep {wstep}");
                assert!(closing);
            }
        }
    }

    #[test]
    fn bad_input_ends_the_connection() {
        let mut c = Conn::new();
        c.read_room()[..REQ.len()].copy_from_slice(REQ);
        c.on_read(REQ.len()).unwrap();
        c.advance(usize::MAX);
        let f = plain(2, b"unmasked");
        c.read_room()[..f.len()].copy_from_slice(&f);
        c.on_read(f.len()).unwrap();
        assert!(c.closing && !c.has_output());

        let mut c = Conn::new();
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        c.read_room()[..req.len()].copy_from_slice(req);
        assert!(c.on_read(req.len()).is_err());

        let mut c = Conn::new();
        let n = c.read_room().len();
        c.read_room().fill(b'a');
        assert!(c.on_read(n).is_err());

        let mut c = Conn::new();
        c.read_room()[..REQ.len()].copy_from_slice(REQ);
        c.on_read(REQ.len()).unwrap();
        c.advance(usize::MAX);
        let f = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        c.read_room()[..f.len()].copy_from_slice(&f);
        c.on_read(f.len()).unwrap();
        assert!(c.closing && !c.has_output());
    }
}
