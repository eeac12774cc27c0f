//! Sending one message from a source of bytes, shared by both drivers: the message is one
//! frame of declared length when the length is known, else a frame per read. The drivers
//! only read the source and write out; this decides what each read becomes.

use crate::error::{Error, Result};
use bytes::Bytes;
use std::io;
use weft_proto::{Connection, MessageKind};

/// The most bytes one read from the source takes (one frame or one chunk of the frame).
pub(crate) const SOURCE_CHUNK: usize = 64 * 1024;

/// A message being sent from a source.
pub(crate) struct SourceSend {
    /// Bytes of the declared frame still to come (`None`: no declared length).
    left: Option<u64>,
}

impl SourceSend {
    /// Begins the message (and its one frame, with `len`).
    pub(crate) fn begin(
        conn: &mut Connection,
        kind: MessageKind,
        len: Option<u64>,
    ) -> Result<Self> {
        conn.begin_message(kind)?;
        if let Some(len) = len {
            conn.begin_frame(len, true)?;
        }
        Ok(SourceSend { left: len })
    }

    /// How many bytes the next read should ask for; 0 when the declared length is done.
    pub(crate) fn want(&self) -> usize {
        match self.left {
            Some(n) => (n.min(SOURCE_CHUNK as u64)) as usize,
            None => SOURCE_CHUNK,
        }
    }

    /// Queues what one read gave (`data` empty: the source ended). Returns whether the
    /// message is complete.
    pub(crate) fn feed(&mut self, conn: &mut Connection, data: &[u8]) -> Result<bool> {
        if data.is_empty() {
            if self.left.is_some_and(|l| l > 0) {
                // The declared frame cannot be completed: the connection is unusable.
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source ended before the declared length",
                )));
            }
            if self.left.is_none() {
                conn.end_message()?;
            }
            return Ok(true);
        }
        let chunk = Bytes::copy_from_slice(data);
        match self.left.as_mut() {
            Some(l) => {
                *l -= data.len() as u64;
                conn.send_frame_data(chunk)?;
                Ok(*l == 0)
            }
            None => {
                conn.send_frame(chunk, false)?;
                Ok(false)
            }
        }
    }
}
