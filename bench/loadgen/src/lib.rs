//! What the load generators share: the measured window (timing, the server's and this
//! process's CPU, the rest of the machine's; [`measure`]) and the JSON helpers, used by
//! `loadgen` (WebSocket echoes) and `httpload` (plain HTTP/1.1 requests; its response
//! parser is [`http`]), and `connload` (WebSocket connections per second). The WebSocket
//! framing and handshake they share: [`frame`].

pub mod frame;
pub mod http;
pub mod measure;
