//! Sends a file of any size as one binary message, streamed: a single frame of the file's
//! length whose payload is read from disk as it goes out, so memory stays bounded whatever
//! the size. Prints the byte count and a 64-bit FNV-1a checksum (as `file-receive` does),
//! and exits after the close handshake.
//!
//! ```text
//! cargo run --release -p weft --example file-receive -- --addr 127.0.0.1:9004 --out copy.bin
//! cargo run --release -p weft --example file-send -- ws://127.0.0.1:9004/ original.bin
//! ```
//! Usage: `file-send URL PATH`. Prints `sent BYTES bytes fnv1a64 HEX` on stdout.

use bytes::Bytes;
use std::io::Read;
use std::thread::JoinHandle;
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;
use weft::{CloseCode, MessageKind, Options};

/// The size of each read from the file.
const CHUNK: usize = 64 * 1024;
/// How many chunks read ahead may wait for the socket.
const QUEUE: usize = 8;

/// FNV-1a, 64 bits: simple, streaming, and the same in `file-receive`.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, path] = &args[..] else {
        eprintln!("usage: file-send URL PATH");
        std::process::exit(2);
    };
    if let Err(e) = run(url, path).await {
        eprintln!("file-send: {e}");
        std::process::exit(1);
    }
}

/// Reads the first `len` bytes of the file on a thread of its own (the tokio `fs` feature
/// is not enabled for this crate, and a blocking read must not stall the socket's task),
/// hashing them on the way, into a bounded channel. Returns the hash of what was read.
fn spawn_reader(
    file: std::fs::File,
    len: u64,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut hash = Fnv1a::new();
        // Never more than the declared length, even if the file grows meanwhile.
        let mut file = file.take(len);
        loop {
            let mut buf = vec![0u8; CHUNK];
            let item = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    hash.update(&buf);
                    Ok(Bytes::from(buf))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
        hash.0
    })
}

async fn run(url: &str, path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{path}: {e}"))?.len();

    let (mut ws, _) = weft::tokio::connect_url(url, Options::default())
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    eprintln!("file-send: connected to {url}, sending {len} bytes");

    let (tx, mut rx) = mpsc::channel(QUEUE);
    let reader = spawn_reader(file, len, tx);
    // The channel as an `AsyncRead`: the source of the message's payload.
    let source = StreamReader::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    // One frame of declared length; at most `write_buffer_limit` bytes wait in the engine.
    ws.send_from_reader(MessageKind::Binary, source, Some(len))
        .await
        .map_err(|e| format!("sending {path}: {e}"))?;
    let hash = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_string())?;
    ws.close(CloseCode::NORMAL, "")
        .await
        .map_err(|e| format!("closing: {e}"))?;
    println!("sent {len} bytes fnv1a64 {hash:016x}");
    Ok(())
}
