//! permessage-deflate (RFC 7692): negotiation here; compression of messages in the engine
//! is the next step (see the project's issue on it).

mod negotiate;

pub use negotiate::{DeflateConfig, DeflateParams, NegotiationError, NAME};
