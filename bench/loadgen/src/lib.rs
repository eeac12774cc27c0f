//! What the load generators share: the measured window (timing, the server's and this
//! process's CPU, the rest of the machine's; [`measure`]) and the JSON helpers, used by
//! `loadgen` (WebSocket echoes) and `httpload` (plain HTTP/1.1 requests; its response
//! parser is [`http`]).

pub mod http;
pub mod measure;
