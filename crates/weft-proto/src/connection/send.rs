//! The send side: the three ways to send (whole message; begin / frame x N / end; a frame of
//! declared length fed in chunks), control frames, and the order rules between them.

use super::outq::{SegKind, TAIL_CAP};
use super::{Connection, OutFrame, OutMessage};
use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use crate::config::Role;
use crate::error::Error;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::message::{Message, MessageKind};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Bytes, BytesMut};

/// The largest payload length a frame header can carry.
const MAX_PAYLOAD_LEN: u64 = (1 << 63) - 1;

fn opcode_of(kind: MessageKind) -> OpCode {
    match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    }
}

impl Connection {
    /// Queues a whole message, split into frames of at most `fragment_size` bytes if that is
    /// configured. The payload is not copied (a client's masking copies it unless the
    /// `Bytes` is uniquely owned, in which case it is masked in place).
    pub fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.check_can_send()?;
        if self.out_msg.is_some() {
            return Err(Error::InvalidArgument(
                "a message begun with begin_message is open: end it first",
            ));
        }
        let (kind, payload) = match msg {
            Message::Text(t) => (MessageKind::Text, t.into_bytes()),
            Message::Binary(b) => (MessageKind::Binary, b),
        };
        let opcode = opcode_of(kind);
        // The extension's RSV bits on the first frame mark a message it encoded.
        let (payload, rsv) = self.encode_message(kind, payload);
        match self.config.fragment_size {
            Some(size) if size > 0 && payload.len() > size => {
                let mut start = 0;
                while start < payload.len() {
                    let end = (start + size).min(payload.len());
                    let (op, rsv) = if start == 0 {
                        (opcode, rsv)
                    } else {
                        (OpCode::Continuation, 0)
                    };
                    let last = end == payload.len();
                    self.write_frame(op, last, rsv, payload.slice(start..end), last);
                    start = end;
                }
            }
            _ => self.write_frame(opcode, true, rsv, payload, true),
        }
        Ok(())
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Error> {
        self.send(Message::Text(text.into()))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send(Message::Binary(data.into()))
    }

    /// Queues one binary or text message made of several buffers, as one frame, without
    /// copying them (REQUIREMENTS S5). Text must be valid UTF-8 as a whole.
    pub fn send_vectored(&mut self, kind: MessageKind, parts: &[Bytes]) -> Result<(), Error> {
        self.check_can_send()?;
        if self.out_msg.is_some() {
            return Err(Error::InvalidArgument("a message is already open"));
        }
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if kind == MessageKind::Text {
            let mut v = Utf8Validator::new();
            for p in parts {
                v.feed(p).map_err(|_| Error::InvalidUtf8)?;
            }
            v.finish().map_err(|_| Error::InvalidUtf8)?;
        }
        self.begin_message(kind)?;
        self.begin_frame(len, true)?;
        for p in parts.iter().filter(|p| !p.is_empty()) {
            self.send_frame_data(p.clone())?;
        }
        Ok(())
    }

    /// Begins a message to be sent as explicit frames: then [`send_frame`](Self::send_frame)
    /// or [`begin_frame`](Self::begin_frame) any number of times, and
    /// [`end_message`](Self::end_message) (or a frame with `fin`). Control frames may be sent
    /// in between.
    pub fn begin_message(&mut self, kind: MessageKind) -> Result<(), Error> {
        self.check_can_send()?;
        if self.out_msg.is_some() {
            return Err(Error::InvalidArgument("a message is already open"));
        }
        self.out_msg = Some(OutMessage {
            kind,
            frames_sent: false,
            utf8: Utf8Validator::new(),
            extension: false,
        });
        Ok(())
    }

    /// Queues one frame of the open message; `fin` makes it the last one.
    ///
    /// For text, the frame may cut a code point (the rest follows in the next frame), but
    /// the bytes so far must be able to become valid UTF-8, and complete at `fin`.
    pub fn send_frame(&mut self, payload: impl Into<Bytes>, fin: bool) -> Result<(), Error> {
        self.check_can_send()?;
        if self.out_frame.is_some() {
            return Err(Error::InvalidArgument(
                "a streamed frame is open: supply its declared length first",
            ));
        }
        let payload = payload.into();
        let (opcode, utf8) = self.next_frame(&payload, fin)?;
        let Some(m) = self.out_msg.as_mut() else {
            return Err(Error::InvalidArgument(
                "no message is open: call begin_message",
            ));
        };
        m.utf8 = utf8;
        let first = !m.frames_sent;
        m.frames_sent = true;
        let (payload, rsv) = self.encode_frame(first, payload, fin);
        if fin {
            self.out_msg = None;
        }
        self.write_frame(opcode, fin, rsv, payload, fin);
        Ok(())
    }

    /// Ends the open message with an empty final frame.
    pub fn end_message(&mut self) -> Result<(), Error> {
        self.send_frame(Bytes::new(), true)
    }

    /// Begins a frame of the open message whose payload, `len` bytes in all, follows in
    /// chunks through [`send_frame_data`](Self::send_frame_data). The header goes out at
    /// once, so the payload can stream without being held. `fin` makes it the last frame.
    pub fn begin_frame(&mut self, len: u64, fin: bool) -> Result<(), Error> {
        self.check_can_send()?;
        if self.out_frame.is_some() {
            return Err(Error::InvalidArgument("a streamed frame is already open"));
        }
        if len > MAX_PAYLOAD_LEN {
            return Err(Error::InvalidArgument("frame length over 2^63 - 1"));
        }
        let Some(m) = self.out_msg.as_mut() else {
            return Err(Error::InvalidArgument(
                "no message is open: call begin_message",
            ));
        };
        let opcode = if m.frames_sent {
            OpCode::Continuation
        } else {
            opcode_of(m.kind)
        };
        if fin && len == 0 && m.kind == MessageKind::Text && m.utf8.is_partial() {
            return Err(Error::InvalidUtf8);
        }
        if m.extension {
            return Err(Error::InvalidArgument(
                "a message the extension encodes cannot have a frame of declared length",
            ));
        }
        m.frames_sent = true;
        let mask = self.next_mask();
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hb);
        let done = len == 0;
        if !done {
            // The header of a frame that streams: a segment boundary of its own.
            self.out.freeze_tail();
        }
        self.out.push_data(&hb[..n], true, done && fin);
        if done {
            if fin {
                self.out_msg = None;
            }
        } else {
            self.out_frame = Some(OutFrame {
                remaining: len,
                fin,
                mask,
                mask_pos: 0,
            });
        }
        Ok(())
    }

    /// Supplies the next chunk of the open streamed frame. More than the declared length is
    /// an error; when the declared length is reached the frame is complete.
    pub fn send_frame_data(&mut self, chunk: impl Into<Bytes>) -> Result<(), Error> {
        self.check_can_send()?;
        let chunk = chunk.into();
        let Some(mut f) = self.out_frame else {
            return Err(Error::InvalidArgument(
                "no streamed frame is open: call begin_frame",
            ));
        };
        if chunk.len() as u64 > f.remaining {
            return Err(Error::InvalidArgument(
                "chunk longer than what is left of the frame's declared length",
            ));
        }
        let completes = chunk.len() as u64 == f.remaining;
        let Some(m) = self.out_msg.as_mut() else {
            return Err(Error::InvalidArgument("no message is open"));
        };
        if m.kind == MessageKind::Text {
            let mut v = m.utf8.clone();
            v.feed(&chunk).map_err(|_| Error::InvalidUtf8)?;
            if completes && f.fin && v.is_partial() {
                return Err(Error::InvalidUtf8);
            }
            m.utf8 = v;
        }
        let msg_end = completes && f.fin;
        f.remaining -= chunk.len() as u64;
        let len = chunk.len();
        match f.mask {
            Some(key) => {
                let pos = f.mask_pos;
                f.mask_pos = (pos + len) & 3;
                if len <= self.config.coalesce_threshold {
                    let tail = self.out.tail_mut(false, len);
                    let start = tail.len();
                    tail.extend_from_slice(&chunk);
                    apply_mask(&mut tail[start..], key, pos);
                    self.out.tail_written(len, msg_end);
                } else {
                    self.out
                        .push_segment(mask_owned(chunk, key, pos), false, msg_end);
                }
            }
            None => {
                if len <= self.config.coalesce_threshold {
                    self.out.push_data(&chunk, false, msg_end);
                } else {
                    self.out.push_segment(chunk, false, msg_end);
                }
            }
        }
        if completes {
            self.out_frame = None;
            if f.fin {
                self.out_msg = None;
            }
            self.out.release_held();
            if let Some(reply) = self.close_reply.take() {
                self.queue_close(reply);
            }
        } else {
            self.out_frame = Some(f);
        }
        Ok(())
    }

    /// Queues a ping (payload at most 125 bytes). It goes out ahead of queued data, at the
    /// next frame boundary.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_len(payload)?;
        self.queue_control(OpCode::Ping, payload, SegKind::Control);
        Ok(())
    }

    /// Queues an unsolicited pong (payload at most 125 bytes), e.g. as a heartbeat or when
    /// `auto_pong` is off and the application answers pings itself.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_len(payload)?;
        self.queue_control(OpCode::Pong, payload, SegKind::Control);
        Ok(())
    }

    /// Starts the close handshake: queues a close frame with `code` and `reason` (at most
    /// 123 bytes). Nothing more can be sent after it; receiving goes on until the peer's
    /// close arrives. Codes 1005, 1006 and 1015, and codes outside the ranges RFC 6455
    /// allows, are rejected.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.check_can_send()?;
        if !code.is_sendable() {
            return Err(Error::InvalidArgument("this close code may not be sent"));
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(Error::InvalidArgument("close reason over 123 bytes"));
        }
        if self.out_frame.is_some() {
            return Err(Error::InvalidArgument(
                "a streamed frame is open: supply its declared length before closing",
            ));
        }
        self.queue_close(CloseFrame::new(code, reason));
        Ok(())
    }

    /// Queues a close frame after all queued data and records it as sent. Code 1005 means an
    /// empty payload.
    pub(super) fn queue_close(&mut self, frame: CloseFrame) {
        let payload = if frame.code == CloseCode::NO_STATUS {
            Bytes::new()
        } else {
            frame.encode()
        };
        let frame_bytes = self.frame_control(OpCode::Close, &payload);
        self.out.push_last(frame_bytes);
        self.close_sent = Some(frame);
        self.out_msg = None;
    }

    /// Frames a control payload and queues it ahead of data, at a frame boundary.
    pub(super) fn queue_control(&mut self, opcode: OpCode, payload: &[u8], kind: SegKind) {
        let frame = self.frame_control(opcode, payload);
        self.out.push_control(frame, kind, self.out_frame.is_some());
    }

    /// A whole control frame, masked for a client.
    fn frame_control(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        let mask = self.next_mask();
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hb);
        let mut frame = BytesMut::with_capacity(n + payload.len());
        frame.extend_from_slice(&hb[..n]);
        frame.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut frame[n..], key, 0);
        }
        frame.freeze()
    }

    /// Checks the next explicit frame of the open message: its opcode, and the UTF-8 state
    /// after it (returned, so nothing changes when the frame is refused).
    fn next_frame(&self, payload: &[u8], fin: bool) -> Result<(OpCode, Utf8Validator), Error> {
        let Some(m) = self.out_msg.as_ref() else {
            return Err(Error::InvalidArgument(
                "no message is open: call begin_message",
            ));
        };
        let mut v = m.utf8.clone();
        if m.kind == MessageKind::Text {
            v.feed(payload).map_err(|_| Error::InvalidUtf8)?;
            if fin && v.is_partial() {
                return Err(Error::InvalidUtf8);
            }
        }
        let opcode = if m.frames_sent {
            OpCode::Continuation
        } else {
            opcode_of(m.kind)
        };
        Ok((opcode, v))
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(self.mask_source.next_key()),
            Role::Server => None,
        }
    }

    /// Frames and queues one whole data frame: small ones are copied into the coalescing
    /// buffer (masked while copying), large payloads are queued as they are.
    #[inline(always)]
    fn write_frame(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: Bytes, msg_end: bool) {
        let mask = self.next_mask();
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        // A client must copy a payload it shares with others to mask it: into the coalescing
        // buffer then, rather than into an allocation of its own.
        let coalesce = payload.len() <= self.config.coalesce_threshold
            || (mask.is_some() && payload.len() <= TAIL_CAP && !payload.is_unique());
        if coalesce {
            let mut hb = [0u8; MAX_HEADER_LEN];
            let n = header.encode(&mut hb);
            self.coalesce_frame(&hb[..n], &payload, mask, msg_end);
        } else {
            let payload = match mask {
                Some(key) => mask_owned(payload, key, 0),
                None => payload,
            };
            let (word, n) = header.encode_word();
            self.out.push_frame(word.to_le_bytes(), n, payload, msg_end);
        }
    }

    /// Copies a whole frame (`head`, then `payload`, masked with `mask`) into the coalescing
    /// buffer.
    #[inline(always)]
    fn coalesce_frame(
        &mut self,
        head: &[u8],
        payload: &[u8],
        mask: Option<[u8; 4]>,
        msg_end: bool,
    ) {
        let n = head.len();
        let tail = self.out.tail_mut(true, n + payload.len());
        let start = tail.len();
        tail.extend_from_slice(head);
        tail.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut tail[start + n..], key, 0);
        }
        self.out.tail_written(n + payload.len(), msg_end);
    }
}

fn check_control_len(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > 125 {
        return Err(Error::InvalidArgument(
            "control frame payload over 125 bytes",
        ));
    }
    Ok(())
}

/// Masks a payload, in place when the `Bytes` is uniquely owned, else into a copy.
fn mask_owned(payload: Bytes, key: [u8; 4], pos: usize) -> Bytes {
    let mut owned = payload
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    apply_mask(&mut owned, key, pos);
    owned.freeze()
}
