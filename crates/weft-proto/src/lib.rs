//! # weft-proto: a sans-IO WebSocket (RFC 6455) protocol engine
//!
//! Bytes in, events out; messages in, bytes out. Nothing here does I/O, uses an async
//! runtime, or reads a clock: the caller moves bytes between a transport and a
//! [`Connection`], and drives timers itself. The `weft` crate is two such drivers (tokio and
//! blocking); any event loop can be a third, using [`Connection::want_read`] and
//! [`Connection::want_write`].
//!
//! - [`frame`]: the frame header codec; [`mask`]: payload masking; [`utf8`]: incremental
//!   UTF-8 validation and zero-copy text.
//! - [`handshake`]: the opening handshake for both roles.
//! - [`extension`]: the [`Extension`](extension::Extension) trait, a transform of the
//!   messages that carry its RSV bits; [`deflate`]: permessage-deflate, negotiation and (with
//!   the `deflate` feature) [`PerMessageDeflate`](deflate) on that trait.
//! - [`Connection`]: the state machine, with three ways to send (whole message; begin /
//!   frame x N / end; a frame of declared length fed in chunks) and three levels to receive
//!   ([`RecvLevel`]: whole messages, frames, or chunks of frames).
//!
//! See the [`connection`] module for an example.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod close;
mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, RecvLevel, Role};
pub use connection::{Connection, MaskSource, MessageAssembler, OutPiece, OutQueue, RandomMask};
pub use error::{Error, ProtocolError};
pub use message::{Event, Message, MessageKind};
pub use utf8::Utf8Bytes;
