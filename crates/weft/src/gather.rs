//! How the tokio and blocking drivers hand the engine's outgoing queue to a transport:
//! one contiguous piece as it is; several pieces that are small (a frame header and a
//! payload under 4 KiB, the usual echo; or up to 16 KiB of pieces of 1 KiB or less on
//! average, a burst of small messages) copied into one buffer and written with a plain
//! `send(2)`; anything else as a vectored write of the pieces.
//!
//! Why gather: the engine queues a payload of 256 bytes or more as its own `Bytes` (no
//! copy), so a 1 KiB message leaves as two pieces (its header and its payload). `writev(2)`
//! of many small pieces costs the kernel more than `send(2)` of one buffer: the iovec
//! import and the VFS layers (~5% of the server's CPU per echo of 1 KiB text, one message
//! in flight), and a copy into the socket's buffers that runs piece by piece (at 512
//! connections x 1 KiB x 8 in flight, 16 pieces per write, `_copy_from_iter` took twice
//! the time that floor-epoll's `send` of the same bytes in one buffer took). Copying up to
//! 16 KiB costs less than that. Larger queues, or fewer larger pieces, stay vectored: there
//! the copy would cost more than the call it saves.
//!
//! The copy goes into a buffer of the thread's (allocated once, at most `GATHER_MAX`
//! bytes, never zeroed again), not into the connection's: an idle connection keeps
//! nothing for it.

use bytes::Buf;
use std::cell::RefCell;
use std::io::IoSlice;
use weft_proto::OutQueue;

/// At most this many bytes in several pieces are gathered into one plain write, whatever
/// their sizes.
const GATHER_SMALL: usize = 4096;

/// At most this many bytes are gathered when their pieces are small on average (at most
/// `GATHER_PIECE`).
const GATHER_MAX: usize = 16 * 1024;

/// The largest average piece that a queue of up to `GATHER_MAX` bytes is gathered with
/// (a frame's header counts as a piece: 1 KiB messages average about 514 bytes).
const GATHER_PIECE: usize = 1024;

/// At most this many pieces go into one vectored write.
pub(crate) const MAX_IOVECS: usize = 64;

thread_local! {
    /// The thread's gathering buffer (see the module docs).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How the next write of the outgoing queue goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A plain write of the first piece (`out.chunk()`): the only piece, or the first
    /// of many on a transport that does not vector.
    First,
    /// Several small pieces: copy them with [`gathered`] and write that.
    Gather,
    /// Several large pieces: a vectored write of the pieces (`out.chunks_vectored`).
    Vectored,
}

/// Chooses the next write of `out`. `vectored` is the transport's own
/// `is_write_vectored`. Deciding costs little: at most a count of the first pieces of a
/// queue of 4 to 16 KiB; the slices are made only by the caller's `Vectored` arm.
pub(crate) fn plan(out: &OutQueue, vectored: bool) -> Plan {
    let total = out.remaining();
    if out.chunk().len() == total {
        Plan::First
    } else if total <= GATHER_SMALL || (total <= GATHER_MAX && small_pieces(out, total)) {
        Plan::Gather
    } else if vectored {
        Plan::Vectored
    } else {
        Plan::First
    }
}

/// Whether the `total` bytes of `out` come in pieces of at most `GATHER_PIECE` bytes on
/// average.
fn small_pieces(out: &OutQueue, total: usize) -> bool {
    let needed = total.div_ceil(GATHER_PIECE);
    out.pieces().take(needed).count() >= needed
}

/// Copies the front of `out` (all of it, when `plan` said `Gather`; at most `GATHER_MAX`
/// bytes) into the thread's buffer and calls `write` with the copy. A short write of it is
/// a prefix of the queue like any other: the caller advances the queue by what was
/// written.
pub(crate) fn gathered<R>(out: &OutQueue, write: impl FnOnce(&[u8]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            fill(out, &mut buf);
            write(&buf)
        }
        // (Only if `write` itself gathers on this thread: a transport that is itself
        // driven by a WebSocket. A buffer of its own then.)
        Err(_) => {
            let mut buf = Vec::new();
            fill(out, &mut buf);
            write(&buf)
        }
    })
}

/// `buf` cleared, then the front of `out` up to `GATHER_MAX` bytes.
fn fill(out: &OutQueue, buf: &mut Vec<u8>) {
    buf.clear();
    // Once, at its full size: it never grows past it.
    buf.reserve_exact(GATHER_MAX);
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let n = out.chunks_vectored(&mut slices);
    for s in &slices[..n] {
        let take = s.len().min(GATHER_MAX - buf.len());
        buf.extend_from_slice(&s[..take]);
        if buf.len() == GATHER_MAX {
            break;
        }
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

    /// What the write that `plan` chose hands the transport.
    fn written(out: &OutQueue, vectored: bool) -> Vec<u8> {
        match plan(out, vectored) {
            Plan::First => out.chunk().to_vec(),
            Plan::Gather => gathered(out, |b| b.to_vec()),
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
    fn a_burst_of_small_messages_up_to_16_kib_is_gathered() {
        // 8 messages of 1 KiB: 16 pieces (header, payload), 8.2 KiB in all.
        let mut c = queued(&[1024; 8]);
        let out = c.outgoing();
        assert_eq!(plan(out, true), Plan::Gather);
        assert_eq!(written(out, true), whole(out));
        // 16 of them: over 16 KiB, vectored.
        let mut c = queued(&[1024; 16]);
        assert_eq!(plan(c.outgoing(), true), Plan::Vectored);
    }

    #[test]
    fn large_pieces_over_4_kib_stay_vectored() {
        // One frame of 12 KB: its header and its payload, not copied.
        let mut c = queued(&[12_000]);
        assert_eq!(plan(c.outgoing(), true), Plan::Vectored);
        // Two of 3 KB: 1.5 KB pieces on average (headers count).
        let mut c = queued(&[3000, 3000]);
        assert_eq!(plan(c.outgoing(), true), Plan::Vectored);
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
    fn a_copy_never_grows_past_gather_max() {
        // `gathered` of a queue larger than `GATHER_MAX` (which `plan` never asks for)
        // takes a prefix that fits.
        let mut c = queued(&[9000, 9000]);
        let out = c.outgoing();
        let got = gathered(out, |b| b.to_vec());
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

    #[test]
    fn a_gather_inside_a_gather_gets_a_buffer_of_its_own() {
        let mut outer = queued(&[300, 500]);
        let mut inner = queued(&[700, 900]);
        let (o, i) = (whole(outer.outgoing()), whole(inner.outgoing()));
        let (got_o, got_i) = gathered(outer.outgoing(), |ob| {
            let got_i = gathered(inner.outgoing(), |ib| ib.to_vec());
            (ob.to_vec(), got_i)
        });
        assert_eq!(got_o, o);
        assert_eq!(got_i, i);
    }
}
