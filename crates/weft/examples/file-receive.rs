//! Receives one file of any size, streamed: accepts one connection, writes the first
//! message to a file as its bytes arrive, prints the byte count and a 64-bit FNV-1a
//! checksum, closes and exits. Memory stays bounded whatever the size: the connection runs
//! at the chunk receive level, where nothing is buffered beyond what the socket delivered.
//!
//! ```text
//! cargo run --release -p weft --example file-receive -- --addr 127.0.0.1:9004 --out copy.bin
//! cargo run --release -p weft --example file-send -- ws://127.0.0.1:9004/ original.bin
//! ```
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:9004), `--out PATH` (required). Prints
//! `received BYTES bytes fnv1a64 HEX` on stdout, as `file-send` prints `sent ...`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use weft::{CloseCode, Options, RecvLevel};

/// How many received chunks may wait for the disk. With reads of `READ_BUFFER` bytes this
/// bounds what is in flight to a few MiB.
const QUEUE: usize = 16;
/// The engine's read buffer: the size of the chunks that stream through.
const READ_BUFFER: usize = 64 * 1024;

/// FNV-1a, 64 bits: simple, streaming, and the same in `file-send`.
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

struct Args {
    addr: SocketAddr,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut addr: SocketAddr = "127.0.0.1:9004".parse().map_err(|e| format!("{e}"))?;
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err("flags: --addr HOST:PORT --out PATH".into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let out = out.ok_or("--out PATH is required")?;
    Ok(Args { addr, out })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("file-receive: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("file-receive: {e}");
        std::process::exit(1);
    }
}

/// Writes and hashes the chunks on a thread of its own, so the disk never stalls the
/// socket's task (the tokio `fs` feature is not enabled for this crate). Returns the byte
/// count and the checksum once the channel closes.
fn spawn_writer(
    mut file: std::fs::File,
    mut chunks: mpsc::Receiver<bytes::Bytes>,
) -> JoinHandle<std::io::Result<(u64, u64)>> {
    std::thread::spawn(move || {
        let mut hash = Fnv1a::new();
        let mut total = 0u64;
        while let Some(chunk) = chunks.blocking_recv() {
            file.write_all(&chunk)?;
            hash.update(&chunk);
            total += chunk.len() as u64;
        }
        file.sync_all()?;
        Ok((total, hash.0))
    })
}

async fn run(args: Args) -> Result<(), String> {
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("{}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("file-receive listening on ws://{local}");
    let (stream, peer) = listener.accept().await.map_err(|e| e.to_string())?;
    drop(listener);
    stream.set_nodelay(true).map_err(|e| e.to_string())?;

    let mut options = Options::default();
    // Chunk level: frames of any length stream through; no message size limit applies.
    options.config.recv_level = RecvLevel::Chunk;
    options.config.read_buffer_size = READ_BUFFER;
    let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(weft::Accept::new()))
        .await
        .map_err(|e| format!("handshake with {peer}: {e}"))?;
    eprintln!("file-receive: {peer} connected");

    // Created only once a sender is there, so a failed handshake leaves no empty file.
    let file = std::fs::File::create(&args.out)
        .map_err(|e| format!("--out {}: {e}", args.out.display()))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = spawn_writer(file, rx);

    let received = async {
        let Some(mut message) = ws.recv_stream().await? else {
            return Err(weft::Error::Closed);
        };
        while let Some(chunk) = message.next_chunk().await? {
            // Waits when the disk is behind: the socket is not read meanwhile, and TCP
            // holds the sender back.
            if tx.send(chunk).await.is_err() {
                break; // The writer failed; its error is reported below.
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| "the writer thread panicked".to_string())?;
    if let Err(e) = received {
        return Err(format!("receiving from {peer}: {e}"));
    }
    let (total, hash) = written.map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    // The close handshake; the sender starts it too once it is done, either order is fine.
    if let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        eprintln!("file-receive: closing: {e}");
    }
    println!("received {total} bytes fnv1a64 {hash:016x}");
    Ok(())
}
