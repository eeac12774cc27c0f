//! Measures the heap one permessage-deflate connection holds (compressor + decompressor
//! state and windows), for each window size, with a counting allocator.
//!
//! ```text
//! cargo run --release -p weft-proto --example deflate-memory
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use weft_proto::deflate::{Deflate, DeflateParams};
use weft_proto::{Config, Connection, Message, Role};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap_of(config: Config) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    let mut server = Connection::new(Role::Server, config.clone());
    let mut client = Connection::new(Role::Client, config);
    // One message each way, so both contexts are in use, then drained.
    let text = "a line of text that compresses well. ".repeat(100);
    client.send(Message::from(text.clone())).unwrap_or(());
    let out = client.outgoing();
    let wire = bytes::Buf::copy_to_bytes(out, bytes::Buf::remaining(out));
    server.receive(&wire);
    while let Ok(Some(_)) = server.poll_event() {}
    server.send(Message::from(text)).unwrap_or(());
    let out = server.outgoing();
    let _ = bytes::Buf::copy_to_bytes(out, bytes::Buf::remaining(out));
    let held = LIVE.load(Ordering::Relaxed) - before;
    drop((server, client));
    held / 2
}

fn main() {
    let plain = heap_of(Config::default());
    println!(
        "no compression: {:>7} bytes per connection (after one message each way)",
        plain
    );
    for bits in [9u8, 10, 12, 15] {
        for nct in [false, true] {
            let mut config = Config::default();
            config.deflate = Some(Deflate {
                params: DeflateParams {
                    server_no_context_takeover: nct,
                    client_no_context_takeover: nct,
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                },
                level: 1,
                threshold: 16,
            });
            println!(
                "deflate, window bits {bits:>2}, no context takeover {nct:>5}: {:>7} bytes per connection",
                heap_of(config)
            );
        }
    }
}
