//! permessage-deflate (RFC 7692) as an [`Extension`]: RSV1 marks a compressed message;
//! outgoing messages over the threshold, and messages sent frame by frame, are compressed;
//! received ones are inflated with bounded output.
//!
//! The zlib state (both directions: about 300 KB with 9-bit windows, 430 KB with 15) is made when
//! the first compressed message in its direction needs it, and, where no context takeover
//! was negotiated for that direction, dropped at the end of each message: an idle
//! connection without context takeover holds none of it.

use super::codec::{Deflater, Inflater, TAIL};
use super::Deflate;
use crate::config::Role;
use crate::extension::{Boundary, Extension, ExtensionError, Progress};
use crate::message::MessageKind;

/// RSV1: a compressed message (RFC 7692 §6).
const RSV1: u8 = 0b100;

fn corrupt() -> ExtensionError {
    ExtensionError::invalid_data("invalid compressed data")
}

/// permessage-deflate on one connection, as negotiated: install it with
/// [`Connection::with_extension`](crate::Connection::with_extension), or let
/// [`Connection::new`](crate::Connection::new) do it from [`Config::deflate`](crate::Config).
///
/// ```
/// use weft_proto::deflate::{Deflate, DeflateParams, PerMessageDeflate};
/// use weft_proto::{Config, Connection, Role};
///
/// let settings = Deflate {
///     params: DeflateParams {
///         server_no_context_takeover: true,
///         client_no_context_takeover: true,
///         server_max_window_bits: 15,
///         client_max_window_bits: 15,
///     },
///     level: 1,
///     threshold: 64,
/// };
/// let pmd = PerMessageDeflate::new(Role::Server, &settings);
/// let server = Connection::with_extension(Role::Server, Config::default(), Box::new(pmd));
/// assert!(server.extension().is_some());
/// ```
#[derive(Debug)]
pub struct PerMessageDeflate {
    level: u32,
    threshold: usize,
    /// This end's window bits and context rule (for what it sends).
    own_bits: u8,
    own_no_context_takeover: bool,
    /// The peer's (for what it sends, which this end inflates).
    peer_bits: u8,
    peer_no_context_takeover: bool,
    /// Made at the first compressed message sent; dropped after each one without context
    /// takeover.
    deflater: Option<Deflater>,
    /// Made at the first compressed message received; dropped after each one without
    /// context takeover.
    inflater: Option<Inflater>,
    /// How much of the `00 00 ff ff` tail was given to the inflater at the end of the
    /// current message.
    tail_used: usize,
}

impl PerMessageDeflate {
    /// permessage-deflate for `role`'s end, with the negotiated `settings`.
    pub fn new(role: Role, settings: &Deflate) -> Self {
        let p = &settings.params;
        let (own_bits, own_nct, peer_bits, peer_nct) = match role {
            Role::Server => (
                p.server_max_window_bits,
                p.server_no_context_takeover,
                p.client_max_window_bits,
                p.client_no_context_takeover,
            ),
            Role::Client => (
                p.client_max_window_bits,
                p.client_no_context_takeover,
                p.server_max_window_bits,
                p.server_no_context_takeover,
            ),
        };
        PerMessageDeflate {
            level: settings.level,
            threshold: settings.threshold,
            own_bits,
            own_no_context_takeover: own_nct,
            peer_bits,
            peer_no_context_takeover: peer_nct,
            deflater: None,
            inflater: None,
            tail_used: 0,
        }
    }

    /// Whether the compressor's state is held now (for tests and measurements).
    pub fn holds_compressor(&self) -> bool {
        self.deflater.is_some()
    }

    /// Whether the decompressor's state is held now (for tests and measurements).
    pub fn holds_decompressor(&self) -> bool {
        self.inflater.is_some()
    }
}

impl Extension for PerMessageDeflate {
    fn rsv(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        input: &[u8],
        end: Boundary,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Progress, ExtensionError> {
        let bits = self.peer_bits;
        let inflater = self.inflater.get_or_insert_with(|| Inflater::new(bits));
        let limit = out.len().saturating_add(max);
        let used = inflater.inflate(input, out, limit).map_err(|_| corrupt())?;
        let not_done = Progress {
            consumed: used,
            done: false,
        };
        if out.len() >= limit {
            // There may be more output: the next call takes it.
            return Ok(not_done);
        }
        if used < input.len() {
            // zlib takes no more of it, with room to spare: not a deflate stream.
            return Err(corrupt());
        }
        if end == Boundary::Message {
            // The tail that the sender removed (RFC 7692 §7.2.2).
            while self.tail_used < TAIL.len() {
                let n = inflater
                    .inflate(&TAIL[self.tail_used..], out, limit)
                    .map_err(|_| corrupt())?;
                self.tail_used += n;
                if out.len() >= limit {
                    return Ok(not_done);
                }
                if n == 0 {
                    return Err(corrupt());
                }
            }
            self.tail_used = 0;
            if self.peer_no_context_takeover {
                self.inflater = None;
            }
        }
        Ok(Progress {
            consumed: used,
            done: true,
        })
    }

    fn start_encode(&mut self, _kind: MessageKind, len: Option<u64>) -> u8 {
        // zlib cannot compress with a window of 8 bits: when the peer asked for that, every
        // message goes out uncompressed (which RFC 7692 allows).
        if self.own_bits < 9 || len.is_some_and(|n| n < self.threshold as u64) {
            return 0;
        }
        RSV1
    }

    fn encode(&mut self, input: &[u8], end: Boundary, out: &mut Vec<u8>) {
        let (level, bits) = (self.level, self.own_bits);
        let deflater = self
            .deflater
            .get_or_insert_with(|| Deflater::new(level, bits));
        let last = end == Boundary::Message;
        deflater.compress(input, last, out);
        if last && self.own_no_context_takeover {
            self.deflater = None;
        }
    }
}
