//! The server's decision on a handshake request, shared by both drivers: accept (with a
//! subprotocol and extra headers) or reject with a status.

use crate::options::Options;
use http::StatusCode;
use weft_proto::handshake::{reject_bytes, rejection_bytes, Request};
use weft_proto::Config;

/// Accept the connection, optionally with a subprotocol and extra response headers.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    protocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl Accept {
    /// Accept with nothing extra.
    pub fn new() -> Self {
        Accept::default()
    }

    /// Select this subprotocol (it must be one the client offered).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Add a header to the 101 response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Refuse the connection with an HTTP status and a reason (sent as the body).
#[derive(Debug, Clone)]
pub struct Reject {
    status: StatusCode,
    reason: String,
}

impl Reject {
    /// Refuse with `status` (a 4xx or 5xx) and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Reject {
            status,
            reason: reason.into(),
        }
    }
}

/// The application's decision on a request. `Ok(Accept::new())` accepts it as it is.
pub type Decision = Result<Accept, Reject>;

/// The bytes to send for `decision`, whether the connection goes on (101), and the engine
/// configuration it goes on with (permessage-deflate, if `options` allow it and the client
/// offered it acceptably).
pub(crate) fn respond(
    request: &Request,
    decision: Decision,
    options: &Options,
) -> (Vec<u8>, bool, Config) {
    let mut config = options.config.clone();
    let negotiated = options.deflate.as_ref().and_then(|d| {
        d.negotiate(request.extensions())
            .map(|(p, r)| (d.with_params(p), r))
    });
    match decision {
        Ok(accept) => {
            let mut builder = request.accept();
            if let Some((settings, response)) = negotiated {
                builder = builder.extensions(&[response]);
                config.deflate = Some(settings);
            }
            if let Some(p) = &accept.protocol {
                builder = builder.protocol(p);
            }
            for (name, value) in &accept.headers {
                builder = builder.header(name, value);
            }
            let mut out = Vec::new();
            match builder.write(&mut out) {
                Ok(()) => (out, true, config),
                Err(e) => (rejection_bytes(&e), false, config),
            }
        }
        Err(reject) => (reject_bytes(reject.status, &reject.reason), false, config),
    }
}
