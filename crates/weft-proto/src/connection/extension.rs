//! The installed [`Extension`] inside the engine: the receive path of the messages that
//! carry its RSV bits, at each level, and the encoding of outgoing messages and frames.
//!
//! Frames are decoded as their bytes arrive: at the message and frame levels into the
//! message's or frame's output, bounded by the size limits (so a bomb ends with 1009 before
//! its memory is spent, and a frame is never buffered whole on the wire), handed out when
//! the frame completes; at the chunk level in bounded steps. Text is validated on the
//! decoded bytes.

use super::{Connection, PayloadState, RecvState};
use crate::close::CloseCode;
use crate::config::RecvLevel;
use crate::error::ProtocolError;
use crate::extension::{Boundary, Extension, ExtensionError};
use crate::message::{Event, Message, MessageKind};
use crate::utf8::Utf8Bytes;
use bytes::{Buf, Bytes};

/// The most decoded bytes one chunk-level event carries.
const CHUNK_OUT: usize = 64 * 1024;

/// The installed extension and what the engine keeps for it between calls.
pub(super) struct ExtensionState {
    ext: Box<dyn Extension>,
    /// The decoded message so far (message level), or frame so far (frame level).
    decoded: Vec<u8>,
    /// Received payload the extension has not used yet (chunk level).
    input: Bytes,
    /// The last decode call was not done: call again, even without new input (chunk level).
    more: bool,
}

impl ExtensionState {
    pub(super) fn new(ext: Box<dyn Extension>) -> Self {
        ExtensionState {
            ext,
            decoded: Vec::new(),
            input: Bytes::new(),
            more: false,
        }
    }

    pub(super) fn extension(&self) -> &dyn Extension {
        self.ext.as_ref()
    }

    /// Lets go of what was kept of a received message (nothing more will be received).
    pub(super) fn clear_input(&mut self) {
        self.decoded = Vec::new();
        self.input = Bytes::new();
        self.more = false;
    }
}

/// What one step over a frame of an extension's message produced.
pub(super) enum Step {
    Event(Event),
    /// Go on with the next frame.
    Continue,
    /// More bytes are needed.
    NeedMore,
}

/// A decode call that neither used input nor made output, and is not done.
fn stalled() -> ProtocolError {
    ProtocolError::Extension(ExtensionError::new(
        CloseCode::INTERNAL_ERROR,
        "extension made no progress",
    ))
}

/// The engine holds no extension for a message that has its bits (not reachable).
fn missing() -> ProtocolError {
    ProtocolError::Extension(ExtensionError::new(
        CloseCode::INTERNAL_ERROR,
        "no extension installed",
    ))
}

/// Decodes all of `input` into `out`, which may hold at most `limit` bytes in all.
fn decode_all(
    ext: &mut dyn Extension,
    mut input: &[u8],
    end: Boundary,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ProtocolError> {
    loop {
        let before = out.len();
        // One byte past the limit: reaching it means the output is too big.
        let max = limit.saturating_sub(before).saturating_add(1);
        let progress = ext
            .decode(input, end, out, max)
            .map_err(ProtocolError::Extension)?;
        if out.len() > limit {
            return Err(ProtocolError::MessageTooBig {
                limit: limit as u64,
            });
        }
        let used = progress.consumed.min(input.len());
        input = &input[used..];
        if progress.done && input.is_empty() {
            return Ok(());
        }
        if used == 0 && out.len() == before {
            return Err(stalled());
        }
    }
}

impl Connection {
    /// Installs `ext` (or none): its RSV bits are accepted from now on.
    pub(super) fn install_extension(&mut self, ext: Option<Box<dyn Extension>>) {
        self.ext_rsv = ext.as_ref().map_or(0, |e| e.rsv() & 0b111);
        self.ext = ext.map(|e| Box::new(ExtensionState::new(e)));
    }

    /// A received message of the extension's begins.
    pub(super) fn extension_start(
        &mut self,
        kind: MessageKind,
        rsv: u8,
    ) -> Result<(), ProtocolError> {
        let st = self.ext.as_deref_mut().ok_or_else(missing)?;
        st.ext
            .start_decode(kind, rsv)
            .map_err(ProtocolError::Extension)
    }

    /// Validates newly decoded text of the open message.
    fn check_decoded_text(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if let Some(utf8) = self.in_msg.as_mut().and_then(|m| m.utf8.as_mut()) {
            utf8.feed(data).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// One step over a frame of the extension's message; `avail` of its bytes (unmasked)
    /// are at the front of the read buffer, and are decoded now (at the message and frame
    /// levels the event comes when the frame is complete).
    pub(super) fn extension_step(
        &mut self,
        mut p: PayloadState,
        avail: usize,
    ) -> Result<Step, ProtocolError> {
        if self.config.recv_level == RecvLevel::Chunk {
            return self.extension_chunk_step(p, avail);
        }
        let fin = p.header.fin;
        let level = self.config.recv_level;
        let limit = match level {
            RecvLevel::Message => self.config.max_message_size,
            _ => self.config.max_frame_size,
        };
        let limit = limit.map_or(usize::MAX / 2, |l| l.min(usize::MAX as u64 / 2) as usize);
        let complete = avail as u64 >= p.remaining;
        if !complete && avail == 0 {
            self.recv = RecvState::Payload(p);
            return Ok(Step::NeedMore);
        }
        // What has arrived of the frame is decoded now, not when the frame is complete: the
        // read buffer holds at most one read of it, whatever length it announces (a
        // compressed frame is bounded by what it decodes to, not by its length on the
        // wire, so waiting for all of it could buffer far past the limits).
        let raw = self.rbuf.split_to(avail);
        let end = match (complete, fin) {
            (false, _) => Boundary::None,
            (true, true) => Boundary::Message,
            (true, false) => Boundary::Frame,
        };
        if complete {
            self.recv = RecvState::Header;
        } else {
            p.remaining -= avail as u64;
            p.checked = 0;
            p.unmasked = 0;
            self.recv = RecvState::Payload(p);
        }
        let st = self.ext.as_deref_mut().ok_or_else(missing)?;
        // The frame's (frame level) or the message's (message level) output so far.
        let mut out = std::mem::take(&mut st.decoded);
        let before = out.len();
        decode_all(st.ext.as_mut(), &raw, end, &mut out, limit)?;
        // Our own buffer, never lent out: validated here, it stays valid.
        self.check_decoded_text(&out[before..])?;
        if !complete {
            if let Some(st) = self.ext.as_deref_mut() {
                st.decoded = out;
            }
            return Ok(Step::NeedMore);
        }
        if level == RecvLevel::Frame {
            if fin {
                self.finish_message()?;
                self.pending.push_back(Event::MessageEnd);
            }
            return Ok(Step::Event(Event::Frame(Bytes::from(out))));
        }
        if !fin {
            if let Some(st) = self.ext.as_deref_mut() {
                st.decoded = out;
            }
            return Ok(Step::Continue);
        }
        // Validated as decoded, unless other RSV bits (the application's) kept it from it.
        let validated = self.in_msg.as_ref().is_some_and(|m| m.utf8.is_some());
        let (kind, _) = self.finish_message()?;
        let payload = Bytes::from(out);
        let msg = match kind {
            MessageKind::Text if validated => Message::Text(Utf8Bytes::from_validated(payload)),
            MessageKind::Text => {
                Message::Text(Utf8Bytes::try_from(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
            }
            MessageKind::Binary => Message::Binary(payload),
        };
        Ok(Step::Event(Event::Message(msg)))
    }

    /// The chunk level: decodes in bounded steps as the bytes arrive.
    fn extension_chunk_step(
        &mut self,
        mut p: PayloadState,
        mut avail: usize,
    ) -> Result<Step, ProtocolError> {
        let fin = p.header.fin;
        loop {
            let st = self.ext.as_deref_mut().ok_or_else(missing)?;
            if st.input.is_empty() && avail > 0 {
                st.input = self.rbuf.split_to(avail).freeze();
                p.remaining -= avail as u64;
                p.checked = 0;
                p.unmasked = 0;
                avail = 0;
            }
            let end = match (p.remaining, fin) {
                (0, true) => Boundary::Message,
                (0, false) => Boundary::Frame,
                _ => Boundary::None,
            };
            if st.input.is_empty() && end == Boundary::None && !st.more {
                self.recv = RecvState::Payload(p);
                return Ok(Step::NeedMore);
            }
            let mut out = Vec::new();
            let progress = st
                .ext
                .decode(&st.input, end, &mut out, CHUNK_OUT)
                .map_err(ProtocolError::Extension)?;
            let used = progress.consumed.min(st.input.len());
            st.input.advance(used);
            if st.input.is_empty() {
                // Let go of the read buffer's memory.
                st.input = Bytes::new();
            }
            let done = progress.done && st.input.is_empty();
            st.more = !done;
            if !done && used == 0 && out.is_empty() {
                return Err(stalled());
            }
            if !out.is_empty() {
                self.check_decoded_text(&out)?;
            }
            if done && end != Boundary::None {
                self.end_chunked_frame(fin)?;
                if !out.is_empty() {
                    return Ok(Step::Event(Event::FrameData(Bytes::from(out))));
                }
                return Ok(match self.pending.pop_front() {
                    Some(e) => Step::Event(e),
                    None => Step::Continue,
                });
            }
            if !out.is_empty() {
                self.recv = RecvState::Payload(p);
                return Ok(Step::Event(Event::FrameData(Bytes::from(out))));
            }
        }
    }

    /// A whole outgoing message, encoded if the extension takes it: the payload to send and
    /// the RSV bits of its first frame.
    pub(super) fn encode_message(&mut self, kind: MessageKind, payload: Bytes) -> (Bytes, u8) {
        let Some(st) = self.ext.as_deref_mut() else {
            return (payload, 0);
        };
        let rsv = st.ext.start_encode(kind, Some(payload.len() as u64)) & self.ext_rsv;
        if rsv == 0 {
            return (payload, 0);
        }
        let mut out = Vec::new();
        st.ext.encode(&payload, Boundary::Message, &mut out);
        (Bytes::from(out), rsv)
    }

    /// One explicit frame of the open outgoing message, encoded if its message is the
    /// extension's (decided at its first frame): the payload and the frame's RSV bits.
    pub(super) fn encode_frame(&mut self, first: bool, payload: Bytes, fin: bool) -> (Bytes, u8) {
        let (Some(st), Some(m)) = (self.ext.as_deref_mut(), self.out_msg.as_mut()) else {
            return (payload, 0);
        };
        let mut rsv = 0;
        if first {
            rsv = st.ext.start_encode(m.kind, None) & self.ext_rsv;
            m.extension = rsv != 0;
        }
        if !m.extension {
            return (payload, 0);
        }
        let end = if fin {
            Boundary::Message
        } else {
            Boundary::Frame
        };
        let mut out = Vec::new();
        st.ext.encode(&payload, end, &mut out);
        (Bytes::from(out), rsv)
    }
}
