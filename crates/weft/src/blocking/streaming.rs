//! Streaming with the blocking driver: the next message as a `std::io::Read`, a message
//! sent from a `Read` (one frame of declared length, or a frame per read) or through a
//! `Write` whose writes become frames. Each call keeps the deadline it was given.

use super::{Deadline, Transport, WebSocket};
use crate::error::{Error, Result};
use crate::source::{SourceSend, SOURCE_CHUNK};
use bytes::{Buf, Bytes};
use std::io::{self, Read, Write};
use weft_proto::{Event, MessageKind, RecvLevel};

impl<S: Transport> WebSocket<S> {
    /// Waits for the next message and returns it as a `Read` of its bytes (`Ok(None)` once
    /// the connection is closed). Needs the chunk receive level, where the engine buffers
    /// nothing and no size limit applies. Every read of the stream waits until `deadline`.
    pub fn recv_stream(&mut self, deadline: Deadline) -> Result<Option<MessageReader<'_, S>>> {
        if self.conn.config().recv_level != RecvLevel::Chunk {
            return Err(Error::InvalidArgument(
                "recv_stream needs config.recv_level = RecvLevel::Chunk",
            ));
        }
        loop {
            match self.next_event(deadline)? {
                None => return Ok(None),
                Some(Event::MessageStart { kind, .. }) => {
                    return Ok(Some(MessageReader {
                        ws: self,
                        kind,
                        chunk: Bytes::new(),
                        done: false,
                        deadline,
                    }))
                }
                Some(_) => {}
            }
        }
    }

    /// Sends one message read from `source` until its end: with `len`, as one frame of that
    /// declared length (`source` must yield exactly `len` bytes), else a frame per read.
    /// At most `write_buffer_limit` bytes wait in memory.
    pub fn send_from_reader<R: Read>(
        &mut self,
        kind: MessageKind,
        mut source: R,
        len: Option<u64>,
        deadline: Deadline,
    ) -> Result<()> {
        self.check_broken()?;
        let mut send = SourceSend::begin(&mut self.conn, kind, len)?;
        let mut buf = vec![0u8; SOURCE_CHUNK];
        loop {
            let want = send.want();
            let n = match source.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            match send.feed(&mut self.conn, &buf[..n]) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e @ Error::Io(_)) => {
                    self.broken = true;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            if self.conn.queued_bytes() > self.options.write_buffer_limit {
                self.flush(deadline)?;
            }
        }
        self.flush(deadline)
    }

    /// Begins a message written through the returned `Write`: each write becomes a frame;
    /// [`MessageWriter::finish`] ends the message (dropping it unfinished leaves the
    /// message open, and no other can be sent).
    pub fn send_stream(
        &mut self,
        kind: MessageKind,
        deadline: Deadline,
    ) -> Result<MessageWriter<'_, S>> {
        self.check_broken()?;
        self.conn.begin_message(kind)?;
        Ok(MessageWriter { ws: self, deadline })
    }
}

/// The bytes of one received message, as a `Read`.
#[derive(Debug)]
pub struct MessageReader<'a, S: Transport> {
    ws: &'a mut WebSocket<S>,
    kind: MessageKind,
    chunk: Bytes,
    done: bool,
    deadline: Deadline,
}

impl<S: Transport> MessageReader<'_, S> {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The next chunk as it arrived (no copy); `Ok(None)` at the end of the message.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if !self.chunk.is_empty() {
            return Ok(Some(std::mem::take(&mut self.chunk)));
        }
        while !self.done {
            match self.ws.next_event(self.deadline)? {
                Some(Event::FrameData(d)) if !d.is_empty() => return Ok(Some(d)),
                Some(Event::MessageEnd) => self.done = true,
                Some(Event::Close(_)) | None => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed inside the message",
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        Error::Timeout => io::ErrorKind::TimedOut.into(),
        other => io::Error::other(other),
    }
}

impl<S: Transport> Read for MessageReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() {
            match self.next_chunk().map_err(to_io)? {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = self.chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// A `Write` whose writes become the frames of one message.
#[derive(Debug)]
pub struct MessageWriter<'a, S: Transport> {
    ws: &'a mut WebSocket<S>,
    deadline: Deadline,
}

impl<S: Transport> MessageWriter<'_, S> {
    /// Ends the message and writes everything queued.
    pub fn finish(self) -> Result<()> {
        self.ws.conn.end_message()?;
        self.ws.flush(self.deadline)
    }
}

impl<S: Transport> Write for MessageWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ws
            .conn
            .send_frame(Bytes::copy_from_slice(buf), false)
            .map_err(|e| to_io(e.into()))?;
        if self.ws.conn.queued_bytes() > self.ws.options.write_buffer_limit {
            self.ws.flush(self.deadline).map_err(to_io)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ws.flush(self.deadline).map_err(to_io)
    }
}
