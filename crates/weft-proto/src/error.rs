//! The engine's errors. A protocol violation carries the close code the engine sends for it.

use crate::close::CloseCode;
use crate::extension::ExtensionError;
use crate::frame::HeaderError;
use crate::handshake::HandshakeError;
use std::fmt;

/// What the peer did wrong. Each violation maps to the close code of RFC 6455 §7.4.1
/// ([`close_code`](Self::close_code)) that the engine sends before it stops (or, for an
/// extension's error, the code the extension chose).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame header broke the framing rules (reserved opcode, non-minimal or too large length).
    Header(HeaderError),
    /// RSV bits set that no negotiated extension uses.
    ReservedBits(u8),
    /// A server received an unmasked frame.
    UnmaskedFrame,
    /// A client received a masked frame.
    MaskedFrame,
    /// A control frame with FIN clear.
    FragmentedControl,
    /// A control frame with a payload over 125 bytes.
    ControlTooLong(u64),
    /// A continuation frame with no message open.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is open.
    ExpectedContinuation,
    /// A close frame with a 1-byte payload.
    InvalidClosePayload,
    /// A close frame with a code that may not be sent.
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8.
    InvalidCloseReason,
    /// A text message that is not UTF-8 (checked as it arrives).
    InvalidUtf8,
    /// The installed [`Extension`](crate::extension::Extension) could not decode a message
    /// (for permessage-deflate: not a valid deflate stream, 1007); the close frame carries
    /// its code and reason.
    Extension(ExtensionError),
    /// A frame over the configured frame size limit.
    FrameTooBig {
        /// The frame's payload length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A message over the configured message size limit.
    MessageTooBig {
        /// The limit.
        limit: u64,
    },
}

impl ProtocolError {
    /// The close code sent for this violation: 1007 for bad UTF-8, 1009 for a size limit,
    /// the extension's own code for an extension's error, 1002 for the rest.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooBig { .. } | ProtocolError::MessageTooBig { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            ProtocolError::Extension(e) if e.code.is_sendable() => e.code,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame (well under 123 bytes).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ProtocolError::Header(HeaderError::ReservedOpcode(_)) => "reserved opcode",
            ProtocolError::Header(_) => "invalid payload length",
            ProtocolError::ReservedBits(_) => "reserved bits set",
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::MaskedFrame => "server frame masked",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong(_) => "control frame too long",
            ProtocolError::UnexpectedContinuation => "continuation with no message",
            ProtocolError::ExpectedContinuation => "expected a continuation frame",
            ProtocolError::InvalidClosePayload => "close payload of 1 byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidCloseReason => "close reason not UTF-8",
            ProtocolError::InvalidUtf8 => "text not UTF-8",
            ProtocolError::Extension(e) => cut_reason(e.reason),
            ProtocolError::FrameTooBig { .. } => "frame too big",
            ProtocolError::MessageTooBig { .. } => "message too big",
        }
    }
}

/// `reason` cut to fit a close frame (at most 123 bytes, at a character boundary).
fn cut_reason(reason: &'static str) -> &'static str {
    let mut end = reason.len().min(crate::close::MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Header(e) => write!(f, "{e}"),
            ProtocolError::ReservedBits(r) => {
                write!(f, "RSV bits {r:#05b} set without an extension")
            }
            ProtocolError::ControlTooLong(n) => write!(f, "control frame of {n} bytes (max 125)"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::FrameTooBig { len, limit } => {
                write!(f, "frame of {len} bytes over the limit of {limit}")
            }
            ProtocolError::MessageTooBig { limit } => {
                write!(f, "message over the limit of {limit} bytes")
            }
            other => f.write_str(other.reason()),
        }?;
        write!(f, " (close code {})", self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        ProtocolError::Header(e)
    }
}

/// An error from the engine.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol. The engine queued a close frame with
    /// [`ProtocolError::close_code`] and reads and writes nothing more after it.
    Protocol(ProtocolError),
    /// The call was invalid in this state or with these arguments (a message not begun, a
    /// chunk longer than its frame's declared length, a control payload over 125 bytes...);
    /// the connection is unchanged.
    InvalidArgument(&'static str),
    /// Text that is not valid UTF-8 was given to send; the connection is unchanged.
    InvalidUtf8,
    /// The connection is closed for sending (a close frame was sent) or for receiving.
    Closed,
    /// The opening handshake failed.
    Handshake(HandshakeError),
}

impl Error {
    /// The close code that goes with this error, if it is a protocol violation.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(p) => Some(p.close_code()),
            _ => None,
        }
    }

    /// Whether this is a size limit (close code 1009).
    pub fn is_too_big(&self) -> bool {
        self.close_code() == Some(CloseCode::MESSAGE_TOO_BIG)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(p) => write!(f, "protocol violation: {p}"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::InvalidUtf8 => f.write_str("text to send is not valid UTF-8"),
            Error::Closed => f.write_str("connection closed"),
            Error::Handshake(h) => write!(f, "handshake failed: {h}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Protocol(p) => Some(p),
            Error::Handshake(h) => Some(h),
            _ => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}
