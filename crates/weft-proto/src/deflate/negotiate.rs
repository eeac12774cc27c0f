//! permessage-deflate negotiation (RFC 7692 §5, §7): the client's offer, the server's choice
//! among offers, and the client's check of the response.

use crate::handshake::ExtensionOffer;
use std::fmt;

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// What one end wants from permessage-deflate. As a client: what to offer. As a server:
/// what to accept and to ask of the client.
///
/// ```
/// use weft_proto::deflate::DeflateConfig;
/// let client = DeflateConfig::default();
/// let offer = client.offer();
/// assert_eq!(offer.to_string(), "permessage-deflate; client_max_window_bits");
/// let server = DeflateConfig::default();
/// let (params, response) = server.negotiate(&[offer]).expect("accepted");
/// assert_eq!(params.client_max_window_bits, 15);
/// assert_eq!(client.accept_response(&[response]).unwrap(), Some(params));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The server compresses each message on its own (no sliding window kept between
    /// messages). A client asks for it; a server may choose it. Default false.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own. A client offers it; a server may ask
    /// for it. Default false.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8-15 (2^bits bytes). A client asks for at most this; a
    /// server uses at most this. `None`: 15. Default `None`.
    pub server_max_window_bits: Option<u8>,
    /// The client's LZ77 window, 8-15. A client offers this (`None`: the valueless
    /// `client_max_window_bits`, meaning "any value is fine"); a server asks the client for
    /// at most this, if the client's offer allows it. Default `None`.
    pub client_max_window_bits: Option<u8>,
    /// The zlib compression level, 0-9. Default 1 (the fastest that compresses).
    pub level: u32,
    /// Messages smaller than this are sent uncompressed. Default 64 bytes.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            level: 1,
            threshold: 64,
        }
    }
}

/// The negotiated parameters, as both ends apply them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's window bits (8-15).
    pub server_max_window_bits: u8,
    /// The client's window bits (8-15).
    pub client_max_window_bits: u8,
}

/// permessage-deflate as a connection runs it: the negotiated parameters and this end's
/// compression settings. Put it in [`Config::deflate`](crate::Config) after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// What was negotiated.
    pub params: DeflateParams,
    /// The zlib level for outgoing messages (0-9).
    pub level: u32,
    /// Outgoing messages smaller than this are sent uncompressed.
    pub threshold: usize,
}

impl DeflateConfig {
    /// The settings a connection runs with, once `params` were negotiated.
    pub fn with_params(&self, params: DeflateParams) -> Deflate {
        Deflate {
            params,
            level: self.level,
            threshold: self.threshold,
        }
    }
}

/// Why a server's permessage-deflate response is refused (the client fails the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationError(pub String);

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permessage-deflate: {}", self.0)
    }
}

impl std::error::Error for NegotiationError {}

fn bits(value: Option<&str>) -> Option<u8> {
    let v = value?;
    // RFC 7692 §7.1.2: 1*DIGIT, no leading zero, 8-15.
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// The parameters of one offer or response, each at most once.
#[derive(Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `Some(None)`: present without a value.
    server_max_window_bits: Option<Option<u8>>,
    client_max_window_bits: Option<Option<u8>>,
}

fn parse(ext: &ExtensionOffer) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    for param in &ext.params {
        let name = param.name.to_ascii_lowercase();
        let value = param.value.as_deref();
        let dup = || format!("{name} given twice");
        match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                let flag = if name.starts_with("server") {
                    &mut p.server_no_context_takeover
                } else {
                    &mut p.client_no_context_takeover
                };
                if *flag {
                    return Err(dup());
                }
                *flag = true;
            }
            "server_max_window_bits" | "client_max_window_bits" => {
                let parsed = match value {
                    None => None,
                    Some(_) => Some(bits(value).ok_or_else(|| {
                        format!("{name}={} is not 8-15", value.unwrap_or_default())
                    })?),
                };
                let slot = if name.starts_with("server") {
                    &mut p.server_max_window_bits
                } else {
                    &mut p.client_max_window_bits
                };
                if slot.is_some() {
                    return Err(dup());
                }
                *slot = Some(parsed);
            }
            _ => return Err(format!("unknown parameter {name}")),
        }
    }
    Ok(p)
}

impl DeflateConfig {
    /// The client's offer.
    pub fn offer(&self) -> ExtensionOffer {
        let mut offer = ExtensionOffer::new(NAME);
        if self.server_no_context_takeover {
            offer = offer.with_param("server_no_context_takeover", None);
        }
        if self.client_no_context_takeover {
            offer = offer.with_param("client_no_context_takeover", None);
        }
        if let Some(b) = self.server_max_window_bits {
            offer = offer.with_param("server_max_window_bits", Some(&b.clamp(8, 15).to_string()));
        }
        let client_bits = self
            .client_max_window_bits
            .map(|b| b.clamp(8, 15).to_string());
        offer.with_param("client_max_window_bits", client_bits.as_deref())
    }

    /// The server's choice: the first permessage-deflate offer it can accept (invalid
    /// offers are declined, RFC 7692 §5.1), the parameters to apply, and the response to
    /// send. `None`: no acceptable offer, so the connection goes on without compression.
    pub fn negotiate(&self, offers: &[ExtensionOffer]) -> Option<(DeflateParams, ExtensionOffer)> {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(NAME))
            .find_map(|o| self.accept_offer(o))
    }

    fn accept_offer(&self, offer: &ExtensionOffer) -> Option<(DeflateParams, ExtensionOffer)> {
        let p = parse(offer).ok()?;
        // An offer's server_max_window_bits needs a value (§7.1.2.1).
        if p.server_max_window_bits == Some(None) {
            return None;
        }
        let mut response = ExtensionOffer::new(NAME);
        let server_nct = p.server_no_context_takeover || self.server_no_context_takeover;
        if server_nct {
            response = response.with_param("server_no_context_takeover", None);
        }
        let client_nct = p.client_no_context_takeover || self.client_no_context_takeover;
        if client_nct {
            response = response.with_param("client_no_context_takeover", None);
        }
        // Our window: at most what the client allows, and at most our own limit.
        let requested = p.server_max_window_bits.flatten();
        let server_bits = match (requested, self.server_max_window_bits) {
            (Some(r), Some(own)) => r.min(own.clamp(8, 15)),
            (Some(r), None) => r,
            (None, Some(own)) => own.clamp(8, 15),
            (None, None) => 15,
        };
        if requested.is_some() || server_bits < 15 {
            response =
                response.with_param("server_max_window_bits", Some(&server_bits.to_string()));
        }
        // The client's window: only if it offered the parameter.
        let client_bits = match p.client_max_window_bits {
            None => 15,
            Some(offered) => {
                let cap = offered.unwrap_or(15);
                match self.client_max_window_bits {
                    Some(want) => {
                        let b = want.clamp(8, 15).min(cap);
                        response =
                            response.with_param("client_max_window_bits", Some(&b.to_string()));
                        b
                    }
                    None => {
                        if offered.is_some() {
                            response = response
                                .with_param("client_max_window_bits", Some(&cap.to_string()));
                        }
                        cap
                    }
                }
            }
        };
        Some((
            DeflateParams {
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            },
            response,
        ))
    }

    /// The client's check of the server's response (RFC 7692 §5.1, §7.1): `Ok(None)` when
    /// the server declined compression, the parameters to apply when it accepted, an error
    /// when the response breaks the rules or our offer (fail the connection).
    pub fn accept_response(
        &self,
        extensions: &[ExtensionOffer],
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        let mut found = extensions
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(NAME));
        let Some(resp) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(NegotiationError("accepted twice".into()));
        }
        let p = parse(resp).map_err(NegotiationError)?;
        let server_bits = match p.server_max_window_bits {
            None => {
                if let Some(asked) = self.server_max_window_bits {
                    // We asked for a smaller window and it was not confirmed.
                    if asked < 15 {
                        return Err(NegotiationError(
                            "server_max_window_bits was asked for and not confirmed".into(),
                        ));
                    }
                }
                15
            }
            Some(None) => {
                return Err(NegotiationError(
                    "server_max_window_bits needs a value".into(),
                ))
            }
            Some(Some(b)) => {
                if let Some(asked) = self.server_max_window_bits {
                    if b > asked {
                        return Err(NegotiationError(format!(
                            "server_max_window_bits={b} is over the {asked} asked for"
                        )));
                    }
                }
                b
            }
        };
        let client_bits = match p.client_max_window_bits {
            None => self.client_max_window_bits.unwrap_or(15),
            Some(None) => {
                return Err(NegotiationError(
                    "client_max_window_bits needs a value".into(),
                ))
            }
            Some(Some(b)) => {
                if let Some(offered) = self.client_max_window_bits {
                    if b > offered {
                        return Err(NegotiationError(format!(
                            "client_max_window_bits={b} is over the {offered} offered"
                        )));
                    }
                }
                b
            }
        };
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(NegotiationError(
                "server_no_context_takeover was asked for and not confirmed".into(),
            ));
        }
        Ok(Some(DeflateParams {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_extensions;

    fn offers(header: &str) -> Vec<ExtensionOffer> {
        parse_extensions(header.as_bytes()).unwrap()
    }

    fn server_accepts(config: &DeflateConfig, header: &str) -> Option<(DeflateParams, String)> {
        config
            .negotiate(&offers(header))
            .map(|(p, r)| (p, r.to_string()))
    }

    #[test]
    fn plain_offer_accepted_with_defaults() {
        let (p, r) = server_accepts(&DeflateConfig::default(), "permessage-deflate").unwrap();
        assert_eq!(r, "permessage-deflate");
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15
            }
        );
    }

    #[test]
    fn every_parameter_is_honoured() {
        let (p, r) = server_accepts(
            &DeflateConfig::default(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9",
        )
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 9)
        );
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
    }

    #[test]
    fn server_limits_apply_within_what_the_client_allows() {
        let config = DeflateConfig {
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(11),
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        // The client allows any client window (valueless): we ask for 11.
        let (p, r) = server_accepts(&config, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 11)
        );
        assert!(p.client_no_context_takeover);
        assert!(r.contains("client_max_window_bits=11") && r.contains("server_max_window_bits=12"));
        // The client did not offer client_max_window_bits: we may not ask for it.
        let (p, r) = server_accepts(&config, "permessage-deflate").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert!(!r.contains("client_max_window_bits"));
        // The client asks for a smaller server window than ours.
        let (p, _) =
            server_accepts(&config, "permessage-deflate; server_max_window_bits=9").unwrap();
        assert_eq!(p.server_max_window_bits, 9);
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_is_tried() {
        let config = DeflateConfig::default();
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(server_accepts(&config, bad), None, "{bad}");
        }
        // Several offers: the first valid one wins.
        let (p, _) = server_accepts(
            &config,
            "permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=11",
        )
        .unwrap();
        assert_eq!(p.server_max_window_bits, 11);
    }

    #[test]
    fn client_checks_the_response() {
        let config = DeflateConfig {
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
            ..DeflateConfig::default()
        };
        let ok = config
            .accept_response(&offers(
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12",
            ))
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.server_max_window_bits, ok.client_max_window_bits),
            (9, 12)
        );
        assert_eq!(config.accept_response(&[]).unwrap(), None);
        for bad in [
            "permessage-deflate",                                             // our 10 not confirmed
            "permessage-deflate; server_max_window_bits=11",                  // over what we asked
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13", // over offered
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits", // no value
            "permessage-deflate; server_max_window_bits=10; bogus",
            "permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=10",
        ] {
            assert!(config.accept_response(&offers(bad)).is_err(), "{bad}");
        }
        // Our offer always carries the valueless client_max_window_bits, so the server may
        // choose any client window.
        let plain = DeflateConfig::default();
        let offer = plain.offer();
        assert!(offer.to_string().contains("client_max_window_bits"));
        assert!(plain
            .accept_response(&offers("permessage-deflate; client_max_window_bits=9"))
            .is_ok());
        // Asked for no server context takeover and not confirmed: refused.
        let nct = DeflateConfig {
            server_no_context_takeover: true,
            ..plain
        };
        assert!(nct.accept_response(&offers("permessage-deflate")).is_err());
        assert!(
            nct.accept_response(&offers("permessage-deflate; server_no_context_takeover"))
                .unwrap()
                .unwrap()
                .server_no_context_takeover
        );
    }
}
