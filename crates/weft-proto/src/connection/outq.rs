//! The outgoing byte queue: framed bytes waiting for the transport, ready for a vectored write.
//!
//! Small frames are copied together into one contiguous `tail` buffer so that many messages
//! leave in one write; a large payload is queued as its own `Bytes` segment, never copied.
//! Control frames jump ahead of queued data frames, but only at a frame boundary
//! (REQUIREMENTS R4): never inside a frame that has started to go out, nor inside a
//! streamed frame whose declared length has not been supplied yet. The boundaries it can use
//! are segment starts: the coalescing buffer is cut once it holds `TAIL_CAP` bytes and before
//! each large frame, so a control frame waits behind at most about 8 KiB of small frames (16
//! KiB when a client copies a shared payload of up to 8 KiB into it to mask it) or the rest of
//! the one large frame being written. A large frame's header travels inline with its
//! payload's segment.

use crate::frame::MAX_HEADER_LEN;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// The most automatic pongs that wait unsent before newer pings replace the newest.
pub(crate) const MAX_WAITING_PONGS: usize = 32;

/// The coalescing buffer is cut into a segment of its own once it holds this many bytes. A
/// control frame waits at most for the rest of the segment being written, so this bounds how
/// long a ping or pong can be held behind coalesced small frames; a vectored write still
/// sends many segments at once.
pub(crate) const TAIL_CAP: usize = 8 * 1024;

/// Room for an inline frame header (at most `MAX_HEADER_LEN` bytes), stored whole as a
/// 16-byte word.
pub(crate) const HEAD_CAP: usize = 16;
const _: () = assert!(MAX_HEADER_LEN <= HEAD_CAP);

/// A coalescing buffer larger than this is released when the queue falls empty.
const IDLE_TAIL_KEEP: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegKind {
    /// Bytes of data frames.
    Data,
    /// One whole control frame.
    Control,
    /// One whole automatic pong (replaced by a newer one while it waits).
    Pong,
}

#[derive(Debug)]
struct Seg {
    /// A frame header that goes out before `data` (`head_len` bytes, of which `head_pos`
    /// are written): a large payload is queued with its header inline, so neither is copied
    /// into the coalescing buffer and the header needs no allocation of its own.
    head: [u8; HEAD_CAP],
    head_len: u8,
    head_pos: u8,
    data: Bytes,
    kind: SegKind,
    /// The first byte of `data` is the first byte of a frame.
    frame_start: bool,
    /// Some of `data` has been written already.
    started: bool,
    /// How many messages end within `data` (counted when it is fully written).
    msg_ends: u32,
}

impl Seg {
    fn new(data: Bytes, kind: SegKind, frame_start: bool, msg_ends: u32) -> Self {
        Seg {
            head: [0; HEAD_CAP],
            head_len: 0,
            head_pos: 0,
            data,
            kind,
            frame_start,
            started: false,
            msg_ends,
        }
    }

    /// The header bytes not yet written.
    fn head(&self) -> &[u8] {
        &self.head[self.head_pos as usize..self.head_len as usize]
    }

    /// Bytes not yet written.
    fn len(&self) -> usize {
        self.head().len() + self.data.len()
    }
}

/// One piece of the [`OutQueue`], as [`OutQueue::pieces`] lends it.
#[derive(Debug, Clone, Copy)]
pub enum OutPiece<'a> {
    /// Bytes to copy: frame headers, small frames coalesced together.
    Copy(&'a [u8]),
    /// Bytes queued as a `Bytes` of their own (a large frame's payload, a control frame,
    /// small frames already cut off the coalescing buffer): a transport that must hold
    /// what it writes until the kernel is done with it can keep a clone (a reference count,
    /// no copy) instead of copying it.
    Shared(&'a Bytes),
}

impl OutPiece<'_> {
    /// The piece's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            OutPiece::Copy(b) => b,
            OutPiece::Shared(b) => b,
        }
    }
}

/// The queue of framed bytes that the transport should write.
///
/// It implements [`bytes::Buf`]: [`chunks_vectored`](Buf::chunks_vectored) fills `IoSlice`s
/// for a vectored write, [`advance`](Buf::advance) drops what was written.
#[derive(Debug, Default)]
pub struct OutQueue {
    segs: VecDeque<Seg>,
    /// Coalesced small writes that follow all of `segs`.
    tail: BytesMut,
    tail_frame_start: bool,
    tail_started: bool,
    tail_msg_ends: u32,
    /// Control frames waiting for an open streamed frame to be completed.
    held: Vec<(Bytes, SegKind)>,
    bytes: usize,
    messages: usize,
}

impl OutQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Messages (and control frames) not yet completely written. Small messages coalesced
    /// into one buffer count as written when the whole buffer is.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// The bytes waiting to be written, in order, as [`OutPiece`]s: what
    /// [`chunks_vectored`](Buf::chunks_vectored) would lend, with each large payload as the
    /// `Bytes` it was queued as. For a transport that writes later from memory it owns
    /// (io_uring); [`advance`](Buf::advance) by what it took, as after any write.
    pub fn pieces(&self) -> impl Iterator<Item = OutPiece<'_>> {
        self.segs
            .iter()
            .flat_map(|s| [OutPiece::Copy(s.head()), OutPiece::Shared(&s.data)])
            .chain(std::iter::once(OutPiece::Copy(&self.tail[..])))
            .filter(|p| !p.as_slice().is_empty())
    }

    /// Appends data-frame bytes. `frame_start`: `data` begins a frame. `msg_end`: a message
    /// ends with the last byte of `data`. The bytes are copied into the coalescing buffer.
    pub(crate) fn push_data(&mut self, data: &[u8], frame_start: bool, msg_end: bool) {
        if data.is_empty() && !msg_end {
            return;
        }
        self.append_tail(data, frame_start);
        self.tail_msg_ends += msg_end as u32;
        self.messages += msg_end as usize;
    }

    /// The tail buffer, for callers that write into it directly (masking while copying).
    /// `frame_start` as in [`push_data`](Self::push_data); call [`tail_written`] after.
    /// `needed`: how many bytes the caller is about to write (room is reserved for them).
    pub(crate) fn tail_mut(&mut self, frame_start: bool, needed: usize) -> &mut BytesMut {
        self.open_tail(frame_start, needed);
        &mut self.tail
    }

    /// Cuts the coalescing buffer if it is full, and makes room for `needed` more bytes: in
    /// steps of at least `TAIL_CAP`, so a burst of small frames does not grow it by
    /// repeated reallocation.
    fn open_tail(&mut self, frame_start: bool, needed: usize) {
        if self.tail.len() >= TAIL_CAP {
            self.freeze_tail();
        }
        if self.tail.is_empty() {
            self.tail_frame_start = frame_start;
            self.tail_started = false;
        }
        if self.tail.capacity() - self.tail.len() < needed {
            self.tail.reserve(needed.max(TAIL_CAP));
        }
    }

    /// Accounts for `n` bytes written into [`tail_mut`](Self::tail_mut).
    pub(crate) fn tail_written(&mut self, n: usize, msg_end: bool) {
        self.bytes += n;
        self.tail_msg_ends += msg_end as u32;
        self.messages += msg_end as usize;
    }

    /// Appends a payload segment without copying it.
    pub(crate) fn push_segment(&mut self, data: Bytes, frame_start: bool, msg_end: bool) {
        self.freeze_tail();
        self.bytes += data.len();
        self.messages += msg_end as usize;
        self.segs
            .push_back(Seg::new(data, SegKind::Data, frame_start, msg_end as u32));
    }

    /// Appends a whole frame: its header (copied inline, at most 14 bytes) and its payload
    /// (not copied).
    /// `head_len` bytes of `head` are the header.
    #[inline(always)]
    pub(crate) fn push_frame(
        &mut self,
        head: [u8; HEAD_CAP],
        head_len: usize,
        payload: Bytes,
        msg_end: bool,
    ) {
        self.freeze_tail();
        self.bytes += head_len + payload.len();
        self.messages += msg_end as usize;
        self.segs.push_back(Seg {
            head,
            head_len: head_len as u8,
            head_pos: 0,
            data: payload,
            kind: SegKind::Data,
            frame_start: true,
            started: false,
            msg_ends: msg_end as u32,
        });
    }

    /// Queues a whole control frame at the earliest frame boundary that has not started to
    /// go out, after control frames queued before it. `frame_open`: a streamed data frame is
    /// incomplete, so the end of the queue is not a boundary.
    pub(crate) fn push_control(&mut self, frame: Bytes, kind: SegKind, frame_open: bool) {
        if kind == SegKind::Pong {
            // One pong per ping, but a peer that pings faster than it reads must not grow the
            // queue: past MAX_WAITING_PONGS unsent pongs, the newest one is replaced, which
            // answers only the latest ping (RFC 6455 §5.5.3 allows that).
            let mut waiting = self
                .segs
                .iter_mut()
                .filter(|s| s.kind == SegKind::Pong && !s.started);
            if let Some(last) = waiting.by_ref().nth(MAX_WAITING_PONGS - 1) {
                let newest = waiting.last().unwrap_or(last);
                self.bytes = self.bytes - newest.data.len() + frame.len();
                newest.data = frame;
                return;
            }
        }
        let boundary = self
            .segs
            .iter()
            .position(|s| s.frame_start && !s.started && s.kind == SegKind::Data);
        let at = match boundary {
            Some(i) => i,
            None if !self.tail.is_empty() && self.tail_frame_start && !self.tail_started => {
                self.freeze_tail();
                self.segs.len() - 1
            }
            None if !frame_open => {
                self.freeze_tail();
                self.segs.len()
            }
            None => {
                self.hold(frame, kind);
                return;
            }
        };
        self.bytes += frame.len();
        self.messages += 1;
        self.segs.insert(at, Seg::new(frame, kind, true, 1));
    }

    /// Queues a close frame after everything queued so far: data sent before a close is
    /// never overtaken by it.
    pub(crate) fn push_last(&mut self, frame: Bytes) {
        self.freeze_tail();
        self.bytes += frame.len();
        self.messages += 1;
        self.segs
            .push_back(Seg::new(frame, SegKind::Control, true, 1));
    }

    /// Keeps a control frame until the open streamed frame is complete. Counted as a queued
    /// message (not as bytes: it cannot be written yet). Waiting pongs are capped as in
    /// [`push_control`](Self::push_control).
    fn hold(&mut self, frame: Bytes, kind: SegKind) {
        if kind == SegKind::Pong {
            let mut waiting = self.held.iter_mut().filter(|(_, k)| *k == SegKind::Pong);
            if let Some(last) = waiting.by_ref().nth(MAX_WAITING_PONGS - 1) {
                waiting.last().unwrap_or(last).0 = frame;
                return;
            }
        }
        self.messages += 1;
        self.held.push((frame, kind));
    }

    /// A streamed frame was completed: control frames held for it go out now.
    pub(crate) fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        for (frame, kind) in std::mem::take(&mut self.held) {
            self.messages -= 1;
            self.push_control(frame, kind, false);
        }
    }

    /// Whether control frames wait for an open streamed frame.
    #[cfg(test)]
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    fn append_tail(&mut self, data: &[u8], frame_start: bool) {
        self.open_tail(frame_start, data.len());
        self.tail.extend_from_slice(data);
        self.bytes += data.len();
    }

    /// Ends the coalescing buffer: what follows starts a new segment (used before the header
    /// of a large frame, so that the header is a frame boundary of its own).
    #[inline]
    pub(crate) fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            self.cut_tail();
        }
    }

    #[inline(never)]
    fn cut_tail(&mut self) {
        let data = self.tail.split().freeze();
        let msg_ends = std::mem::take(&mut self.tail_msg_ends);
        let mut seg = Seg::new(data, SegKind::Data, self.tail_frame_start, msg_ends);
        seg.started = self.tail_started;
        self.segs.push_back(seg);
    }

    /// Drops the memory of the coalescing buffer and of the segment list if they hold
    /// nothing.
    pub(crate) fn release_idle(&mut self) {
        if self.tail.is_empty() {
            self.tail = BytesMut::new();
        }
        if self.segs.is_empty() {
            self.segs = VecDeque::new();
        }
    }

    /// Takes the next contiguous piece of the queue whole (a payload segment, the coalescing
    /// buffer, or a large frame's inline header, which is the one piece copied: at most 14
    /// bytes), as if it had been written. For a writer that
    /// must write outside a lock on the connection: take pieces under the lock, write them
    /// after, in the order taken.
    pub fn pop_chunk(&mut self) -> Option<Bytes> {
        let data = match self.segs.front_mut() {
            Some(seg) if !seg.head().is_empty() => {
                // The inline header goes as a piece of its own (a small copy).
                let head = Bytes::copy_from_slice(seg.head());
                seg.head_pos = seg.head_len;
                seg.started = true;
                self.bytes -= head.len();
                return Some(head);
            }
            Some(_) => {
                let seg = self.segs.pop_front()?;
                self.messages -= seg.msg_ends as usize;
                seg.data
            }
            None if !self.tail.is_empty() => {
                self.messages -= std::mem::take(&mut self.tail_msg_ends) as usize;
                self.tail.split().freeze()
            }
            None => return None,
        };
        self.bytes -= data.len();
        Some(data)
    }

    /// Copies as much as fits into `dst` and drops it from the queue; returns the count.
    /// This is the way to encode into caller-owned memory with no I/O at all.
    pub fn write_to(&mut self, dst: &mut [u8]) -> usize {
        let mut n = 0;
        while n < dst.len() && self.has_remaining() {
            let c = self.chunk();
            let k = c.len().min(dst.len() - n);
            dst[n..n + k].copy_from_slice(&c[..k]);
            self.advance(k);
            n += k;
        }
        n
    }
}

impl Buf for OutQueue {
    fn remaining(&self) -> usize {
        self.bytes
    }

    fn chunk(&self) -> &[u8] {
        match self.segs.front() {
            Some(s) if s.head_pos < s.head_len => s.head(),
            Some(s) => &s.data,
            None => &self.tail,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for s in &self.segs {
            for part in [s.head(), &s.data[..]] {
                if part.is_empty() {
                    continue;
                }
                if n == dst.len() {
                    return n;
                }
                dst[n] = IoSlice::new(part);
                n += 1;
            }
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.bytes, "advance past the end of the queue");
        self.bytes -= cnt;
        while let Some(s) = self.segs.front_mut() {
            if cnt < s.len() {
                let h = cnt.min(s.head().len());
                s.head_pos += h as u8;
                s.data.advance(cnt - h);
                s.started |= cnt > 0;
                return;
            }
            cnt -= s.len();
            self.messages -= s.msg_ends as usize;
            self.segs.pop_front();
        }
        if cnt > 0 {
            self.tail.advance(cnt);
            self.tail_started = true;
        }
        if self.tail.is_empty() {
            self.messages -= std::mem::take(&mut self.tail_msg_ends) as usize;
            if self.tail.capacity() > IDLE_TAIL_KEEP {
                // Give back a buffer that a burst grew; idle connections stay small.
                self.tail = BytesMut::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut OutQueue) -> Vec<u8> {
        let mut v = Vec::new();
        while q.has_remaining() {
            let c = q.chunk().to_vec();
            q.advance(c.len());
            v.extend(c);
        }
        v
    }

    #[test]
    fn control_goes_before_unstarted_data() {
        let mut q = OutQueue::default();
        q.push_data(b"AAAA", true, true);
        q.push_segment(Bytes::from_static(b"BBBB"), true, true);
        q.push_control(Bytes::from_static(b"P"), SegKind::Control, false);
        assert_eq!(q.messages(), 3);
        assert_eq!(drain(&mut q), b"PAAAABBBB");
        assert_eq!(q.messages(), 0);
    }

    #[test]
    fn control_waits_for_started_frame() {
        let mut q = OutQueue::default();
        q.push_data(b"AAAA", true, false);
        q.push_data(b"aaaa", false, true);
        q.push_segment(Bytes::from_static(b"BBBB"), true, true);
        q.advance(2);
        q.push_control(Bytes::from_static(b"P"), SegKind::Control, false);
        q.push_control(Bytes::from_static(b"Q"), SegKind::Control, false);
        assert_eq!(drain(&mut q), b"AAaaaaPQBBBB");
    }

    #[test]
    fn control_held_while_streamed_frame_open() {
        let mut q = OutQueue::default();
        q.push_data(b"HDR", true, false);
        q.advance(1);
        q.push_control(Bytes::from_static(b"P"), SegKind::Control, true);
        assert!(q.has_held());
        q.push_data(b"rest", false, false);
        q.release_held();
        q.push_data(b"NEXT", true, true);
        assert_eq!(drain(&mut q), b"DRrestPNEXT");
    }

    #[test]
    fn pongs_are_bounded() {
        let mut q = OutQueue::default();
        for i in 0..MAX_WAITING_PONGS + 3 {
            q.push_control(Bytes::from(vec![b'a' + i as u8]), SegKind::Pong, false);
        }
        assert_eq!(q.messages(), MAX_WAITING_PONGS);
        let out = drain(&mut q);
        assert_eq!(out.len(), MAX_WAITING_PONGS);
        // The first ones in order, the last slot answers the latest ping.
        assert_eq!(out[0], b'a');
        assert_eq!(
            out[MAX_WAITING_PONGS - 2],
            b'a' + MAX_WAITING_PONGS as u8 - 2
        );
        assert_eq!(
            out[MAX_WAITING_PONGS - 1],
            b'a' + MAX_WAITING_PONGS as u8 + 2
        );
    }

    #[test]
    fn pop_chunk_takes_pieces_in_order() {
        let mut q = OutQueue::default();
        q.push_data(b"ab", true, true);
        q.push_segment(Bytes::from_static(b"cdef"), true, true);
        q.push_data(b"gh", true, true);
        q.advance(1);
        let mut all = Vec::new();
        while let Some(c) = q.pop_chunk() {
            all.extend_from_slice(&c);
        }
        assert_eq!(all, b"bcdefgh");
        assert_eq!((q.len(), q.messages()), (0, 0));
    }

    #[test]
    fn frames_with_inline_headers() {
        let mut q = OutQueue::default();
        q.push_data(b"ab", true, true);
        let head = |h: &[u8; 2]| {
            let mut a = [0; HEAD_CAP];
            a[..2].copy_from_slice(h);
            a
        };
        q.push_frame(head(b"HH"), 2, Bytes::from_static(b"payload"), true);
        q.push_frame(head(b"KK"), 2, Bytes::from_static(b"more"), true);
        assert_eq!((q.len(), q.messages()), (2 + 9 + 6, 3));
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(q.chunks_vectored(&mut slices), 5);
        assert_eq!(&*slices[1], b"HH");
        assert_eq!(&*slices[2], b"payload");
        // Stop inside the first frame's header: a control frame waits for that frame, and
        // goes before the next one.
        q.advance(3);
        q.push_control(Bytes::from_static(b"P"), SegKind::Control, false);
        let mut out = [0u8; 4];
        assert_eq!(q.write_to(&mut out), 4);
        assert_eq!(&out, b"Hpay");
        assert_eq!(q.pop_chunk().as_deref(), Some(&b"load"[..]));
        assert_eq!(q.pop_chunk().as_deref(), Some(&b"P"[..]));
        assert_eq!(q.pop_chunk().as_deref(), Some(&b"KK"[..]));
        assert_eq!(q.messages(), 1);
        assert_eq!(drain(&mut q), b"more");
        assert_eq!((q.len(), q.messages()), (0, 0));
    }

    #[test]
    fn vectored_and_write_to() {
        let mut q = OutQueue::default();
        q.push_data(b"ab", true, true);
        q.push_segment(Bytes::from_static(b"cdef"), true, true);
        q.push_data(b"gh", true, true);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(q.chunks_vectored(&mut slices), 3);
        let mut out = [0u8; 5];
        assert_eq!(q.write_to(&mut out), 5);
        assert_eq!(&out, b"abcde");
        assert_eq!(q.messages(), 2);
        let mut out = [0u8; 8];
        assert_eq!(q.write_to(&mut out), 3);
        assert_eq!(&out[..3], b"fgh");
        assert!(q.is_empty());
        assert_eq!(q.messages(), 0);
    }
}
