//! # weft: WebSocket connections over any byte stream
//!
//! This crate will hold the I/O drivers of the [`weft_proto`] engine: async (tokio) and
//! blocking connections, client connect and server accept, TLS, and an HTTP server that
//! upgrades connections. It moves bytes only; every protocol decision is made by
//! `weft-proto`, re-exported here as [`proto`].
//!
//! Status: the drivers are the subject of the next issue; today this crate re-exports the
//! engine so that dependants can already name its types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use weft_proto as proto;
pub use weft_proto::{CloseCode, CloseFrame, Config, Message, MessageKind, Role};
