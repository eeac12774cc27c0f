//! ratchet's echo server (swimos' ratchet_rs with its `deflate` feature), as its
//! `examples/autobahn-server.rs` does it: `accept_with` over a `BufReader<BufWriter<_>>`,
//! `DeflateExtProvider`, then `read` a message into a buffer, `write` it back and `flush`
//! (its API has no way to ask whether another message is already readable, so every echo
//! is flushed). Text is checked as UTF-8 by ratchet itself.
//!
//! `--deflate`: compression with weft's defaults: level 1 (ratchet's default too), 15-bit
//! windows, context takeover: `accept_no_context_takeover: false`, since ratchet resets its
//! compressor after every message whenever that is true, asked or not (its default).
//! `--deflate-nct`: `accept_no_context_takeover: true`, for clients that ask for no context
//! takeover (with false, ratchet accepts such an offer without confirming
//! `server_no_context_takeover`, which a client must refuse).
//!
//! Built in its own workspace (bench/zlib-peers): ratchet_deflate needs flate2's C zlib.

#[path = "../../../servers/src/lib.rs"]
#[allow(dead_code)]
mod servers;

use bytes::BytesMut;
use ratchet_rs::deflate::{DeflateConfig, DeflateExtProvider, WindowBits};
use ratchet_rs::{
    Error, Extension, Message, NoExtProvider, PayloadType, SubprotocolRegistry, WebSocket,
    WebSocketConfig, WebSocketStream,
};
use servers::{serve, MAX_MESSAGE};
use tokio::io::{BufReader, BufWriter};

fn main() {
    serve("echo-ratchet", |stream, args| {
        let deflate = (args.deflate || args.deflate_nct).then(|| DeflateConfig {
            server_max_window_bits: WindowBits::fifteen(),
            client_max_window_bits: WindowBits::fifteen(),
            request_server_no_context_takeover: false,
            request_client_no_context_takeover: false,
            accept_no_context_takeover: args.deflate_nct,
            compression_level: ratchet_rs::deflate::Compression::fast(),
        });
        echo(stream, deflate)
    });
}

async fn echo(stream: tokio::net::TcpStream, deflate: Option<DeflateConfig>) -> Result<(), Error> {
    // 64 MiB messages: ratchet's default, the same limit as every server here.
    let config = WebSocketConfig {
        max_message_size: MAX_MESSAGE,
    };
    let io = BufReader::new(BufWriter::new(stream));
    let registry = SubprotocolRegistry::default();
    match deflate {
        Some(d) => {
            let provider = DeflateExtProvider::with_config(d);
            let up = ratchet_rs::accept_with(io, config, provider, registry).await?;
            echo_loop(up.upgrade().await?.websocket).await
        }
        None => {
            let up = ratchet_rs::accept_with(io, config, NoExtProvider, registry).await?;
            echo_loop(up.upgrade().await?.websocket).await
        }
    }
}

async fn echo_loop<S: WebSocketStream, E: Extension>(mut ws: WebSocket<S, E>) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    loop {
        let kind = match ws.read(&mut buf).await? {
            Message::Text => PayloadType::Text,
            Message::Binary => PayloadType::Binary,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Ok(()),
        };
        ws.write(&mut buf, kind).await?;
        ws.flush().await?;
        buf.clear();
    }
}
