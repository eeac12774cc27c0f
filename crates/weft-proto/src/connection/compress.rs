//! permessage-deflate inside the engine: the per-connection compressor and decompressor,
//! and the receive path of compressed messages at each level. Compressed frames are
//! inflated as they complete (message and frame levels) or as they arrive, in bounded
//! steps (chunk level); text is validated on the inflated bytes; output is bounded by the
//! size limits, so a deflate bomb ends with 1009 before its memory is spent.

use super::{Connection, PayloadState, RecvState};
use crate::config::{RecvLevel, Role};
use crate::deflate::codec::{Deflater, InflateError, Inflater, TAIL};
use crate::deflate::Deflate;
use crate::error::ProtocolError;
use crate::message::{Event, Message, MessageKind};
use crate::utf8::Utf8Bytes;
use bytes::{Buf, Bytes};

/// The most inflated bytes one chunk-level event carries.
const CHUNK_OUT: usize = 64 * 1024;

/// A connection's compression state.
#[derive(Debug)]
pub(super) struct DeflateState {
    pub(super) deflater: Deflater,
    inflater: Inflater,
    /// zlib cannot compress with a window of 8 bits: when the peer asked for that, every
    /// message goes out uncompressed (which RFC 7692 allows).
    pub(super) can_compress: bool,
    pub(super) threshold: usize,
    /// The inflated message so far (message level).
    inflated: Vec<u8>,
    /// Compressed input not yet inflated (chunk level).
    inflate_in: Bytes,
    /// The message's tail was given to the inflater (chunk level).
    tail_fed: bool,
}

impl DeflateState {
    pub(super) fn new(role: Role, d: &Deflate) -> Self {
        let p = &d.params;
        let (own_bits, own_nct, peer_bits, peer_nct) = match role {
            Role::Server => (
                p.server_max_window_bits,
                p.server_no_context_takeover,
                p.client_max_window_bits,
                p.client_no_context_takeover,
            ),
            Role::Client => (
                p.client_max_window_bits,
                p.client_no_context_takeover,
                p.server_max_window_bits,
                p.server_no_context_takeover,
            ),
        };
        DeflateState {
            deflater: Deflater::new(d.level, own_bits, own_nct),
            inflater: Inflater::new(peer_bits, peer_nct),
            can_compress: own_bits >= 9,
            threshold: d.threshold,
            inflated: Vec::new(),
            inflate_in: Bytes::new(),
            tail_fed: false,
        }
    }
}

/// What one step over a compressed frame produced.
pub(super) enum Step {
    Event(Event),
    /// Go on with the next frame.
    Continue,
    /// More bytes are needed.
    NeedMore,
}

fn inflate_error(e: InflateError, limit: u64) -> ProtocolError {
    match e {
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        InflateError::TooBig => ProtocolError::MessageTooBig { limit },
    }
}

impl Connection {
    /// Validates newly inflated text of the open message.
    fn check_inflated_text(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if let Some(utf8) = self.in_msg.as_mut().and_then(|m| m.utf8.as_mut()) {
            utf8.feed(data).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// One step over a frame of a compressed message; `avail` of its bytes (unmasked) are at
    /// the front of the read buffer.
    pub(super) fn compressed_step(
        &mut self,
        mut p: PayloadState,
        mut avail: usize,
    ) -> Result<Step, ProtocolError> {
        let fin = p.header.fin;
        let level = self.config.recv_level;
        if level != RecvLevel::Chunk {
            if (avail as u64) < p.remaining {
                self.recv = RecvState::Payload(p);
                return Ok(Step::NeedMore);
            }
            self.recv = RecvState::Header;
            let raw = self.rbuf.split_to(avail);
            let limit = match level {
                RecvLevel::Message => self.config.max_message_size,
                _ => self.config.max_frame_size,
            };
            let cap = limit.map_or(usize::MAX / 2, |l| l.min(usize::MAX as u64 / 2) as usize);
            let Some(st) = self.deflate.as_deref_mut() else {
                return Err(ProtocolError::InvalidCompressedData);
            };
            let mut out = match level {
                RecvLevel::Message => std::mem::take(&mut st.inflated),
                _ => Vec::new(),
            };
            let before = out.len();
            let err = |e| inflate_error(e, limit.unwrap_or(u64::MAX));
            st.inflater.inflate_all(&raw, &mut out, cap).map_err(err)?;
            if fin {
                st.inflater.inflate_all(&TAIL, &mut out, cap).map_err(err)?;
                st.inflater.end_message();
            }
            // Our own buffer, never lent out: validated here, it stays valid.
            self.check_inflated_text(&out[before..])?;
            if level == RecvLevel::Frame {
                if fin {
                    self.finish_message()?;
                    self.pending.push_back(Event::MessageEnd);
                }
                return Ok(Step::Event(Event::Frame(Bytes::from(out))));
            }
            if !fin {
                if let Some(st) = self.deflate.as_deref_mut() {
                    st.inflated = out;
                }
                return Ok(Step::Continue);
            }
            let (kind, _) = self.finish_message()?;
            let payload = Bytes::from(out);
            let msg = match kind {
                MessageKind::Text => Message::Text(Utf8Bytes::from_validated(payload)),
                MessageKind::Binary => Message::Binary(payload),
            };
            return Ok(Step::Event(Event::Message(msg)));
        }
        // Chunk level: inflate in bounded steps as the bytes arrive.
        loop {
            let Some(st) = self.deflate.as_deref_mut() else {
                return Err(ProtocolError::InvalidCompressedData);
            };
            if !st.inflate_in.is_empty() {
                let mut out = Vec::new();
                let used = st
                    .inflater
                    .inflate(&st.inflate_in, &mut out, CHUNK_OUT)
                    .map_err(|e| inflate_error(e, u64::MAX))?;
                if used == 0 && out.is_empty() {
                    return Err(ProtocolError::InvalidCompressedData);
                }
                st.inflate_in.advance(used);
                if !out.is_empty() {
                    self.check_inflated_text(&out)?;
                    self.recv = RecvState::Payload(p);
                    return Ok(Step::Event(Event::FrameData(Bytes::from(out))));
                }
                continue;
            }
            if avail > 0 {
                st.inflate_in = self.rbuf.split_to(avail).freeze();
                p.remaining -= avail as u64;
                p.checked = 0;
                p.unmasked = 0;
                avail = 0;
                continue;
            }
            if p.remaining > 0 {
                self.recv = RecvState::Payload(p);
                return Ok(Step::NeedMore);
            }
            if fin && !st.tail_fed {
                st.tail_fed = true;
                st.inflate_in = Bytes::from_static(&TAIL);
                continue;
            }
            st.tail_fed = false;
            if fin {
                st.inflater.end_message();
            }
            self.recv = RecvState::Header;
            if fin {
                self.finish_message()?;
            }
            self.pending.push_back(Event::FrameEnd);
            if fin {
                self.pending.push_back(Event::MessageEnd);
            }
            return Ok(match self.pending.pop_front() {
                Some(e) => Step::Event(e),
                None => Step::Continue,
            });
        }
    }

    /// Compresses a whole outgoing message if compression is on and it is big enough:
    /// `Some(compressed payload)`, or `None` to send it as it is.
    pub(super) fn compress_message(&mut self, payload: &[u8]) -> Option<Bytes> {
        let st = self.deflate.as_deref_mut()?;
        if !st.can_compress || payload.len() < st.threshold {
            return None;
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        st.deflater.compress(payload, true, &mut out);
        Some(Bytes::from(out))
    }
}
