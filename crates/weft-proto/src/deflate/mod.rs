//! permessage-deflate (RFC 7692): negotiation (`negotiate.rs`) and, with the `deflate`
//! feature, the compressor and decompressor the engine runs on each message (`codec.rs`).

#[cfg(feature = "deflate")]
pub(crate) mod codec;
mod negotiate;

pub use negotiate::{Deflate, DeflateConfig, DeflateParams, NegotiationError, NAME};
