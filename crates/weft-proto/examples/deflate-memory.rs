//! Measures the heap one permessage-deflate connection holds (compressor + decompressor
//! state and windows), for each window size, with and without context takeover, with a
//! counting allocator. The zlib state is made at the first compressed message that needs it
//! and, for a direction without context takeover, dropped after each message: such an idle
//! connection holds none of it.
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

/// Heap held by a server and a client connection: just made, and idle after one message
/// each way (so both directions' contexts were needed once).
struct Held {
    fresh: usize,
    idle_server: usize,
    idle_client: usize,
}

fn heap_of(config: Config) -> Held {
    let live = || LIVE.load(Ordering::Relaxed);
    let start = live();
    let mut server = Connection::new(Role::Server, config.clone());
    let mut client = Connection::new(Role::Client, config);
    let fresh = (live() - start) / 2;
    let text = "a line of text that compresses well. ".repeat(100);
    client.send(Message::from(text.clone())).unwrap_or(());
    let out = client.outgoing();
    let wire = bytes::Buf::copy_to_bytes(out, bytes::Buf::remaining(out));
    server.receive(&wire);
    while let Ok(Some(_)) = server.poll_event() {}
    drop(wire);
    server.send(Message::from(text)).unwrap_or(());
    let out = server.outgoing();
    let wire = bytes::Buf::copy_to_bytes(out, bytes::Buf::remaining(out));
    client.receive(&wire);
    while let Ok(Some(_)) = client.poll_event() {}
    drop(wire);
    let both = live() - start;
    drop(server);
    let idle_client = live() - start;
    drop(client);
    Held {
        fresh,
        idle_server: both - idle_client,
        idle_client,
    }
}

fn main() {
    let plain = heap_of(Config::default());
    println!(
        "no compression: {:>7} bytes per connection just made, {:>7} (server) / {:>7} (client) idle after one message each way",
        plain.fresh, plain.idle_server, plain.idle_client
    );
    println!();
    println!("permessage-deflate, level 1: bytes per connection");
    println!(
        "{:>4}  {:>26}  {:>10}  {:>12}  {:>12}",
        "bits", "no context takeover", "just made", "idle server", "idle client"
    );
    for bits in [9u8, 10, 12, 15] {
        for (snct, cnct, label) in [
            (false, false, "neither"),
            (true, false, "server's only"),
            (true, true, "both directions"),
        ] {
            let mut config = Config::default();
            config.deflate = Some(Deflate {
                params: DeflateParams {
                    server_no_context_takeover: snct,
                    client_no_context_takeover: cnct,
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                },
                level: 1,
                threshold: 16,
            });
            let held = heap_of(config);
            println!(
                "{bits:>4}  {label:>26}  {:>10}  {:>12}  {:>12}",
                held.fresh, held.idle_server, held.idle_client
            );
        }
    }
}
