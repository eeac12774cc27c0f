//! The receive side: frame headers checked, payloads unmasked and validated as they arrive,
//! events produced at the configured level.

use super::{Connection, InMessage, PayloadState, RecvState, IDLE_BUFFER_KEEP};
use crate::close::CloseFrame;
use crate::config::{RecvLevel, Role};
use crate::error::{Error, ProtocolError};
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};

use crate::mask::{apply_mask, extend_unmasked};
use crate::message::{Event, Message, MessageKind};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Buf, Bytes, BytesMut};

/// The most the read buffer is grown by in one [`Connection::read_buf`] call while a large
/// frame is being buffered (it grows further, amortised, as needed).
const MAX_RESERVE: u64 = 1 << 20;

/// Reservations at least this large are made in a new buffer when the old one cannot be
/// reclaimed (see `reserve_read`).
const LARGE_RESERVE: usize = 64 * 1024;

/// What `read_buf` lends past the room it means: a frame header and some bytes more. A
/// read that brings a whole frame of `read_reserve` bytes, or the whole rest of the frame
/// that is arriving, is then shorter than the room, so the reader knows that the transport
/// is drained (tokio takes a short read as the end of what is ready) instead of making one
/// more read that would block. With several frames in flight the next frame's header and
/// first bytes come along, and are moved (at most these few bytes) when its rest needs a
/// buffer of its own.
const READ_SLACK: u64 = 64;
const _: () = assert!(READ_SLACK as usize >= MAX_HEADER_LEN);

/// A cache line: a large room lent in an empty buffer starts on one (see `reserve_aligned`).
const LINE: usize = 64;

/// While large frames queue up, the room lent may take several of them, up to this many
/// times `Config::max_read_buffer_size` (see `read_buf`).
const BATCH_ROOMS: u64 = 2;

impl Connection {
    /// Copies received bytes in. Events are produced by [`poll_event`](Self::poll_event).
    ///
    /// Bytes that follow the peer's close frame are kept unprocessed (see
    /// [`take_read_buffer`](Self::take_read_buffer)); after a failure or a detach they are
    /// ignored.
    pub fn receive(&mut self, data: &[u8]) {
        // (A room lent and not given back is given up: its bytes come through here.)
        self.room_lent = false;
        if self.failed.is_some() || self.detached {
            return;
        }
        self.reserve_read(data.len() as u64, 0);
        // The rest of a masked data frame whose buffered bytes are all unmasked already:
        // unmask while copying (one pass instead of two over a large payload).
        if let RecvState::Payload(p) = &mut self.recv {
            if let Some(key) = p.header.mask {
                if !p.header.opcode.is_control() && p.unmasked == self.rbuf.len() {
                    let missing = p.remaining - self.rbuf.len() as u64;
                    let k = (data.len() as u64).min(missing) as usize;
                    p.mask_pos = extend_unmasked(&mut self.rbuf, &data[..k], key, p.mask_pos);
                    p.unmasked += k;
                    self.rbuf.extend_from_slice(&data[k..]);
                    return;
                }
            }
        }
        self.rbuf.extend_from_slice(data);
    }

    /// Lends the engine's read buffer so the transport can read straight into its spare
    /// capacity (no copy and no zero-filling: `tokio_util::io::poll_read_buf` and
    /// `BufMut::chunk_mut` work on it directly). The spare capacity is the adaptive read
    /// room (see [`read_reserve`](Self::read_reserve)) plus 64 bytes (a frame header and
    /// more), or more; while a frame over half that room is arriving (and must be
    /// buffered whole), the rest of that frame plus the same 64 bytes, so it is read in
    /// place and the next frame starts a buffer of its own (and while such frames queue
    /// up, as many more whole frames of its size as fit in twice the largest room, each
    /// read in place too). Never less than
    /// `read_buffer_size`. Append only; the bytes already in it belong to the engine.
    #[inline]
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if let (RecvState::Payload(p), Some(m)) = (&self.recv, self.in_msg.as_mut()) {
            // The caller could change bytes that were already validated.
            m.recheck |= p.checked > 0 && m.kind == MessageKind::Text;
        }
        // A room lent and not given back is given up: its bytes come through `receive`.
        self.room_lent = false;
        self.adapt_read_reserve();
        // The room holds a payload of `read_reserve` bytes with its header and some bytes
        // more (`READ_SLACK`): a 64 KiB message arrives in one read once the room has
        // grown, and a run of such frames is read one frame per read, each into the place
        // it is handed out from (a room of exactly 64 KiB left the last 14 bytes of every
        // frame for a second read, or, with several in flight, cut each frame near its end
        // so the rest did not fit and the whole frame was moved to a bigger buffer).
        match self.large_frame_missing() {
            Some((missing, frame)) => {
                // While large frames queue up (the last read filled its room), the room also
                // takes as many more frames of this size as fit in `BATCH_ROOMS` times the
                // largest room: a run of equal frames is read several per read, each still in
                // its place. (One read per 64 KiB frame made twice the reads and writes of
                // moving each frame: 31 against 19 µs of server CPU per echo at
                // 1 x 64 KiB x 8 in flight; twice as many frames per read idled the server
                // between bursts and did no better.) A next frame of another size is cut by
                // the room's end and moved, as before.
                let mut room = missing;
                if self.read_filled && frame > 0 {
                    let cap = (self.config.max_read_buffer_size as u64).saturating_mul(BATCH_ROOMS);
                    room += cap.saturating_sub(missing) / frame * frame;
                }
                // (Never less than `read_buffer_size`: the least room a reader is promised.)
                let floor = self.config.read_buffer_size.max(1) as u64;
                let room = (room + READ_SLACK).max(floor);
                self.read_room = room as usize;
                self.reserve_aligned(room);
                self.end_room_at(room);
            }
            None => {
                let room = self.read_reserve + READ_SLACK as usize;
                self.read_room = room;
                self.reserve_aligned(room as u64);
            }
        }
        self.lent_len = self.rbuf.len();
        self.lent_spare = self.rbuf.capacity() - self.rbuf.len();
        &mut self.rbuf
    }

    /// The room the last [`read_buf`](Self::read_buf) meant to lend: the adaptive room or
    /// the rest of a large frame (the spare capacity it lent may be larger: what an earlier
    /// room left in the allocation). A transport picks how to read by it (io_uring: into
    /// memory of its own, or straight into [`lend_read_room`](Self::lend_read_room)).
    pub fn read_room(&self) -> usize {
        self.read_room
    }

    /// [`read_buf`](Self::read_buf) for a transport that must own the memory it reads into
    /// until the read completes (io_uring: the kernel writes into it later, while the
    /// engine may be moved or busy): the same spare capacity, split off the read buffer
    /// and lent as a buffer of its own. Give it back with what was read appended (or
    /// nothing) by [`read_done`](Self::read_done); the bytes are then where `read_buf`
    /// would have had them (the same allocation: no copy), and the room adapts as after any
    /// read. Meanwhile [`read_would_block`](Self::read_would_block) leaves the read buffer
    /// as it is (it still gives back the others of an idle connection). A later `read_buf`
    /// or [`receive`](Self::receive) call means the room was given up: what is read into it
    /// must then come in like any other bytes.
    pub fn lend_read_room(&mut self) -> BytesMut {
        let len = self.read_buf().len();
        self.room_lent = true;
        if len == 0 {
            // All of it is room: lent whole, with no split (a split shares the allocation:
            // a reference count taken here and given back in `read_done`, and on a buffer
            // not shared yet an allocation for the count).
            return std::mem::take(&mut self.rbuf);
        }
        self.rbuf.split_off(len)
    }

    /// Takes back the room lent by [`lend_read_room`](Self::lend_read_room), with the bytes
    /// read into it (a room whose read failed comes back empty). Appended after the bytes
    /// the buffer held: in place when the buffer was not touched meanwhile, else copied.
    pub fn read_done(&mut self, room: BytesMut) {
        self.room_lent = false;
        if self.failed.is_some() || self.detached {
            return;
        }
        self.rbuf.unsplit(room);
    }

    /// While a large frame (over half the read room, its rest at most `MAX_RESERVE`) that
    /// is buffered whole is arriving, the bytes it still misses and its length on the wire.
    /// The room lent then ends at the frame's end: the next frame starts a read of its own,
    /// in a room that can hold it, instead of being cut by the end of this buffer and moved
    /// whole into a bigger one. (Without this a run of large frames, once out of step with
    /// the reads, stayed out of step: every frame was moved.) Small frames get the whole
    /// room: many of them arrive in one read.
    fn large_frame_missing(&self) -> Option<(u64, u64)> {
        let RecvState::Payload(p) = &self.recv else {
            return None;
        };
        if p.header.opcode.is_control()
            || self.config.recv_level == RecvLevel::Chunk
            || self.in_msg.as_ref().is_some_and(|m| m.extension)
            || p.header.payload_len <= (self.read_reserve / 2) as u64
        {
            return None;
        }
        let missing = p.remaining.saturating_sub(self.rbuf.len() as u64);
        // (A rest over `MAX_RESERVE` is not reserved whole: the buffer grows, amortised.)
        let frame = (p.header.encoded_len() as u64).saturating_add(p.header.payload_len);
        (missing > 0 && missing <= MAX_RESERVE).then_some((missing, frame))
    }

    /// [`reserve_read`](Self::reserve_read), and a room of 64 KiB or more lent in an empty
    /// buffer starts on a cache line. (The rest of an allocation after a frame handed out
    /// starts wherever that frame ended: the kernel's copy of a 64 KiB read into a
    /// destination 2 bytes off alignment cost 1.3x the server's CPU per echo at
    /// 1 x 64 KiB x 1.)
    fn reserve_aligned(&mut self, room: u64) {
        self.reserve_read(room, LINE);
        if !self.rbuf.is_empty() || self.rbuf.capacity() < LARGE_RESERVE {
            return;
        }
        if self.rbuf.as_ptr() as usize % LINE != 0 {
            self.reserve_read(room + LINE as u64, 0);
            let pad = (LINE - self.rbuf.as_ptr() as usize % LINE) % LINE;
            // (Zero bytes long: only the start of the room moves.)
            self.rbuf = self.rbuf.split_off(pad);
        }
    }

    /// Ends the room lent at `missing` bytes past what is buffered, if it reaches further.
    fn end_room_at(&mut self, missing: u64) {
        let spare = (self.rbuf.capacity() - self.rbuf.len()) as u64;
        if spare > missing {
            // The bytes past the frame's end stay in the allocation (reclaimed with it once
            // its payloads are dropped); this buffer's capacity ends at the frame.
            drop(self.rbuf.split_off(self.rbuf.len() + missing as usize));
        }
    }

    /// After a read into the lent buffer: a read that filled the room it was given (or
    /// brought at least the reserve: a reader may offer less than all the spare capacity)
    /// doubles the next reserve; one that used a quarter or less (but something) halves it.
    fn adapt_read_reserve(&mut self) {
        if self.lent_spare == 0 || self.room_lent {
            // (A room lent out is judged when it comes back filled.)
            return;
        }
        let got = self.rbuf.len().saturating_sub(self.lent_len);
        let floor = self.config.read_buffer_size.max(1);
        if got > 0 {
            self.read_filled = got >= self.lent_spare;
        }
        if got == 0 {
            // No read happened (it would have blocked, or timed out): nothing learned.
        } else if got >= self.lent_spare.min(self.read_reserve) {
            let cap = self.config.max_read_buffer_size.max(floor);
            self.read_reserve = (self.read_reserve * 2).clamp(floor, cap);
        } else if got <= self.read_reserve / 4 {
            self.read_reserve = (self.read_reserve / 2).max(floor);
        }
        self.lent_spare = 0;
    }

    /// Gives back the read buffer, the message assembly buffer and the output coalescing
    /// buffer if they hold nothing, so that an idle connection keeps no buffer memory. Call
    /// it when the transport has nothing more to read for now (a read would block): the
    /// next [`read_buf`](Self::read_buf) allocates again, at the size that reads have been
    /// filling. (The memory of payloads handed out is theirs and stays until they drop.)
    pub fn release_idle_buffers(&mut self) {
        self.adapt_read_reserve();
        self.recycled = BytesMut::new();
        // (A room lent out stays the reader's until it comes back.)
        if self.rbuf.is_empty() && !self.room_lent {
            self.rbuf = BytesMut::new();
        }
        if self.assembly.is_empty() {
            self.assembly = BytesMut::new();
        }
        if self.pending.is_empty() {
            self.pending = std::collections::VecDeque::new();
        }
        self.out.release_idle();
    }

    /// Tells the engine that the transport has nothing more to read for now (a read would
    /// block). While reads have been small, the connection gives its empty buffers back
    /// ([`release_idle_buffers`](Self::release_idle_buffers)), so it idles holding none.
    /// While they have been filling a grown read room it keeps them, and still holds them if
    /// it goes quiet now (without a clock the engine cannot tell quiet from between two
    /// reads) until a small read shrinks the room again: freeing and remaking a 64 KiB
    /// buffer at every wake made glibc move the heap's top with `brk` once per echo (+25%
    /// CPU per 64 KiB echo).
    pub fn read_would_block(&mut self) {
        // (With a room lent, nothing is learned until it comes back, and the read buffer
        // stays: see `adapt_read_reserve` and `release_idle_buffers`.)
        self.adapt_read_reserve();
        if self.recycled.capacity() > 0 {
            // Memory given back serves the read about to start, or nothing.
            self.recycled = BytesMut::new();
        }
        if self.read_reserve <= self.config.read_buffer_size.max(1) {
            self.release_idle_buffers();
        }
    }

    /// The room the next [`read_buf`](Self::read_buf) makes at least (it adapts to how
    /// much reads deliver; see [`Config::max_read_buffer_size`](crate::Config)).
    pub fn read_reserve(&self) -> usize {
        self.read_reserve
    }

    /// Makes room for at least `at_least` more bytes, and while a frame that must be
    /// buffered whole is arriving, for the rest of it (up to `MAX_RESERVE` at a time), so
    /// that a large frame is not copied again and again as the buffer doubles.
    ///
    /// A new allocation for a large room gets `slack` bytes more (`reserve_aligned`: so
    /// that the room can start on a cache line without allocating again).
    fn reserve_read(&mut self, at_least: u64, slack: usize) {
        let mut want = at_least;
        if let RecvState::Payload(p) = &self.recv {
            // (An extension's frame is decoded as it arrives: never buffered whole.)
            let extension = self.in_msg.as_ref().is_some_and(|m| m.extension);
            if (self.config.recv_level != RecvLevel::Chunk && !extension)
                || p.header.opcode.is_control()
            {
                let missing = p.remaining.saturating_sub(self.rbuf.len() as u64);
                want = want.max(missing.min(MAX_RESERVE));
            }
        }
        let want = want as usize;
        if self.rbuf.capacity() - self.rbuf.len() >= want {
            return;
        }
        if want < LARGE_RESERVE {
            self.rbuf.reserve(want);
            return;
        }
        if self.rbuf.try_reclaim(want) {
            return;
        }
        let len = self.rbuf.len();
        if slack > 0 && self.recycled.capacity() > 0 {
            // (Memory given back is taken by a large room only: a small one in it would
            // keep a large allocation. Too small for this room: dropped.)
            let mut spare = std::mem::take(&mut self.recycled);
            if spare.try_reclaim(len + want + slack) {
                spare.extend_from_slice(&self.rbuf);
                self.rbuf = spare;
                return;
            }
        }
        // A large frame and a buffer that cannot hold it: a new buffer with only the live
        // bytes. (`reserve` would grow the old allocation in place, copying all of it, the
        // bytes already consumed too: a whole message's worth.)
        let mut fresh = BytesMut::with_capacity((len + want).max(2 * len) + slack);
        fresh.extend_from_slice(&self.rbuf);
        self.rbuf = fresh;
    }

    /// Gives back a payload this connection handed out (a received message's `Bytes`)
    /// once the transport is done with it, so that its memory can take the next read
    /// instead of a new allocation. For a transport that still holds a large payload while
    /// the next read must start (io_uring: the echo of a message is being sent from its
    /// own memory while the next receive is submitted): without it every large message
    /// came into a freshly allocated buffer, which was cold in the cache (at 64 connections
    /// x 64 KiB x 1 over io_uring, the kernel's copies and the unmasking cost 1.3x what
    /// they cost in a buffer reused). Give it just before the next
    /// [`read_buf`](Self::read_buf) or [`lend_read_room`](Self::lend_read_room): a large
    /// room is made in it; it is kept only until the transport next reports that a read
    /// would block ([`read_would_block`](Self::read_would_block)), so it never adds to what
    /// an idle connection holds. It is kept only if nothing else holds its memory (else
    /// it is simply dropped), one at a time (the larger). Any `Bytes` may be given.
    pub fn recycle(&mut self, payload: Bytes) {
        if self.detached || self.failed.is_some() {
            return;
        }
        if let Ok(mut buf) = payload.try_into_mut() {
            buf.clear();
            // From the allocation's start, not the payload's: a room made in it starts
            // where the last one did (on the same line).
            let _ = buf.try_reclaim(buf.capacity() + 1);
            if buf.capacity() > self.recycled.capacity() {
                self.recycled = buf;
            }
        }
    }

    /// Bytes received and not yet turned into events.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// The next event, from the bytes received so far.
    ///
    /// `Ok(None)`: more bytes are needed (not an error). `Err(Error::Protocol(e))`: the peer
    /// broke the protocol; a close frame with `e.close_code()` is queued, and every later
    /// call returns the same error.
    pub fn poll_event(&mut self) -> Result<Option<Event>, Error> {
        if self.lent_spare != 0 {
            self.adapt_read_reserve();
        }
        if let Some(e) = self.pending.pop_front() {
            return Ok(Some(e));
        }
        if let Some(e) = &self.failed {
            return Err(Error::Protocol(e.clone()));
        }
        if self.close_received.is_some() || self.detached {
            return Ok(None);
        }
        match self.step() {
            Ok(Some(e)) => Ok(Some(e)),
            Ok(None) => {
                if self.rbuf.is_empty() && self.rbuf.capacity() > IDLE_BUFFER_KEEP {
                    self.rbuf = BytesMut::new();
                }
                Ok(None)
            }
            Err(p) => Err(self.fail(p)),
        }
    }

    fn step(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            let mut p = match self.recv {
                RecvState::Header => {
                    let Some((header, n)) = FrameHeader::decode(&self.rbuf)? else {
                        return Ok(None);
                    };
                    if let Some(msg) = self.single_frame_message(&header, n)? {
                        return Ok(Some(Event::Message(msg)));
                    }
                    self.check_header(&header)?;
                    self.rbuf.advance(n);
                    let p = PayloadState {
                        header,
                        remaining: header.payload_len,
                        mask_pos: 0,
                        checked: 0,
                        unmasked: 0,
                    };
                    self.recv = RecvState::Payload(p);
                    if let Some(e) = self.pending.pop_front() {
                        return Ok(Some(e));
                    }
                    p
                }
                RecvState::Payload(p) => p,
            };

            if p.header.opcode.is_control() {
                // At most 125 bytes: always handed out whole.
                let len = p.remaining as usize;
                if self.rbuf.len() < len {
                    return Ok(None);
                }
                let mut payload = self.rbuf.split_to(len);
                if let Some(key) = p.header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                self.recv = RecvState::Header;
                return self.on_control(p.header.opcode, payload.freeze()).map(Some);
            }

            // A data frame: unmask and validate whatever has arrived, as soon as it arrives,
            // so invalid UTF-8 fails at its first impossible byte.
            let avail = (self.rbuf.len() as u64).min(p.remaining) as usize;
            if avail > p.checked {
                if let Some(key) = p.header.mask {
                    if avail > p.unmasked {
                        let masked = &mut self.rbuf[p.unmasked..avail];
                        p.mask_pos = apply_mask(masked, key, p.mask_pos);
                        p.unmasked = avail;
                    }
                }
                let fresh = &self.rbuf[p.checked..avail];
                // (An extension's text is validated after it is decoded.)
                if let Some(m) = self.in_msg.as_mut().filter(|m| !m.extension) {
                    if let Some(utf8) = m.utf8.as_mut() {
                        utf8.feed(fresh).map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
                p.checked = avail;
            }
            if self.in_msg.as_ref().is_some_and(|m| m.extension) {
                match self.extension_step(p, avail)? {
                    super::extension::Step::Event(e) => return Ok(Some(e)),
                    super::extension::Step::Continue => continue,
                    super::extension::Step::NeedMore => return Ok(None),
                }
            }
            let complete = avail as u64 == p.remaining;
            let fin = p.header.fin;

            match self.config.recv_level {
                RecvLevel::Chunk => {
                    if complete {
                        self.end_chunked_frame(fin)?;
                    } else {
                        p.remaining -= avail as u64;
                        p.checked = 0;
                        p.unmasked = 0;
                        self.recv = RecvState::Payload(p);
                    }
                    if avail > 0 {
                        return Ok(Some(Event::FrameData(self.rbuf.split_to(avail).freeze())));
                    }
                    return Ok(self.pending.pop_front());
                }
                RecvLevel::Frame => {
                    if !complete {
                        self.recv = RecvState::Payload(p);
                        return Ok(None);
                    }
                    self.recv = RecvState::Header;
                    if fin {
                        self.finish_message()?;
                        self.pending.push_back(Event::MessageEnd);
                    }
                    return Ok(Some(Event::Frame(self.rbuf.split_to(avail).freeze())));
                }
                RecvLevel::Message => {
                    if !complete {
                        self.recv = RecvState::Payload(p);
                        return Ok(None);
                    }
                    self.recv = RecvState::Header;
                    if !fin {
                        self.assembly.extend_from_slice(&self.rbuf[..avail]);
                        self.rbuf.advance(avail);
                        continue;
                    }
                    let (kind, recheck) = self.finish_message()?;
                    let payload = if self.assembly.is_empty() {
                        self.rbuf.split_to(avail).freeze()
                    } else {
                        self.assembly.extend_from_slice(&self.rbuf[..avail]);
                        self.rbuf.advance(avail);
                        let whole = self.assembly.split().freeze();
                        if self.assembly.capacity() > IDLE_BUFFER_KEEP {
                            self.assembly = BytesMut::new();
                        }
                        whole
                    };
                    let msg = match (kind, recheck) {
                        (MessageKind::Text, false) => {
                            Message::Text(Utf8Bytes::from_validated(payload))
                        }
                        (MessageKind::Text, true) => Message::Text(
                            Utf8Bytes::try_from(payload).map_err(|_| ProtocolError::InvalidUtf8)?,
                        ),
                        (MessageKind::Binary, _) => Message::Binary(payload),
                    };
                    return Ok(Some(Event::Message(msg)));
                }
            }
        }
    }

    /// The fast path for the most common case: a whole unfragmented, uncompressed data
    /// message, all in the buffer, at the message level. It is handed out at once, without
    /// the state kept for a frame that arrives in pieces. `None`: take the general path
    /// (which also reports every error but invalid UTF-8).
    #[inline]
    fn single_frame_message(
        &mut self,
        h: &FrameHeader,
        header_len: usize,
    ) -> Result<Option<Message>, ProtocolError> {
        let len = h.payload_len;
        let within = |limit: Option<u64>| limit.map_or(true, |l| len <= l);
        if !(h.fin
            && h.rsv == 0
            && matches!(h.opcode, OpCode::Text | OpCode::Binary)
            && self.in_msg.is_none()
            && self.config.recv_level == RecvLevel::Message
            && h.mask.is_some() == (self.role == Role::Server)
            && (self.rbuf.len() - header_len) as u64 >= len
            && within(self.config.max_frame_size)
            && within(self.config.max_message_size))
        {
            return Ok(None);
        }
        self.rbuf.advance(header_len);
        let mut payload = self.rbuf.split_to(len as usize);
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        let payload = payload.freeze();
        Ok(Some(match h.opcode {
            OpCode::Text => {
                Message::Text(Utf8Bytes::try_from(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
            }
            _ => Message::Binary(payload),
        }))
    }

    /// The end of a frame at the chunk level: back to reading headers, the message closed
    /// if the frame was its last, and `FrameEnd` (then `MessageEnd`) queued.
    pub(super) fn end_chunked_frame(&mut self, fin: bool) -> Result<(), ProtocolError> {
        self.recv = RecvState::Header;
        if fin {
            self.finish_message()?;
        }
        self.pending.push_back(Event::FrameEnd);
        if fin {
            self.pending.push_back(Event::MessageEnd);
        }
        Ok(())
    }

    /// Closes the open message: its UTF-8 must be complete. Returns its kind, and whether
    /// its text must be validated again as a whole (it was exposed, or an extension's RSV
    /// bits kept it from being validated as it arrived).
    pub(super) fn finish_message(&mut self) -> Result<(MessageKind, bool), ProtocolError> {
        let Some(m) = self.in_msg.take() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        let recheck = match m.utf8 {
            Some(mut utf8) => {
                utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                m.recheck
            }
            None => m.kind == MessageKind::Text,
        };
        Ok((m.kind, recheck))
    }

    /// Checks a header against RFC 6455 §5 and the limits; opens a message on its first frame
    /// and queues the start events of the frame and chunk levels.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let first_data = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        let allowed_rsv = if first_data {
            self.config.extension_rsv | self.ext_rsv
        } else {
            0
        };
        if h.rsv & !allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        if h.opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if h.payload_len > 125 {
                return Err(ProtocolError::ControlTooLong(h.payload_len));
            }
            return Ok(());
        }
        // The limits bound what the engine buffers: whole frames at the frame and message
        // levels, whole messages at the message level. The chunk level buffers nothing.
        let level = self.config.recv_level;
        let frame_limit = match level {
            RecvLevel::Chunk => None,
            _ => self.config.max_frame_size,
        };
        if let Some(limit) = frame_limit {
            if h.payload_len > limit {
                return Err(ProtocolError::FrameTooBig {
                    len: h.payload_len,
                    limit,
                });
            }
        }
        let kind = match (h.opcode, &self.in_msg) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(m)) => m.kind,
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (OpCode::Text, None) => MessageKind::Text,
            _ => MessageKind::Binary,
        };
        let size = self.in_msg.as_ref().map_or(0, |m| m.size);
        let size = size.saturating_add(h.payload_len);
        let extension = match &self.in_msg {
            Some(m) => m.extension,
            None => h.rsv & self.ext_rsv != 0,
        };
        // An extension's message is limited by its decoded size, as it is decoded.
        let message_limit = match level {
            RecvLevel::Message if !extension => self.config.max_message_size,
            _ => None,
        };
        if let Some(limit) = message_limit {
            if size > limit {
                return Err(ProtocolError::MessageTooBig { limit });
            }
        }
        match self.in_msg.as_mut() {
            Some(m) => m.size = size,
            None => {
                if extension {
                    self.extension_start(kind, h.rsv)?;
                }
                // RSV bits the application handles itself: it alone can check the text.
                let transformed = h.rsv & self.config.extension_rsv & !self.ext_rsv != 0;
                self.in_msg = Some(InMessage {
                    kind,
                    size,
                    utf8: (kind == MessageKind::Text && !transformed).then(Utf8Validator::new),
                    recheck: false,
                    extension,
                });
                if level != RecvLevel::Message {
                    self.pending
                        .push_back(Event::MessageStart { kind, rsv: h.rsv });
                }
            }
        }
        if level == RecvLevel::Chunk {
            self.pending.push_back(Event::FrameStart(*h));
        }
        Ok(())
    }

    /// Handles a whole control frame.
    fn on_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<Event, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                if self.config.auto_pong && self.close_sent.is_none() {
                    self.queue_control(OpCode::Pong, &payload, super::outq::SegKind::Pong);
                }
                Ok(Event::Ping(payload))
            }
            OpCode::Pong => Ok(Event::Pong(payload)),
            _ => {
                let frame = CloseFrame::parse(payload)?;
                let status = frame.clone().unwrap_or_else(|| {
                    CloseFrame::new(crate::CloseCode::NO_STATUS, Utf8Bytes::default())
                });
                self.close_received = Some(status);
                self.in_msg = None;
                self.assembly = BytesMut::new();
                if self.config.auto_close && self.close_sent.is_none() {
                    // Echo the peer's code (RFC 6455 §5.5.1), without a reason.
                    let code = frame
                        .as_ref()
                        .map_or(crate::CloseCode::NO_STATUS, |f| f.code);
                    let reply = CloseFrame::new(code, Utf8Bytes::default());
                    if self.out_frame.is_some() {
                        // Not inside our streamed frame: after it (see send_frame_data).
                        self.close_reply = Some(reply);
                    } else {
                        self.queue_close(reply);
                    }
                }
                Ok(Event::Close(frame))
            }
        }
    }
}

/// A connection can move between threads.
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<Connection>()
};
