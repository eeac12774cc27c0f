//! `floor-uring --engine`: the io_uring floor's loop (one ring, one operation per connection,
//! a connection table of its own, no tasks, no wakers) with weft's engine in place of the
//! floor's framing. Not a peer and not a floor: it measures what weft's engine costs over
//! io_uring without the driver around it (the tokio task per connection, its wakes, the
//! ring's slots behind a mutex), i.e. what a driver that owns its connections and calls
//! the application back would cost.
//!
//! Per connection: the request is read into a buffer of its own until its blank line and
//! answered as the floor answers it; from then on each receive goes into the room the
//! engine lends (`lend_read_room`, given back with `read_done`: the io_uring driver's own
//! path), every event is polled, each message is sent back (`Connection::send`), and the
//! engine's queue goes out as slices of its pieces (a large payload from its own `Bytes`).
//! Full validation (UTF-8, the protocol's rules, close codes), as weft does everywhere.

use super::floor::{write_response, Bad, Echo};
use bytes::{Buf, BytesMut};
use std::io::IoSlice;
use weft_proto::{Config, Connection, Event, Role};

/// The most a request may take.
const MAX_REQUEST: usize = 16 * 1024;

/// One connection: the handshake, then the engine.
pub struct EngineConn {
    /// Until the request's blank line: what came of it.
    request: Option<Vec<u8>>,
    /// The 101, and how much of it went out.
    response: Vec<u8>,
    response_sent: usize,
    ws: Connection,
    /// The room lent for the receive in flight.
    room: Option<BytesMut>,
    closing: bool,
}

impl Default for EngineConn {
    fn default() -> Self {
        EngineConn {
            request: Some(Vec::with_capacity(1024)),
            response: Vec::new(),
            response_sent: 0,
            ws: Connection::new(Role::Server, Config::default()),
            room: None,
            closing: false,
        }
    }
}

impl EngineConn {
    /// Polls every event; echoes each message. A protocol error has queued its close.
    fn events(&mut self) {
        loop {
            match self.ws.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    if self.ws.send(m).is_err() {
                        self.closing = true;
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    self.closing = true;
                    return;
                }
            }
        }
        if self.ws.close_received().is_some() || self.ws.is_closed() {
            self.closing = true;
        }
    }
}

impl Echo for EngineConn {
    fn has_output(&self) -> bool {
        self.response_sent < self.response.len() || self.ws.want_write()
    }

    fn closing(&self) -> bool {
        self.closing
    }

    fn read_room(&mut self) -> (*mut u8, usize) {
        if let Some(req) = self.request.as_mut() {
            if req.len() >= MAX_REQUEST {
                return (std::ptr::null_mut(), 0);
            }
            req.reserve(1024);
            let spare = req.spare_capacity_mut();
            return (spare.as_mut_ptr().cast(), spare.len());
        }
        let mut room = self.ws.lend_read_room();
        let spare = room.spare_capacity_mut();
        let at = (spare.as_mut_ptr().cast(), spare.len());
        // (Moving the `BytesMut` moves no byte: the room stays where the kernel writes.)
        self.room = Some(room);
        at
    }

    fn on_read(&mut self, n: usize) -> Result<(), Bad> {
        if let Some(req) = self.request.as_mut() {
            if n > req.capacity() - req.len() {
                return Err(Bad("read past the room"));
            }
            // SAFETY: the kernel wrote `n` bytes into the spare capacity `read_room` lent
            // (checked above to be within it).
            unsafe { req.set_len(req.len() + n) };
            let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if req.len() >= MAX_REQUEST {
                    Err(Bad("request too large"))
                } else {
                    Ok(())
                };
            };
            write_response(&req[..end], &mut self.response)?;
            let rest = req.split_off(end + 4);
            self.request = None;
            self.ws.receive(&rest);
            self.events();
            return Ok(());
        }
        let mut room = self.room.take().ok_or(Bad("no receive was lent a room"))?;
        if n > room.capacity() {
            return Err(Bad("read past the room"));
        }
        // SAFETY: the kernel wrote `n` bytes at the start of the room's spare capacity
        // (the room is empty: it was split off past the buffered bytes).
        unsafe { room.set_len(n) };
        let short = n < room.capacity();
        self.ws.read_done(room);
        self.events();
        if short {
            // Drained for now (as a reader that got less than its room knows).
            self.ws.read_would_block();
        }
        Ok(())
    }

    fn output<'a>(&'a mut self, out: &mut [IoSlice<'a>]) -> usize {
        let mut k = 0;
        if self.response_sent < self.response.len() && !out.is_empty() {
            out[0] = IoSlice::new(&self.response[self.response_sent..]);
            k = 1;
        }
        let queue: &'a weft_proto::OutQueue = self.ws.outgoing();
        k + queue.chunks_vectored(&mut out[k..])
    }

    fn advance(&mut self, mut n: usize) {
        if self.response_sent < self.response.len() {
            let k = n.min(self.response.len() - self.response_sent);
            self.response_sent += k;
            n -= k;
        }
        self.ws.outgoing().advance(n);
    }

    fn spill(&mut self) {
        // (The engine's queue keeps what was not sent; nothing refers to a read buffer.)
    }
}
