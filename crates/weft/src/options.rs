//! Settings of a connection that the engine does not know about: timers and buffer bounds.

use std::time::Duration;
use weft_proto::handshake::ServerLimits;
use weft_proto::Config;

/// Settings for a connection: the engine's [`Config`] plus the timers and bounds that a
/// driver enforces (REQUIREMENTS I4).
///
/// ```
/// use std::time::Duration;
/// let mut options = weft::Options::default();
/// options.config.max_message_size = Some(1 << 20);
/// options.ping_interval = Some(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The protocol engine's settings (limits, receive level, fragment size...).
    pub config: Config,
    /// How long a client's TCP connect may take (for the `connect` calls that open the
    /// socket themselves). Default 10 s.
    pub connect_timeout: Option<Duration>,
    /// How long the opening handshake may take, from the first byte. Default 10 s.
    pub handshake_timeout: Option<Duration>,
    /// Send a ping after this long without receiving anything (keepalive). Default off.
    pub ping_interval: Option<Duration>,
    /// With `ping_interval`: fail with [`Error::Timeout`](crate::Error::Timeout) when nothing
    /// arrives this long after a keepalive ping. Default 20 s.
    pub pong_timeout: Duration,
    /// After sending a close frame, how long to wait for the peer's before shutting the
    /// transport. Default 5 s.
    pub close_timeout: Duration,
    /// `feed` writes out queued frames once more than this many bytes wait; `send` waits
    /// until the queue is below it. This bounds memory when the peer does not read.
    /// Default 128 KiB.
    pub write_buffer_limit: usize,
    /// Limits on a client's request head (server side).
    pub server_limits: ServerLimits,
    /// The largest response head accepted (client side). Default 8 KiB.
    pub max_response_head: usize,
    /// permessage-deflate (RFC 7692): as a server, what to accept when a client offers it;
    /// as a client, what to offer (the `connect` calls that build the request add the
    /// offer; with `connect_with`, put `deflate.offer()` in the request yourself). `None`:
    /// no compression. Default `None`.
    pub deflate: Option<weft_proto::deflate::DeflateConfig>,
    /// The TLS configuration for `wss://` URLs opened by the `connect` calls that open the
    /// socket themselves (`None`: the Mozilla roots of `webpki-roots`).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            connect_timeout: Some(Duration::from_secs(10)),
            handshake_timeout: Some(Duration::from_secs(10)),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            write_buffer_limit: 128 * 1024,
            server_limits: ServerLimits::default(),
            max_response_head: weft_proto::handshake::DEFAULT_MAX_HEAD_SIZE,
            deflate: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl From<Config> for Options {
    fn from(config: Config) -> Self {
        Options {
            config,
            ..Options::default()
        }
    }
}

/// What a running connection needs of its [`Options`]: its timers and its write bound (the
/// rest is used up by the handshake, or lives in the engine's `Config`). Kept instead of
/// the whole `Options` so that each connection stays small.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) pong_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) write_buffer_limit: usize,
}

impl From<&Options> for Timers {
    fn from(o: &Options) -> Self {
        Timers {
            ping_interval: o.ping_interval,
            pong_timeout: o.pong_timeout,
            close_timeout: o.close_timeout,
            write_buffer_limit: o.write_buffer_limit,
        }
    }
}
