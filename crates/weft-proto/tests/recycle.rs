//! Memory given back to the engine (`Connection::recycle`): a transport that still sends a
//! large payload while the next read starts (io_uring) gives the payload back once its send
//! completed, and the next large read is made in it, not in a new allocation. Counted with
//! an allocator that tallies this thread's large allocations (a test of its own: the
//! allocator is the whole binary's).

mod common;
use bytes::Bytes;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use weft_proto::{Config, Event};

/// Counts, per thread, the allocations (and growths) of 32 KiB or more.
struct CountLarge;

thread_local! {
    static LARGE: Cell<usize> = const { Cell::new(0) };
}

const LARGE_FROM: usize = 32 * 1024;

fn count(size: usize) {
    if size >= LARGE_FROM {
        // (`try_with`: never fails while the thread lives; a thread being torn down is
        // not counted.)
        let _ = LARGE.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call goes to the system allocator unchanged; the count only reads `size`.
unsafe impl GlobalAlloc for CountLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CountLarge = CountLarge;

fn large_allocations() -> usize {
    LARGE.with(|n| n.get())
}

/// How the transport behaves between a completed send and the next read.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    /// Drops the payload (what a transport without `recycle` does).
    Drops,
    /// Gives it back just before the read.
    GivesBack,
    /// Gives it back, then reports that a read would block before reading.
    GivesBackThenBlocks,
}

/// 64 KiB messages echoed one at a time as over io_uring: the echo of a message is still
/// being sent from its payload while the next message is read; by the read after, that
/// send has completed. Returns the large allocations made while the last 12 of 16 messages
/// were read.
fn echo(transport: Transport) -> usize {
    const PAYLOAD: usize = 64 * 1024;
    let (mut client, mut server) = pair(Config::default());
    let mut sending: Option<Bytes> = None;
    let mut sent: Option<Bytes> = None;
    let mut counted = 0;
    for i in 0..16u8 {
        client.send_binary(vec![i; PAYLOAD]).unwrap();
        let wire = take_out(&mut client);
        let before = large_allocations();
        if let Some(payload) = sent.take() {
            if transport != Transport::Drops {
                server.recycle(payload);
            }
        }
        if transport == Transport::GivesBackThenBlocks {
            server.read_would_block();
        }
        let mut at = 0;
        let mut events = Vec::new();
        while at < wire.len() {
            let buf = server.read_buf();
            let n = (buf.capacity() - buf.len()).min(wire.len() - at);
            buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            events.extend(drain(&mut server).unwrap());
        }
        if i >= 4 {
            counted += large_allocations() - before;
        }
        let [Event::Message(m)] = &events[..] else {
            panic!("{events:?}")
        };
        let payload = m.clone().into_payload();
        assert!(payload.len() == PAYLOAD && payload.iter().all(|&b| b == i));
        drop(events);
        sent = sending.replace(payload);
    }
    counted
}

#[test]
fn a_payload_given_back_takes_the_next_large_read() {
    // Without it, every message needs a new buffer (its payload and the one before are
    // both still held): one, not two (a room that starts on a cache line is made in one
    // allocation, not in a second one after the first turned out misaligned). With it,
    // the large rooms need none (at most one growth of the small room a header arrives in).
    assert_eq!(echo(Transport::Drops), 12);
    let given_back = echo(Transport::GivesBack);
    assert!(
        given_back <= 1,
        "{given_back} large allocations for 12 messages"
    );
}

/// Memory given back is kept only until the transport reports that a read would block: an
/// idle connection holds none of it.
#[test]
fn a_payload_given_back_is_dropped_when_a_read_would_block() {
    assert!(echo(Transport::GivesBackThenBlocks) >= 12);
}
