//! The connection state machine: bytes in, events out; messages in, bytes out.
//!
//! A [`Connection`] owns no socket and no clock. The caller moves bytes:
//!
//! - **in**: [`receive`](Connection::receive) copies bytes in, or the caller reads straight
//!   into the buffer that [`read_buf`](Connection::read_buf) lends; then it pulls events with
//!   [`poll_event`](Connection::poll_event) until `Ok(None)`.
//! - **out**: the send calls ([`send`](Connection::send), [`begin_message`](Connection::begin_message),
//!   [`begin_frame`](Connection::begin_frame), [`ping`](Connection::ping), [`close`](Connection::close)...)
//!   queue framed bytes; the caller writes [`outgoing`](Connection::outgoing) (a
//!   [`bytes::Buf`], ready for a vectored write) whenever [`want_write`](Connection::want_write).
//!
//! The work is split by direction: `recv.rs` decodes and validates, `send.rs` frames and
//! checks the order of send calls, `outq.rs` holds the framed bytes.
//!
//! ```
//! use weft_proto::{Connection, Config, Role, Event, Message};
//! use bytes::Buf;
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send(Message::from("hello")).unwrap();
//! // Move the client's bytes to the server, as a transport would.
//! let out = client.outgoing();
//! let wire = out.copy_to_bytes(out.remaining());
//! server.receive(&wire);
//! assert_eq!(server.poll_event().unwrap(), Some(Event::Message(Message::from("hello"))));
//! assert_eq!(server.poll_event().unwrap(), None); // needs more bytes
//! ```

mod assemble;
mod extension;
mod outq;
mod recv;
mod send;

pub use assemble::MessageAssembler;
pub use outq::{OutPiece, OutQueue};

use crate::close::{CloseCode, CloseFrame};
use crate::config::{Config, Role};
use crate::error::{Error, ProtocolError};
use crate::extension::Extension;
use crate::message::{Event, MessageKind};
use crate::utf8::Utf8Validator;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::fmt;

/// Where masking keys come from (REQUIREMENTS R2). A client takes a fresh key for every
/// frame; RFC 6455 §5.3 asks for keys an attacker cannot predict.
///
/// Any `FnMut() -> [u8; 4] + Send` is a mask source; the default draws from `rand`'s
/// thread-local CSPRNG.
pub trait MaskSource: Send {
    /// The key for the next frame.
    fn next_key(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4] + Send> MaskSource for F {
    fn next_key(&mut self) -> [u8; 4] {
        self()
    }
}

/// The default mask source: `rand`'s thread-local cryptographically secure generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomMask;

impl MaskSource for RandomMask {
    fn next_key(&mut self) -> [u8; 4] {
        rand::random()
    }
}

/// State of a received frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct PayloadState {
    header: crate::frame::FrameHeader,
    /// Payload bytes not yet handed out.
    remaining: u64,
    /// Key phase of the first byte not yet unmasked.
    mask_pos: usize,
    /// Bytes at the start of the read buffer (of this frame) already unmasked and validated.
    checked: usize,
    /// Bytes at the start of the read buffer (of this frame) already unmasked (at least
    /// `checked`: `receive` unmasks while it copies); `mask_pos` is the key phase here.
    unmasked: usize,
}

#[derive(Debug, Clone, Copy)]
enum RecvState {
    Header,
    Payload(PayloadState),
}

/// A received data message that is open (its final frame has not arrived).
#[derive(Debug)]
struct InMessage {
    kind: MessageKind,
    size: u64,
    /// Validated as it arrives; `None` when an extension transforms the payload (RSV bits on
    /// its first frame), so the text can only be checked after the extension decodes it.
    utf8: Option<Utf8Validator>,
    /// Its checked bytes were exposed through `read_buf`, so they are validated again
    /// before they become `Utf8Bytes`.
    recheck: bool,
    /// It carries the installed extension's RSV bits: its frames are decoded by the
    /// extension before anything else sees them.
    extension: bool,
}

/// An outgoing message begun with `begin_message`.
#[derive(Debug)]
struct OutMessage {
    kind: MessageKind,
    frames_sent: bool,
    utf8: Utf8Validator,
    /// Whether its frames are encoded by the extension (decided at its first frame).
    extension: bool,
}

/// An outgoing frame begun with `begin_frame`, whose payload is still being supplied.
#[derive(Debug, Clone, Copy)]
struct OutFrame {
    remaining: u64,
    fin: bool,
    mask: Option<[u8; 4]>,
    mask_pos: usize,
}

/// A WebSocket connection's protocol state, after the opening handshake (or with none, for
/// a stream that is already upgraded).
pub struct Connection {
    role: Role,
    config: Config,
    rbuf: BytesMut,
    recv: RecvState,
    in_msg: Option<InMessage>,
    assembly: BytesMut,
    pending: VecDeque<Event>,
    out_msg: Option<OutMessage>,
    out_frame: Option<OutFrame>,
    out: OutQueue,
    mask_source: Box<dyn MaskSource>,
    close_sent: Option<CloseFrame>,
    close_received: Option<CloseFrame>,
    /// A close reply that waits for the open streamed frame to be completed.
    close_reply: Option<CloseFrame>,
    failed: Option<ProtocolError>,
    /// The read buffer was taken: nothing more is received.
    detached: bool,
    /// How much room `read_buf` makes: it doubles (up to `Config::max_read_buffer_size`)
    /// while reads fill it, and halves (down to `Config::read_buffer_size`) while they use
    /// little of it.
    read_reserve: usize,
    /// The buffer's length and spare room when it was last lent (`spare` 0: not lent).
    lent_len: usize,
    lent_spare: usize,
    /// The last read filled all the room it was lent: more bytes were waiting.
    read_filled: bool,
    /// The read room is lent as a buffer of its own (`lend_read_room`).
    room_lent: bool,
    /// The room the last `read_buf` meant to lend (see `read_room`).
    read_room: usize,
    /// Memory a transport gave back for the next read (see `recycle`); empty: none.
    recycled: BytesMut,
    /// The installed extension (permessage-deflate, when negotiated).
    ext: Option<Box<extension::ExtensionState>>,
    /// The installed extension's RSV bits (0: none installed).
    ext_rsv: u8,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("buffered", &self.rbuf.len())
            .field("queued_bytes", &self.out.len())
            .field("close_sent", &self.close_sent)
            .field("close_received", &self.close_received)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Read buffers larger than this are released when they fall empty.
const IDLE_BUFFER_KEEP: usize = 256 * 1024;

impl Connection {
    /// A connection for `role` with `config`, ready for frames. With
    /// [`Config::deflate`] (and the `deflate` feature), permessage-deflate is installed as
    /// the connection's [`Extension`].
    pub fn new(role: Role, config: Config) -> Self {
        #[cfg(feature = "deflate")]
        let ext = config.deflate.as_ref().map(|d| {
            Box::new(crate::deflate::PerMessageDeflate::new(role, d)) as Box<dyn Extension>
        });
        #[cfg(not(feature = "deflate"))]
        let (ext, config) = {
            let mut config = config;
            if config.deflate.is_some() {
                // No codec: compressed messages (RSV1) are handed to the application as
                // they are.
                config.extension_rsv |= 0b100;
            }
            (None::<Box<dyn Extension>>, config)
        };
        Self::build(role, config, ext)
    }

    /// A connection for `role` with `config` that runs `extension` on the messages with its
    /// RSV bits (in place of the permessage-deflate that [`Config::deflate`] would install).
    /// See the [`extension`](crate::extension) module.
    pub fn with_extension(role: Role, config: Config, extension: Box<dyn Extension>) -> Self {
        Self::build(role, config, Some(extension))
    }

    fn build(role: Role, config: Config, ext: Option<Box<dyn Extension>>) -> Self {
        let read_reserve = config.read_buffer_size.max(1);
        let mut c = Connection {
            role,
            config,
            rbuf: BytesMut::new(),
            recv: RecvState::Header,
            in_msg: None,
            assembly: BytesMut::new(),
            pending: VecDeque::new(),
            out_msg: None,
            out_frame: None,
            out: OutQueue::default(),
            mask_source: Box::new(RandomMask),
            close_sent: None,
            close_received: None,
            close_reply: None,
            failed: None,
            detached: false,
            read_reserve,
            lent_len: 0,
            lent_spare: 0,
            read_filled: false,
            room_lent: false,
            read_room: 0,
            recycled: BytesMut::new(),
            ext: None,
            ext_rsv: 0,
        };
        c.install_extension(ext);
        c
    }

    /// Installs `extension` (or, with `None`, removes the one installed), for a connection
    /// that negotiated it. Only between messages: while a received or an outgoing message
    /// is open it is an error, and nothing changes.
    pub fn set_extension(&mut self, extension: Option<Box<dyn Extension>>) -> Result<(), Error> {
        if self.in_msg.is_some() || self.out_msg.is_some() {
            return Err(Error::InvalidArgument(
                "the extension can change only between messages",
            ));
        }
        self.install_extension(extension);
        Ok(())
    }

    /// The installed extension, if any.
    pub fn extension(&self) -> Option<&dyn Extension> {
        self.ext.as_deref().map(|st| st.extension())
    }

    /// Replaces the source of masking keys (used by clients only).
    pub fn set_mask_source(&mut self, source: impl MaskSource + 'static) {
        self.mask_source = Box::new(source);
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the receive level. It takes effect at once when no received message is open;
    /// while one is open it is an error (finish the message at the current level first, or
    /// hand its events to a [`MessageAssembler`]).
    pub fn set_recv_level(&mut self, level: crate::RecvLevel) -> Result<(), Error> {
        if self.in_msg.is_some() && level != self.config.recv_level {
            return Err(Error::InvalidArgument(
                "the receive level can change only between messages",
            ));
        }
        self.config.recv_level = level;
        Ok(())
    }

    /// Whether an outgoing message begun with `begin_message` is open.
    pub fn is_sending_message(&self) -> bool {
        self.out_msg.is_some()
    }

    /// Whether the engine can use more received bytes: false once the peer's close frame
    /// arrived or the connection failed.
    pub fn want_read(&self) -> bool {
        self.failed.is_none() && self.close_received.is_none() && !self.detached
    }

    /// Whether framed bytes wait in [`outgoing`](Self::outgoing).
    pub fn want_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// The queue of framed bytes for the transport. Write from it (vectored:
    /// [`bytes::Buf::chunks_vectored`]) and [`advance`](bytes::Buf::advance) it by what was
    /// written; or copy into memory of your own with [`OutQueue::write_to`].
    pub fn outgoing(&mut self) -> &mut OutQueue {
        &mut self.out
    }

    /// Messages and control frames queued and not yet completely written.
    pub fn queued_messages(&self) -> usize {
        self.out.messages()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// The close frame this end sent (or queued), if any. A close sent with no status reads
    /// as code 1005.
    pub fn close_sent(&self) -> Option<&CloseFrame> {
        self.close_sent.as_ref()
    }

    /// The close frame the peer sent, if it arrived. One with no status reads as code 1005.
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.close_received.as_ref()
    }

    /// The peer's close status: its code, 1005 if its close frame carried none, or 1006
    /// (abnormal) if no close frame arrived.
    pub fn close_status(&self) -> CloseCode {
        self.close_received
            .as_ref()
            .map_or(CloseCode::ABNORMAL, |c| c.code)
    }

    /// The protocol violation that ended the connection, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.failed.as_ref()
    }

    /// Whether the close handshake is complete (close sent and received) or the connection
    /// failed: nothing more will be sent or received.
    pub fn is_closed(&self) -> bool {
        self.failed.is_some() || (self.close_sent.is_some() && self.close_received.is_some())
    }

    /// Whether the transport can be shut: the connection is closed and every queued byte has
    /// been written. RFC 6455 §7.1.1: a server closes the TCP connection now; a client should
    /// wait (with a timeout) for the server to close it, then close its end.
    pub fn is_done(&self) -> bool {
        self.is_closed() && self.out.is_empty()
    }

    /// Takes the received bytes that have not been processed, for example after the close
    /// handshake, to hand the stream and what followed the close frame back to another
    /// protocol (detach). The connection receives nothing more afterwards: `want_read` is
    /// false and `poll_event` reports no further events (sending is unaffected).
    pub fn take_read_buffer(&mut self) -> BytesMut {
        self.detached = true;
        self.pending.clear();
        self.in_msg = None;
        self.assembly = BytesMut::new();
        self.recycled = BytesMut::new();
        if let Some(st) = self.ext.as_deref_mut() {
            st.clear_input();
        }
        std::mem::take(&mut self.rbuf)
    }

    /// Fails the connection for a violation the application found (its own size limit, a
    /// message it cannot accept...): queues a close frame with `err`'s code (unless a close
    /// was already sent or a streamed frame is open), and from then on reads and writes
    /// nothing more, as for a violation the engine found. Returns the error to report.
    pub fn fail(&mut self, err: ProtocolError) -> Error {
        if self.close_sent.is_none() && self.out_frame.is_none() {
            let frame = CloseFrame::new(err.close_code(), err.reason());
            self.queue_close(frame);
        }
        self.failed = Some(err.clone());
        self.pending.clear();
        self.rbuf = BytesMut::new();
        self.assembly = BytesMut::new();
        self.recycled = BytesMut::new();
        self.in_msg = None;
        if let Some(st) = self.ext.as_deref_mut() {
            st.clear_input();
        }
        Error::Protocol(err)
    }

    /// The error for a send call in the current state, if sending is not allowed.
    fn check_can_send(&self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(Error::Protocol(e.clone()));
        }
        if self.close_sent.is_some() {
            return Err(Error::Closed);
        }
        Ok(())
    }
}
