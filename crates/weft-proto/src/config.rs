//! Connection configuration: role, limits, automatic replies, receive level, sizes.

/// Which end of the connection this is. A client masks every frame it sends; a server never
/// does, and each rejects frames masked the wrong way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake request.
    Client,
    /// The end that answered it.
    Server,
}

/// The level at which received data messages are reported (REQUIREMENTS V1-V4).
///
/// Control frames (ping, pong, close) are always reported whole, at every level, even
/// between the fragments of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecvLevel {
    /// Whole messages: [`Event::Message`](crate::Event::Message). The engine assembles
    /// fragments, up to `max_message_size`.
    #[default]
    Message,
    /// The frames of a message as they complete: `MessageStart`, `Frame` x N, `MessageEnd`.
    /// Each frame is buffered whole, up to `max_frame_size`; the message is not.
    Frame,
    /// The chunks of each frame as bytes arrive: `MessageStart`, then per frame `FrameStart`
    /// (with the header), `FrameData` x N, `FrameEnd`, and `MessageEnd`. Nothing is buffered
    /// beyond what the transport delivered, so messages of any size stream through.
    Chunk,
}

/// Settings of a [`Connection`](crate::Connection).
///
/// ```
/// use weft_proto::Config;
/// let mut config = Config::default();
/// config.max_message_size = Some(1 << 20);
/// config.fragment_size = Some(16 * 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted, at every receive level (`None`: no limit; the
    /// chunk level streams any size). Over it: close 1009. Default 16 MiB.
    pub max_frame_size: Option<u64>,
    /// The largest message accepted (`None`: no limit). Checked at each frame header, before
    /// any of the frame is buffered. Over it: close 1009. Default 64 MiB.
    pub max_message_size: Option<u64>,
    /// Answer each ping with a pong of the same payload. Default true.
    pub auto_pong: bool,
    /// Answer the peer's close frame with a close frame. Default true.
    pub auto_close: bool,
    /// Split outgoing whole messages into frames of at most this many payload bytes
    /// (`None` or `Some(0)`: one frame per message). Default `None`.
    pub fragment_size: Option<usize>,
    /// The level of received events. Default [`RecvLevel::Message`].
    pub recv_level: RecvLevel,
    /// How many bytes the engine makes room for when it lends its read buffer. Default 4096.
    pub read_buffer_size: usize,
    /// Frames whose payload is at most this many bytes are copied together into one
    /// contiguous output buffer, so many small messages leave in one write; larger payloads
    /// are handed to the writer as they are, without a copy. Default 1024.
    pub coalesce_threshold: usize,
    /// RSV bits (RSV1 = `0b100`) that a negotiated extension uses; frames with other RSV bits
    /// set are a protocol error (1002). Default 0.
    pub extension_rsv: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: Some(16 << 20),
            max_message_size: Some(64 << 20),
            auto_pong: true,
            auto_close: true,
            fragment_size: None,
            recv_level: RecvLevel::Message,
            read_buffer_size: 4096,
            coalesce_threshold: 1024,
            extension_rsv: 0,
        }
    }
}
