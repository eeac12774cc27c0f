//! An echo server: every message comes back with its kind; protocol errors are answered
//! with the right close code (the engine does that).
//!
//! ```text
//! cargo run --release -p weft --example echo-server -- --addr 127.0.0.1:9001 --threads 1
//! ```
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:9001), `--threads N` (default 1: a
//! current-thread runtime), `--max-message-size BYTES` (default 64 MiB), `--tls CERT KEY`
//! (PEM files: serve wss:// instead of ws://), `--deflate` (accept permessage-deflate).

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use weft::tls::rustls::ServerConfig;
use weft::tls::tokio_rustls::TlsAcceptor;
use weft::Options;

struct Args {
    addr: SocketAddr,
    threads: usize,
    options: Options,
    tls: Option<Arc<ServerConfig>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9001".parse().map_err(|e| format!("{e}"))?,
        threads: 1,
        options: Options::default(),
        tls: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--max-message-size" => {
                let n: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--max-message-size: {e}"))?;
                args.options.config.max_message_size = Some(n);
                args.options.config.max_frame_size = Some(n);
            }
            "--deflate" => {
                args.options.deflate = Some(weft::proto::deflate::DeflateConfig::default())
            }
            "--tls" => {
                let cert = value()?;
                let key = it.next().ok_or("--tls needs CERT and KEY")?;
                args.tls = Some(
                    weft::tls::server_config_from_files(&cert, &key)
                        .map_err(|e| format!("--tls: {e}"))?,
                );
            }
            "-h" | "--help" => {
                return Err(
                    "flags: --addr HOST:PORT --threads N --max-message-size BYTES --tls CERT KEY --deflate"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-server: {e}");
            std::process::exit(2);
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    }
    .enable_all()
    .build();
    let result = runtime.and_then(|rt| rt.block_on(serve(args)));
    if let Err(e) = result {
        eprintln!("echo-server: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.addr).await?;
    let scheme = if args.tls.is_some() { "wss" } else { "ws" };
    eprintln!(
        "echo-server listening on {scheme}://{}",
        listener.local_addr()?
    );
    let acceptor = args.tls.map(TlsAcceptor::from);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let options = args.options.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let result = match acceptor {
                // The same handler over TLS: only the stream differs.
                // The TLS handshake is bounded by the handshake timeout too: a client that
                // never sends its ClientHello is cut like one that never sends its head.
                Some(acceptor) => match tls_accept(&acceptor, stream, &options).await {
                    Ok(tls) => echo(tls, options).await,
                    Err(e) => Err(e.into()),
                },
                None => echo(stream, options).await,
            };
            if let Err(e) = result {
                eprintln!("connection: {e}");
            }
        });
    }
}

async fn tls_accept(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    options: &Options,
) -> std::io::Result<weft::tls::tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let handshake = acceptor.accept(stream);
    match options.handshake_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })?,
        None => handshake.await,
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, options: Options) -> weft::Result<()> {
    // `_`, not a named binding: the request (its headers) is dropped at once.
    let (mut ws, _) =
        weft::tokio::accept_with(stream, options, |_| Ok(weft::Accept::new())).await?;
    // Cork: echo every message that has already arrived, then write them all at once.
    while let Some(msg) = ws.recv().await? {
        ws.feed(msg).await?;
        while let Some(next) = ws.try_recv()? {
            ws.feed(next).await?;
        }
        ws.flush().await?;
    }
    Ok(())
}
