//! # weft: WebSocket connections over any byte stream
//!
//! Drivers of the [`weft_proto`] engine (re-exported as [`proto`]): they move bytes between
//! a transport and the engine, which makes every protocol decision.
//!
//! - [`tokio`]: async, over any `AsyncRead + AsyncWrite` (TCP, TLS, Unix sockets, pipes).
//! - [`blocking`]: std `Read + Write`, with a deadline per call.
//!
//! Both offer `accept` (server handshake, with a callback that sees the request and may
//! pick a subprotocol or reject), `connect` (client), attach without a handshake
//! (`from_raw`), and detach (`into_inner`).
// `unsafe` only in `uring/ring.rs` (io_uring's buffers); every other module is safe code.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod accept;
#[cfg(feature = "axum")]
pub mod axum;
pub mod blocking;
mod client;
mod error;
mod gather;
mod options;
#[cfg(feature = "server")]
pub mod server;
mod signal;
mod source;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tokio;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub mod uring;

pub use accept::{Accept, Decision, Reject};
pub use error::{Error, Result};
pub use options::Options;
pub use weft_proto as proto;
pub use weft_proto::handshake::{ClientRequest, Request, Response};
pub use weft_proto::{
    CloseCode, CloseFrame, Config, Event, Message, MessageKind, RecvLevel, Role, Utf8Bytes,
};

/// The README's examples, compiled (and run where they can) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
