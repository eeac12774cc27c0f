//! The client side of the handshake, shared by both drivers: the request for a URL (with
//! the permessage-deflate offer when enabled) and the engine configuration a response
//! leads to.

use crate::error::{Error, Result};
use crate::options::Options;
use weft_proto::handshake::{ClientRequest, Response};
use weft_proto::Config;

/// The request for `url`, offering permessage-deflate if `options.deflate` is set.
pub(crate) fn request_for(url: &str, options: &Options) -> Result<ClientRequest> {
    let mut builder = ClientRequest::builder(url);
    if let Some(d) = &options.deflate {
        builder = builder.extensions(&[d.offer()]);
    }
    Ok(builder.build()?)
}

/// The engine configuration after `response`: permessage-deflate on if the server accepted
/// our offer; an error if its answer breaks RFC 7692 (the connection must fail).
pub(crate) fn config_after(response: &Response, options: &Options) -> Result<Config> {
    let mut config = options.config.clone();
    if let Some(d) = &options.deflate {
        if let Some(params) = d
            .accept_response(response.extensions())
            .map_err(Error::Negotiation)?
        {
            config.deflate = Some(d.with_params(params));
        }
    }
    Ok(config)
}
