//! The error type of the drivers.

use std::fmt;
use std::io;
use weft_proto::handshake::HandshakeError;
use weft_proto::{CloseCode, ProtocolError};

/// What went wrong with a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    Io(io::Error),
    /// The peer broke the protocol; a close frame with [`ProtocolError::close_code`] was
    /// sent (if the transport still took it).
    Protocol(ProtocolError),
    /// The opening handshake failed (as server: the client got the 4xx of
    /// [`HandshakeError::status`]).
    Handshake(HandshakeError),
    /// The connection is closed: the close handshake is over, or a close was sent and no
    /// more can be sent.
    Closed,
    /// The peer closed the transport without a close frame (close status 1006).
    ConnectionReset,
    /// A deadline or timeout expired. For the blocking driver, if the operation had done
    /// part of its work the connection is [`Broken`](Error::Broken) afterwards.
    Timeout,
    /// An earlier operation failed half way (a partial write, a timeout inside a frame);
    /// the connection can no longer be used.
    Broken,
    /// The call is not valid now or with these arguments (the connection is unchanged).
    InvalidArgument(&'static str),
    /// Text to send is not valid UTF-8 (the connection is unchanged).
    InvalidUtf8,
    /// A typed receive got a message of the other kind (REQUIREMENTS V5).
    WrongKind,
    /// The server's answer to our extension offer breaks its rules (RFC 7692 for
    /// permessage-deflate).
    Negotiation(weft_proto::deflate::NegotiationError),
    /// The message does not fit in the caller's buffer; `needed` bytes are required. The
    /// message is consumed.
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
}

impl Error {
    /// The close code that goes with this error, if it is a protocol violation.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(p) => Some(p.close_code()),
            _ => None,
        }
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Protocol(p) => write!(f, "protocol violation: {p}"),
            Error::Handshake(h) => write!(f, "handshake failed: {h}"),
            Error::Closed => f.write_str("connection closed"),
            Error::ConnectionReset => f.write_str("connection closed without a close frame"),
            Error::Timeout => f.write_str("timed out"),
            Error::Broken => f.write_str("connection broken by an earlier failed operation"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            Error::WrongKind => f.write_str("message of the other kind"),
            Error::Negotiation(e) => write!(f, "extension negotiation failed: {e}"),
            Error::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the message needs {needed} bytes")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(p) => Some(p),
            Error::Handshake(h) => Some(h),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout,
            _ => Error::Io(e),
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<weft_proto::Error> for Error {
    fn from(e: weft_proto::Error) -> Self {
        match e {
            weft_proto::Error::Protocol(p) => Error::Protocol(p),
            weft_proto::Error::InvalidArgument(a) => Error::InvalidArgument(a),
            weft_proto::Error::InvalidUtf8 => Error::InvalidUtf8,
            weft_proto::Error::Closed => Error::Closed,
            weft_proto::Error::Handshake(h) => Error::Handshake(h),
            _ => Error::InvalidArgument("unknown engine error"),
        }
    }
}

/// The result type of the drivers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
