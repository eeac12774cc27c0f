//! How the tokio and blocking drivers hand the engine's outgoing queue to a transport:
//! one contiguous piece as it is; several pieces that are small in all (a frame header
//! and a payload under 4 KiB, the usual echo) copied into one buffer on the stack and
//! written with a plain `send(2)`; anything larger as a vectored write of the pieces.
//!
//! Why gather: the engine queues a payload of 256 bytes or more as its own `Bytes` (no
//! copy), so a 1 KiB message leaves as two pieces. `writev(2)` of two pieces costs the
//! kernel more than `send(2)` of one (the iovec import and the VFS layers: ~5% of the
//! server's CPU per echo of 1 KiB text, one message in flight, under `perf`), while
//! copying up to 4 KiB costs tens of nanoseconds. Larger queues stay vectored: there the
//! copy would cost more than the call it saves.

use bytes::Buf;
use std::io::IoSlice;
use weft_proto::OutQueue;

/// At most this many bytes in several pieces are gathered into one plain write.
pub(crate) const GATHER_MAX: usize = 4096;

/// At most this many pieces go into one vectored write.
pub(crate) const MAX_IOVECS: usize = 64;

/// One write of the outgoing queue.
pub(crate) enum Write<'a> {
    /// One contiguous buffer: a plain write.
    Plain(&'a [u8]),
    /// The first `n` slices: a vectored write.
    Vectored(usize),
}

/// Chooses the next write of `out`: its only piece, or its small pieces copied into
/// `stack`, or (when `vectored`, the transport's own `is_write_vectored`) the pieces in
/// `slices`, or else the first piece. A short write of a gathered copy is a prefix of
/// the queue like any other: the caller advances the queue by what was written.
pub(crate) fn plan<'a>(
    out: &'a OutQueue,
    stack: &'a mut [u8; GATHER_MAX],
    slices: &mut [IoSlice<'a>; MAX_IOVECS],
    vectored: bool,
) -> Write<'a> {
    let first = out.chunk();
    let total = out.remaining();
    if first.len() == total {
        return Write::Plain(first);
    }
    if total <= GATHER_MAX {
        let n = out.chunks_vectored(slices);
        let mut at = 0;
        for s in &slices[..n] {
            stack[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        return Write::Plain(&stack[..at]);
    }
    if vectored {
        Write::Vectored(out.chunks_vectored(slices))
    } else {
        Write::Plain(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::{Config, Connection, Message, Role};

    fn queued(sizes: &[usize]) -> Connection {
        let mut c = Connection::new(Role::Server, Config::default());
        for &n in sizes {
            c.send(Message::Binary(vec![7u8; n].into())).unwrap();
        }
        c
    }

    /// What the write `w` hands the transport.
    fn written(w: &Write<'_>, slices: &[IoSlice<'_>]) -> Vec<u8> {
        match w {
            Write::Plain(b) => b.to_vec(),
            Write::Vectored(n) => slices[..*n].iter().flat_map(|s| s.to_vec()).collect(),
        }
    }

    /// The queue's bytes, in order, as a vectored write would send them.
    fn whole(out: &OutQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = out.chunks_vectored(&mut slices);
        slices[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn small_pieces_are_gathered_into_one_plain_write() {
        let mut c = queued(&[1024]);
        let out = c.outgoing();
        assert!(out.chunk().len() < out.remaining(), "two pieces queued");
        let mut stack = [0u8; GATHER_MAX];
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let want = whole(out);
        let w = plan(out, &mut stack, &mut slices, true);
        assert!(matches!(w, Write::Plain(b) if b.len() == out.remaining()));
        assert_eq!(written(&w, &slices), want);
    }

    #[test]
    fn one_piece_is_written_as_it_is() {
        let mut c = queued(&[16]);
        let out = c.outgoing();
        let first = out.chunk().as_ptr();
        let mut stack = [0u8; GATHER_MAX];
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let w = plan(out, &mut stack, &mut slices, true);
        assert!(matches!(w, Write::Plain(b) if b.as_ptr() == first && b.len() == 18));
    }

    #[test]
    fn large_queues_stay_vectored_or_take_the_first_piece() {
        let mut c = queued(&[3000, 3000]);
        let out = c.outgoing();
        let want = whole(out);
        let mut stack = [0u8; GATHER_MAX];
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let w = plan(out, &mut stack, &mut slices, true);
        assert!(matches!(w, Write::Vectored(n) if n > 1));
        assert_eq!(written(&w, &slices), want);
        let first = out.chunk().len();
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let w = plan(out, &mut stack, &mut slices, false);
        assert!(matches!(w, Write::Plain(b) if b.len() == first));
    }

    #[test]
    fn a_gathered_write_cut_short_goes_on_from_where_it_stopped() {
        let mut c = queued(&[300, 500, 700]);
        let all = whole(c.outgoing());
        let mut sent = Vec::new();
        while c.want_write() {
            let out = c.outgoing();
            let mut stack = [0u8; GATHER_MAX];
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let w = plan(out, &mut stack, &mut slices, true);
            // A transport that takes at most 333 bytes at a time.
            let chunk = written(&w, &slices);
            let n = chunk.len().min(333);
            sent.extend_from_slice(&chunk[..n]);
            c.outgoing().advance(n);
        }
        assert_eq!(sent, all);
    }
}
