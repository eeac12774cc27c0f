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
    /// Each frame is buffered whole, up to `max_frame_size`; the message is not (nor
    /// limited by `max_message_size`).
    Frame,
    /// The chunks of each frame as bytes arrive: `MessageStart`, then per frame `FrameStart`
    /// (with the header), `FrameData` x N, `FrameEnd`, and `MessageEnd`. Nothing is buffered
    /// beyond what the transport delivered, so messages of any size stream through (no size
    /// limit applies).
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
    /// The largest frame payload accepted at the message and frame levels, where the engine
    /// buffers whole frames (`None`: no limit). Checked at each frame header, before any of
    /// the payload is buffered. Over it: close 1009. Default 16 MiB. The chunk level
    /// buffers nothing and streams frames of any size.
    pub max_frame_size: Option<u64>,
    /// The largest message accepted at the message level, where the engine assembles
    /// messages (`None`: no limit). Checked at each frame header, before any of the frame
    /// is buffered. Over it: close 1009. Default 64 MiB. At the frame and chunk levels the
    /// application holds the message, and bounds it itself (a [`MessageAssembler`] has its
    /// own limit; [`Connection::fail`] closes with the code of its error).
    ///
    /// [`MessageAssembler`]: crate::MessageAssembler
    /// [`Connection::fail`]: crate::Connection::fail
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
    /// How many bytes the engine makes room for when it lends its read buffer, at least.
    /// Default 4096.
    pub read_buffer_size: usize,
    /// How far that room grows: it doubles while reads fill it (a busy connection then
    /// needs fewer reads, and fewer system calls, for the same bytes) up to this, and halves
    /// again while reads use a quarter of it or less. Default 64 KiB. (The room lent is 64
    /// bytes more, so a frame of this size arrives with its header in one read; a frame that
    /// must be buffered whole gets room for the rest of it regardless, and one over half the
    /// room gets just that, or `read_buffer_size` if that is more: the next frame starts a
    /// read of its own; while such frames queue up, the room also takes as many more of
    /// the same size as fit in twice this, each still read in its place.)
    pub max_read_buffer_size: usize,
    /// Frames whose payload is at most this many bytes are copied together into one
    /// contiguous output buffer, so many small messages leave in one write; larger payloads
    /// are handed to the writer as they are, without a copy, with their header beside them.
    /// Default 256 (measured in `bench/`: above that, the copy costs more than the extra
    /// piece of a vectored write). A client coalesces larger payloads too when it must copy
    /// them anyway to mask them.
    pub coalesce_threshold: usize,
    /// RSV bits (RSV1 = `0b100`) of an extension the application runs itself: messages
    /// whose first frame carries them are handed out as they arrive (the bits in
    /// [`Event::MessageStart`](crate::Event::MessageStart); text is not validated as it
    /// arrives, and at the message level it is validated whole). Frames with RSV bits that
    /// neither these nor the installed [`Extension`](crate::extension::Extension) use are a
    /// protocol error (1002). Default 0. (An installed extension's bits need not be here.)
    pub extension_rsv: u8,
    /// permessage-deflate, when it was negotiated: [`Connection::new`](crate::Connection::new)
    /// installs [`PerMessageDeflate`](crate::deflate) as the connection's extension, so
    /// messages with RSV1 are inflated as they arrive (bounded by the size limits, so a
    /// deflate bomb stops with 1009), and outgoing messages are compressed. Without the
    /// `deflate` feature there is no codec, and RSV1 is added to `extension_rsv` instead.
    /// Default `None`.
    pub deflate: Option<crate::deflate::Deflate>,
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
            max_read_buffer_size: 64 * 1024,
            coalesce_threshold: 256,
            extension_rsv: 0,
            deflate: None,
        }
    }
}
