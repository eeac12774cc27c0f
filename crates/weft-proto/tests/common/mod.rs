//! Helpers shared by the engine's integration tests: raw frame building, moving bytes
//! between two connections, draining events.
#![allow(dead_code)]

use bytes::{Buf, Bytes};
use weft_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use weft_proto::mask::apply_mask;
use weft_proto::{Config, Connection, Error, Event, Role};

/// A raw frame as a client would send it (masked with a fixed key), or unmasked.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut b1 = if masked { 0x80 } else { 0 };
    let len = payload.len();
    out.push((fin as u8) << 7 | rsv << 4 | opcode);
    if len < 126 {
        b1 |= len as u8;
        out.push(b1);
    } else if len <= 0xffff {
        out.push(b1 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(b1 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mut p = payload.to_vec();
    if masked {
        out.extend_from_slice(&key);
        apply_mask(&mut p, key, 0);
    }
    out.extend_from_slice(&p);
    out
}

/// A masked frame from a client.
pub fn cframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, payload, true)
}

/// All queued output of `c`, taken.
pub fn take_out(c: &mut Connection) -> Bytes {
    let q = c.outgoing();
    q.copy_to_bytes(q.remaining())
}

/// Decodes a sequence of frames (no validation beyond the header): (header, unmasked payload).
pub fn parse_frames(mut wire: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut v = Vec::new();
    while !wire.is_empty() {
        let (h, n) = FrameHeader::decode(wire).unwrap().expect("whole header");
        let len = h.payload_len as usize;
        let mut p = wire[n..n + len].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut p, k, 0);
        }
        v.push((h, p));
        wire = &wire[n + len..];
    }
    v
}

/// The close code in the last frame of `wire`, which must be a close frame.
pub fn close_code_in(wire: &[u8]) -> Option<u16> {
    let frames = parse_frames(wire);
    let (h, p) = frames.last()?;
    assert_eq!(h.opcode, OpCode::Close);
    (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
}

/// Drains every event available now.
pub fn drain(c: &mut Connection) -> Result<Vec<Event>, Error> {
    let mut v = Vec::new();
    while let Some(e) = c.poll_event()? {
        v.push(e);
    }
    Ok(v)
}

/// Moves all of `from`'s output into `to`.
pub fn pump(from: &mut Connection, to: &mut Connection) {
    let wire = take_out(from);
    to.receive(&wire);
}

/// A client/server pair with the same config.
pub fn pair(config: Config) -> (Connection, Connection) {
    (
        Connection::new(Role::Client, config.clone()),
        Connection::new(Role::Server, config),
    )
}

/// Opcode numbers for raw frames.
pub const CONT: u8 = 0;
pub const TEXT: u8 = 1;
pub const BIN: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// Unused import guard.
pub fn _unused() -> usize {
    MAX_HEADER_LEN
}
