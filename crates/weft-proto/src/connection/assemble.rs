//! The default message assembly, usable on its own (REQUIREMENTS V4): an application that
//! receives at the frame or chunk level can hand events back to it and get whole messages.

use crate::error::{Error, ProtocolError};
use crate::message::{Event, Message, MessageKind};
use crate::utf8::Utf8Bytes;
use bytes::BytesMut;

/// Builds whole messages from frame-level or chunk-level events.
///
/// ```
/// use weft_proto::{Event, Message, MessageKind, MessageAssembler};
/// let mut asm = MessageAssembler::new(Some(1 << 20));
/// assert_eq!(asm.push(&Event::MessageStart { kind: MessageKind::Text, rsv: 0 }).unwrap(), None);
/// assert_eq!(asm.push(&Event::Frame("hel".into())).unwrap(), None);
/// assert_eq!(asm.push(&Event::Frame("lo".into())).unwrap(), None);
/// assert_eq!(asm.push(&Event::MessageEnd).unwrap(), Some(Message::from("hello")));
/// ```
#[derive(Debug, Default)]
pub struct MessageAssembler {
    kind: Option<MessageKind>,
    buf: BytesMut,
    limit: Option<u64>,
}

impl MessageAssembler {
    /// An assembler that refuses messages over `limit` bytes (close code 1009).
    pub fn new(limit: Option<u64>) -> Self {
        MessageAssembler {
            kind: None,
            buf: BytesMut::new(),
            limit,
        }
    }

    /// Whether a message is being assembled.
    pub fn is_open(&self) -> bool {
        self.kind.is_some()
    }

    /// Takes one event. Data events add to the message; `MessageEnd` returns it whole.
    /// Control events and frame boundaries are ignored (`Ok(None)`).
    pub fn push(&mut self, event: &Event) -> Result<Option<Message>, Error> {
        match event {
            Event::MessageStart { kind, .. } => {
                if self.kind.is_some() {
                    return Err(Error::InvalidArgument(
                        "a message is already being assembled",
                    ));
                }
                self.kind = Some(*kind);
                self.buf.clear();
                Ok(None)
            }
            Event::Frame(data) | Event::FrameData(data) => {
                if self.kind.is_none() {
                    return Err(Error::InvalidArgument("data before MessageStart"));
                }
                let size = (self.buf.len() + data.len()) as u64;
                if let Some(limit) = self.limit {
                    if size > limit {
                        self.kind = None;
                        self.buf.clear();
                        return Err(Error::Protocol(ProtocolError::MessageTooBig { limit }));
                    }
                }
                self.buf.extend_from_slice(data);
                Ok(None)
            }
            Event::MessageEnd => {
                let Some(kind) = self.kind.take() else {
                    return Err(Error::InvalidArgument("MessageEnd before MessageStart"));
                };
                let payload = self.buf.split().freeze();
                Ok(Some(match kind {
                    MessageKind::Binary => Message::Binary(payload),
                    MessageKind::Text => Message::Text(
                        Utf8Bytes::try_from(payload)
                            .map_err(|_| Error::Protocol(ProtocolError::InvalidUtf8))?,
                    ),
                }))
            }
            _ => Ok(None),
        }
    }
}
