//! permessage-deflate (RFC 7692): negotiation (`negotiate.rs`) and, with the `deflate`
//! feature, the compressor and decompressor (`codec.rs`) that `PerMessageDeflate`, the
//! engine's [`Extension`](crate::extension::Extension), runs on each message
//! (`permessage.rs`).

#[cfg(feature = "deflate")]
pub(crate) mod codec;
mod negotiate;
#[cfg(feature = "deflate")]
mod permessage;

pub use negotiate::{Deflate, DeflateConfig, DeflateParams, NegotiationError, NAME};
#[cfg(feature = "deflate")]
pub use permessage::PerMessageDeflate;
