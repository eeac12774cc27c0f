//! An echo server on the bare engine: std sockets, a thread per connection, no async runtime.
//!
//! It shows the sans-IO flow end to end (handshake, then bytes in / events out / bytes out)
//! and answers every protocol error with the right close code. The `weft` crate will
//! provide ready-made drivers; this example is what one looks like by hand.
//!
//! ```text
//! cargo run --release -p weft-proto --example engine-echo-server -- --addr 127.0.0.1:9001
//! ```
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:9001), `--max-message-size BYTES`.

use bytes::Buf;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use weft_proto::handshake::{parse_request, rejection_bytes, ServerLimits};
use weft_proto::{Config, Connection, Event, Role};

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:9001".to_string();
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().unwrap_or(addr),
            "--max-message-size" => {
                let n = args.next().and_then(|v| v.parse().ok());
                config.max_message_size = n;
                config.max_frame_size = n;
            }
            other => {
                eprintln!("unknown argument {other}; flags: --addr HOST:PORT --max-message-size N");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&addr)?;
    eprintln!("echo-server listening on ws://{}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        let config = config.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, config) {
                eprintln!("connection ended: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream, config: Config) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    // The opening handshake.
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (request, consumed) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        match parse_request(&head, &ServerLimits::default()) {
            Ok(Some(done)) => break done,
            Ok(None) => continue,
            Err(e) => {
                stream.write_all(&rejection_bytes(&e))?;
                return Ok(());
            }
        }
    };
    let mut response = Vec::new();
    if let Err(e) = request.accept().write(&mut response) {
        stream.write_all(&rejection_bytes(&e))?;
        return Ok(());
    }
    stream.write_all(&response)?;

    // Frames: whatever followed the head belongs to the engine.
    let mut conn = Connection::new(Role::Server, config);
    conn.receive(&head[consumed..]);
    loop {
        loop {
            match conn.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    // Echo with the same kind; the payload is not copied.
                    let _ = conn.send(m);
                }
                Ok(Some(_)) => {} // pings are answered, closes replied to, by the engine
                Ok(None) => break,
                Err(_) => break, // the close frame with the right code is queued
            }
        }
        flush(&mut stream, &mut conn)?;
        if conn.is_done() || !conn.want_read() {
            // Closed, or failed: the server closes the TCP connection first.
            return Ok(());
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.receive(&buf[..n]);
    }
}

/// Writes everything queued, with vectored writes.
fn flush(stream: &mut TcpStream, conn: &mut Connection) -> std::io::Result<()> {
    while conn.want_write() {
        let out = conn.outgoing();
        let mut slices = [IoSlice::new(&[]); 32];
        let count = out.chunks_vectored(&mut slices);
        let n = stream.write_vectored(&slices[..count])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        out.advance(n);
    }
    Ok(())
}
