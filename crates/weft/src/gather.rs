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

/// How the next write of the outgoing queue goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A plain write of the first piece (`out.chunk()`): the only piece, or the first
    /// of many on a transport that does not vector.
    First,
    /// Several pieces, 4 KiB or less in all: copy them with [`copy`] and write that.
    Gather,
    /// Several large pieces: a vectored write of the pieces (`out.chunks_vectored`).
    Vectored,
}

/// Chooses the next write of `out`. `vectored` is the transport's own
/// `is_write_vectored`. Deciding costs nothing: a buffer on the stack is made only by
/// the caller's `Gather` arm, the slices only by its `Vectored` arm.
pub(crate) fn plan(out: &OutQueue, vectored: bool) -> Plan {
    let total = out.remaining();
    if out.chunk().len() == total {
        Plan::First
    } else if total <= GATHER_MAX {
        Plan::Gather
    } else if vectored {
        Plan::Vectored
    } else {
        Plan::First
    }
}

/// Copies the front of `out` (all of it, when `plan` said `Gather`) into `stack` and
/// returns the copy. A short write of it is a prefix of the queue like any other: the
/// caller advances the queue by what was written.
pub(crate) fn copy<'a>(out: &OutQueue, stack: &'a mut [u8; GATHER_MAX]) -> &'a [u8] {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let n = out.chunks_vectored(&mut slices);
    let mut at = 0;
    for s in &slices[..n] {
        let take = s.len().min(GATHER_MAX - at);
        stack[at..at + take].copy_from_slice(&s[..take]);
        at += take;
        if at == GATHER_MAX {
            break;
        }
    }
    &stack[..at]
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

    /// What the write that `plan` chose hands the transport.
    fn written(out: &OutQueue, vectored: bool) -> Vec<u8> {
        match plan(out, vectored) {
            Plan::First => out.chunk().to_vec(),
            Plan::Gather => copy(out, &mut [0u8; GATHER_MAX]).to_vec(),
            Plan::Vectored => {
                let mut s = [IoSlice::new(&[]); MAX_IOVECS];
                let n = out.chunks_vectored(&mut s);
                s[..n].iter().flat_map(|s| s.to_vec()).collect()
            }
        }
    }

    /// The queue's bytes, in order.
    fn whole(out: &OutQueue) -> Vec<u8> {
        let mut s = [IoSlice::new(&[]); MAX_IOVECS];
        let n = out.chunks_vectored(&mut s);
        s[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn small_pieces_are_gathered_into_one_plain_write() {
        let mut c = queued(&[1024]);
        let out = c.outgoing();
        assert!(out.chunk().len() < out.remaining(), "two pieces queued");
        assert_eq!(plan(out, true), Plan::Gather);
        assert_eq!(plan(out, false), Plan::Gather);
        assert_eq!(written(out, true), whole(out));
        assert_eq!(written(out, true).len(), out.remaining());
    }

    #[test]
    fn one_piece_is_written_as_it_is() {
        let mut c = queued(&[16]);
        let out = c.outgoing();
        assert_eq!(plan(out, true), Plan::First);
        assert_eq!(out.chunk().len(), 18);
        assert_eq!(written(out, true), whole(out));
    }

    #[test]
    fn large_queues_stay_vectored_or_take_the_first_piece() {
        let mut c = queued(&[3000, 3000]);
        let out = c.outgoing();
        assert_eq!(plan(out, true), Plan::Vectored);
        assert_eq!(written(out, true), whole(out));
        assert_eq!(plan(out, false), Plan::First);
        assert_eq!(written(out, false).len(), out.chunk().len());
        assert!(out.chunk().len() < out.remaining());
    }

    #[test]
    fn a_copy_never_overruns_the_stack_buffer() {
        // `copy` of a queue larger than the buffer (which `plan` never asks for) takes
        // a prefix that fits.
        let mut c = queued(&[3000, 3000]);
        let out = c.outgoing();
        let got = copy(out, &mut [0u8; GATHER_MAX]).to_vec();
        assert_eq!(got.len(), GATHER_MAX);
        assert_eq!(got[..], whole(out)[..GATHER_MAX]);
    }

    #[test]
    fn a_gathered_write_cut_short_goes_on_from_where_it_stopped() {
        let mut c = queued(&[300, 500, 700]);
        let all = whole(c.outgoing());
        assert_eq!(plan(c.outgoing(), true), Plan::Gather);
        let mut sent = Vec::new();
        while c.want_write() {
            // A transport that takes at most 333 bytes at a time.
            let chunk = written(c.outgoing(), true);
            let n = chunk.len().min(333);
            sent.extend_from_slice(&chunk[..n]);
            c.outgoing().advance(n);
        }
        assert_eq!(sent, all);
    }
}
