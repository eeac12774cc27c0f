//! Streaming both ways, so a message of any size passes with bounded memory: receive the
//! next message as an `AsyncRead` (or chunk by chunk), send one from an `AsyncRead` or
//! through an `AsyncWrite` whose writes become frames.

use super::WebSocket;
use crate::error::{Error, Result};
use crate::source::{SourceSend, SOURCE_CHUNK};
use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use bytes::{Buf, Bytes};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use weft_proto::{Event, MessageKind, RecvLevel};

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Waits for the next message and returns it as a stream of its bytes: an `AsyncRead`
    /// that ends with the message (`Ok(None)` once the connection is closed). Needs the
    /// chunk receive level (`Options::config.recv_level = RecvLevel::Chunk`), where the
    /// engine buffers nothing and no size limit applies.
    pub async fn recv_stream(&mut self) -> Result<Option<MessageStream<'_, S>>> {
        if self.conn.config().recv_level != RecvLevel::Chunk {
            return Err(Error::InvalidArgument(
                "recv_stream needs config.recv_level = RecvLevel::Chunk",
            ));
        }
        loop {
            match self.next_event().await? {
                None => return Ok(None),
                Some(Event::MessageStart { kind, .. }) => {
                    return Ok(Some(MessageStream {
                        ws: self,
                        kind,
                        chunk: Bytes::new(),
                        done: false,
                    }))
                }
                Some(_) => continue,
            }
        }
    }

    /// Sends one message read from `source` until its end. With `len`, the message is one
    /// frame of that declared length, streamed as it is read (`source` must yield exactly
    /// `len` bytes); without, each read becomes a frame. At most `write_buffer_limit`
    /// bytes wait in memory at any time.
    pub async fn send_from_reader<R: AsyncRead + Unpin>(
        &mut self,
        kind: MessageKind,
        mut source: R,
        len: Option<u64>,
    ) -> Result<()> {
        let mut send = SourceSend::begin(&mut self.conn, kind, len)?;
        let mut buf = vec![0u8; SOURCE_CHUNK];
        loop {
            let want = send.want();
            let n = if want == 0 {
                0
            } else {
                source.read(&mut buf[..want]).await?
            };
            if send.feed(&mut self.conn, &buf[..n])? {
                break;
            }
            if self.conn.queued_bytes() > self.options.write_buffer_limit {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// Begins a message whose bytes are written through the returned `AsyncWrite`: each
    /// write becomes a frame; `shutdown` ends the message (it must be called, or the
    /// connection cannot send another message).
    pub fn send_stream(&mut self, kind: MessageKind) -> Result<MessageSink<'_, S>> {
        self.conn.begin_message(kind)?;
        Ok(MessageSink { ws: self })
    }
}

/// The bytes of one received message, as an `AsyncRead` or chunk by chunk.
#[derive(Debug)]
pub struct MessageStream<'a, S> {
    ws: &'a mut WebSocket<S>,
    kind: MessageKind,
    chunk: Bytes,
    done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MessageStream<'_, S> {
    /// The message's kind. (Text is validated as it streams; a chunk may cut a code point.)
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The next chunk of the message as it arrived (no copy); `Ok(None)` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if !self.chunk.is_empty() {
            return Ok(Some(std::mem::take(&mut self.chunk)));
        }
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        while !self.done {
            match ready!(self.ws.poll_event(cx))? {
                Some(Event::FrameData(data)) if !data.is_empty() => {
                    return Poll::Ready(Ok(Some(data)))
                }
                Some(Event::MessageEnd) => self.done = true,
                Some(Event::Close(_)) | None => {
                    return Poll::Ready(Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed inside the message",
                    ))))
                }
                Some(_) => {}
            }
        }
        Poll::Ready(Ok(None))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MessageStream<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.chunk.is_empty() {
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(c)) => this.chunk = c,
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// An `AsyncWrite` whose writes become the frames of one message; `shutdown` ends it.
#[derive(Debug)]
pub struct MessageSink<'a, S> {
    ws: &'a mut WebSocket<S>,
}

fn to_io(e: impl Into<Error>) -> io::Error {
    match e.into() {
        Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MessageSink<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = &mut self.get_mut().ws;
        // Backpressure: write out before taking more than the limit.
        if ws.conn.queued_bytes() > ws.options.write_buffer_limit {
            ready!(ws.poll_write_out(cx)).map_err(to_io)?;
        }
        ws.conn
            .send_frame(Bytes::copy_from_slice(buf), false)
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().ws.poll_write_out(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ws = &mut self.get_mut().ws;
        if ws.conn.is_sending_message() {
            ws.conn.end_message().map_err(to_io)?;
        }
        ws.poll_write_out(cx).map_err(to_io)
    }
}
