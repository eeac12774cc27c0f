//! The server's decision on a handshake request, shared by both drivers: accept (with a
//! subprotocol and extra headers) or reject with a status.

use crate::options::Options;
use http::StatusCode;
use weft_proto::handshake::{reject_bytes, reject_for, rejection_for, write_response, Request};
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

/// The answer to `request` that `decision` leads to: the handshake response (101, or 200
/// for an HTTP/2 extended CONNECT) with the engine configuration the connection goes on
/// with (permessage-deflate, if `options` allow it and the client offered it acceptably);
/// or the refusal to send instead.
#[allow(clippy::result_large_err)] // built once per handshake, answered at once
pub(crate) fn negotiate(
    request: &Request,
    decision: Decision,
    options: &Options,
) -> Result<(http::Response<()>, Config), http::Response<String>> {
    // An HTTP/2 refusal carries no `Connection` header.
    let version = if request.is_extended_connect() {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let accept = decision.map_err(|reject| reject_for(reject.status, &reject.reason, version))?;
    let mut config = options.config.clone();
    let mut builder = request.accept();
    if let Some(d) = &options.deflate {
        if let Some((params, response)) = d.negotiate(request.extensions()) {
            builder = builder.extensions(&[response]);
            config.deflate = Some(d.with_params(params));
        }
    }
    if let Some(p) = &accept.protocol {
        builder = builder.protocol(p);
    }
    for (name, value) in &accept.headers {
        builder = builder.header(name, value);
    }
    match builder.build() {
        Ok(response) => Ok((response, config)),
        Err(e) => Err(rejection_for(&e, version)),
    }
}

/// The bytes to send for `decision`, whether the connection goes on (101), and the engine
/// configuration it goes on with.
pub(crate) fn respond(
    request: &Request,
    decision: Decision,
    options: &Options,
) -> (Vec<u8>, bool, Config) {
    match negotiate(request, decision, options) {
        Ok((response, config)) => {
            let mut out = Vec::new();
            write_response(&response, &mut out);
            (out, true, config)
        }
        Err(refusal) => {
            let out = reject_bytes(refusal.status(), refusal.body());
            (out, false, options.config.clone())
        }
    }
}
