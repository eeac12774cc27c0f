//! Extensions (RFC 6455 §9): a transform of the payloads of the messages that carry the
//! extension's RSV bits, run by the engine as the frames pass.
//!
//! An [`Extension`] is a pure byte transform, in the spirit of the engine itself: no I/O, no
//! clock, no allocation of its own for the output (it appends to a `Vec<u8>` the engine
//! passes). The engine holds at most one, installed with
//! [`Connection::with_extension`](crate::Connection::with_extension) or
//! [`Connection::set_extension`](crate::Connection::set_extension) after the handshake
//! negotiated it; permessage-deflate ([`Config::deflate`](crate::Config), or
//! `PerMessageDeflate` in [`deflate`](crate::deflate), with the `deflate` feature) is
//! one. (RFC 6455 §9.1 lets several extensions be negotiated, applied in the order they were
//! negotiated; one extension that runs the others in that order would be the way to do it
//! here, if ever needed.)
//!
//! **Receiving.** The extension's RSV bits on the first frame of a message (the engine
//! refuses them on continuation and control frames, and any RSV bit no one uses) mark the
//! message as the extension's: [`start_decode`](Extension::start_decode), then
//! [`decode`](Extension::decode) for the payload bytes of each of its frames, as they pass.
//! At the message and frame levels each frame is decoded when it is complete; at the chunk
//! level bytes are decoded as they arrive, so a message of any size streams. Each call gets
//! an output bound, so a small input cannot make a huge output at once (a "bomb"): where the
//! engine buffers, a decoded frame or message past the size limits ends the connection with
//! 1009; at the chunk level the output is handed out in bounded pieces. Text is validated as
//! UTF-8 after decoding. A message without the extension's bits never reaches it (and costs
//! nothing more than one bit test per frame).
//!
//! **Sending.** For each outgoing message the engine asks
//! [`start_encode`](Extension::start_encode) whether to transform it (the RSV bits to set on
//! its first frame, or 0), then hands [`encode`](Extension::encode) the payload: a whole
//! message for [`send`](crate::Connection::send) (fragmented afterwards if
//! `fragment_size` asks), or each frame of
//! [`send_frame`](crate::Connection::send_frame) as it is sent. A message whose first frame
//! is of declared length ([`begin_frame`](crate::Connection::begin_frame)) is sent as it
//! is, since its length must be known before its payload.
//!
//! ```
//! use weft_proto::extension::{Boundary, Extension, ExtensionError, Progress};
//! use weft_proto::{Config, Connection, Event, Message, MessageKind, Role};
//!
//! /// XORs every payload byte with a constant: messages with RSV2.
//! struct Xor(u8);
//!
//! impl Extension for Xor {
//!     fn rsv(&self) -> u8 {
//!         0b010
//!     }
//!     fn decode(
//!         &mut self,
//!         input: &[u8],
//!         _end: Boundary,
//!         out: &mut Vec<u8>,
//!         max: usize,
//!     ) -> Result<Progress, ExtensionError> {
//!         let n = input.len().min(max);
//!         out.extend(input[..n].iter().map(|b| b ^ self.0));
//!         Ok(Progress { consumed: n, done: n == input.len() })
//!     }
//!     fn start_encode(&mut self, _kind: MessageKind, _len: Option<u64>) -> u8 {
//!         0b010
//!     }
//!     fn encode(&mut self, input: &[u8], _end: Boundary, out: &mut Vec<u8>) {
//!         out.extend(input.iter().map(|b| b ^ self.0));
//!     }
//! }
//!
//! let mut client = Connection::with_extension(Role::Client, Config::default(), Box::new(Xor(0x5a)));
//! let mut server = Connection::with_extension(Role::Server, Config::default(), Box::new(Xor(0x5a)));
//! client.send(Message::from("hello")).unwrap();
//! let out = client.outgoing();
//! let wire = bytes::Buf::copy_to_bytes(out, bytes::Buf::remaining(out));
//! assert_eq!(wire[0] & 0x70, 0b010 << 4); // RSV2 on the wire
//! server.receive(&wire);
//! assert_eq!(server.poll_event().unwrap(), Some(Event::Message(Message::from("hello"))));
//! ```

use crate::close::CloseCode;
use crate::message::MessageKind;
use std::fmt;

/// Where the input handed to [`Extension::decode`] or [`Extension::encode`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Boundary {
    /// More of the same frame follows (decoding at the chunk level only).
    None,
    /// The input ends a frame, and more frames of the message follow.
    Frame,
    /// The input ends the message (its final frame).
    Message,
}

/// How far one [`Extension::decode`] call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Bytes of the input used; the engine hands the rest back at the next call.
    pub consumed: usize,
    /// All of the input was used and all the output it makes was appended (and, at a
    /// [`Boundary::Frame`] or [`Boundary::Message`], the frame or message is finished).
    /// `false`: call again, with the unused input, once there is room for more output.
    pub done: bool,
}

/// Received data an extension cannot decode. The engine fails the connection with
/// [`ProtocolError::Extension`](crate::ProtocolError::Extension), whose close frame carries
/// `code` and `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ExtensionError {
    /// The close code to send: 1007 ([`CloseCode::INVALID_PAYLOAD`]) for data that is not
    /// what the extension expects. A code that may not be sent (1005, 1006, 1015, or one
    /// outside the ranges RFC 6455 allows) is replaced by 1002.
    pub code: CloseCode,
    /// The close reason: short (a close reason is at most 123 bytes; a longer one is cut).
    pub reason: &'static str,
}

impl ExtensionError {
    /// An error with a close code and a reason.
    pub const fn new(code: CloseCode, reason: &'static str) -> Self {
        ExtensionError { code, reason }
    }

    /// Invalid data (close code 1007) with a reason.
    pub const fn invalid_data(reason: &'static str) -> Self {
        ExtensionError::new(CloseCode::INVALID_PAYLOAD, reason)
    }
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ExtensionError {}

/// A WebSocket extension that transforms the payloads of the messages carrying its RSV bits
/// (see the [module](self) documentation for when the engine calls what).
///
/// Object safe: the engine holds it as a `Box<dyn Extension>`.
pub trait Extension: Send {
    /// The RSV bits this extension uses (RSV1 = `0b100`, RSV2 = `0b010`, RSV3 = `0b001`).
    /// Read once, when the extension is installed.
    fn rsv(&self) -> u8;

    /// A received message whose first frame carries some of [`rsv`](Self::rsv) begins;
    /// `rsv` is all the RSV bits of that frame. Its payload follows through
    /// [`decode`](Self::decode). An error fails the connection. By default, nothing to do.
    fn start_decode(&mut self, kind: MessageKind, rsv: u8) -> Result<(), ExtensionError> {
        let _ = (kind, rsv);
        Ok(())
    }

    /// Decodes received payload bytes of the current message, appending at most `max` bytes
    /// to `out` (the engine's bound: where it buffers, it gives one byte more than the size
    /// limit allows and ends the connection with 1009 if the output reaches it).
    ///
    /// `input` is the payload (unmasked) that has not been used yet; `end` says whether it
    /// reaches the end of its frame or message. Return how much was used and whether
    /// everything is done: when not done, the engine calls again (with the unused input and
    /// the same `end`) after it has taken the output, so each call must make progress (use
    /// input or append output) unless `out` is full; a call that does neither while not done
    /// fails the connection (1011). After a `done` at [`Boundary::Message`] the next call is
    /// for a new message.
    fn decode(
        &mut self,
        input: &[u8],
        end: Boundary,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Progress, ExtensionError>;

    /// An outgoing message of `kind` begins: the RSV bits to set on its first frame, or 0
    /// to send it as it is (then [`encode`](Self::encode) is not called for it). Bits that
    /// are not in [`rsv`](Self::rsv) are ignored. `len` is the whole payload's length for
    /// [`send`](crate::Connection::send), `None` for a message sent frame by frame.
    fn start_encode(&mut self, kind: MessageKind, len: Option<u64>) -> u8;

    /// Encodes the payload of an outgoing frame, or a whole message, appending to `out`.
    /// `end` is [`Boundary::Frame`] when more frames of the message follow,
    /// [`Boundary::Message`] at its end (never [`Boundary::None`]).
    fn encode(&mut self, input: &[u8], end: Boundary, out: &mut Vec<u8>);
}
