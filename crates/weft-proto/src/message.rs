//! Messages and the events the engine reports.

use crate::close::CloseFrame;
use crate::frame::FrameHeader;
use crate::utf8::Utf8Bytes;
use bytes::Bytes;

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Binary data (opcode 0x2).
    Binary,
}

/// A whole data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, validated UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload bytes (for text, its UTF-8).
    pub fn payload(&self) -> &Bytes {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload bytes, taken.
    pub fn into_payload(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}

/// What the engine reports as it processes received bytes. Which data events appear depends
/// on the connection's [`RecvLevel`](crate::RecvLevel); control events appear at every level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message ([`RecvLevel::Message`](crate::RecvLevel::Message)).
    Message(Message),
    /// A data message begins (frame and chunk levels).
    MessageStart {
        /// Text or binary.
        kind: MessageKind,
        /// The RSV bits of its first frame (for an extension).
        rsv: u8,
    },
    /// One whole frame's payload, unmasked (frame level). For text, a code point may be cut
    /// at its edges; the message as a whole has been validated up to here.
    Frame(Bytes),
    /// A data frame begins, with its header (chunk level). The mask key has been removed
    /// from the data that follows.
    FrameStart(FrameHeader),
    /// The next chunk of the current frame's payload, unmasked (chunk level).
    FrameData(Bytes),
    /// The current frame ended (chunk level).
    FrameEnd,
    /// The current message ended (frame and chunk levels); for text, its UTF-8 was complete.
    MessageEnd,
    /// A ping arrived. With `auto_pong` the pong is already queued.
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// The peer's close frame (`None`: it carried no status, which reads as 1005). With
    /// `auto_close` the reply is already queued. No events follow.
    Close(Option<CloseFrame>),
}
