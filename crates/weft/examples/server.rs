//! One server for HTTP and WebSockets, on `weft::server`: `GET /` is a page that opens a
//! WebSocket to `/ws` and shows the echo; `/ws` echoes every message with its kind (HTTP/1.1
//! upgrade, and RFC 8441 over h2 and h2c); `GET /health` is `ok`; anything else is 404.
//! SIGTERM (or Ctrl-C) shuts it down gracefully: WebSockets get Close 1001.
//!
//! ```text
//! cargo run --release -p weft --example server -- --addr 127.0.0.1:8080
//! ```
//! Flags: `--addr HOST:PORT` (repeatable; default 127.0.0.1:8080 unless `--unix` is given),
//! `--unix PATH`, `--tls-cert PEM --tls-key PEM` (the TCP addresses serve HTTPS and wss://),
//! `--model current-thread|multi-thread|per-core|blocking|uring` (default
//! current-thread; `uring`: thread per core with io_uring, Linux),
//! `--deflate` (accept permessage-deflate), `--max-message-size BYTES` (default 64 MiB).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use weft::server::{handler_fn, Body, Model, Server, WebSocketUpgrade};
use weft::Options;

const PAGE: &str = include_str!("server-page.html");

struct Args {
    addrs: Vec<SocketAddr>,
    unix: Option<String>,
    tls: Option<(String, String)>,
    model: Model,
    options: Options,
}

fn parse_args() -> Result<Args, String> {
    let mut options = Options::default();
    options.config.max_message_size = Some(64 << 20);
    options.config.max_frame_size = Some(64 << 20);
    let mut args = Args {
        addrs: Vec::new(),
        unix: None,
        tls: None,
        model: Model::CurrentThread,
        options,
    };
    let (mut cert, mut key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args
                .addrs
                .push(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--unix" => args.unix = Some(value()?),
            "--tls-cert" => cert = Some(value()?),
            "--tls-key" => key = Some(value()?),
            "--model" => {
                args.model = match value()?.as_str() {
                    "current-thread" => Model::CurrentThread,
                    "multi-thread" => Model::MultiThread(None),
                    "per-core" => Model::PerCore(None),
                    "blocking" => Model::Blocking,
                    "uring" => Model::Uring(None),
                    other => return Err(format!("--model: unknown model {other}")),
                }
            }
            "--deflate" => {
                args.options.deflate = Some(weft::proto::deflate::DeflateConfig::default())
            }
            "--max-message-size" => {
                let n: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--max-message-size: {e}"))?;
                args.options.config.max_message_size = Some(n);
                args.options.config.max_frame_size = Some(n);
            }
            "-h" | "--help" => {
                return Err(
                    "flags: --addr HOST:PORT (repeatable) --unix PATH --tls-cert PEM \
                     --tls-key PEM --model current-thread|multi-thread|per-core|blocking|uring \
                     --deflate --max-message-size BYTES"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    match (cert, key) {
        (Some(c), Some(k)) => args.tls = Some((c, k)),
        (None, None) => {}
        _ => return Err("--tls-cert and --tls-key go together".into()),
    }
    if args.addrs.is_empty() && args.unix.is_none() {
        args.addrs
            .push("127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?);
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("server: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let blocking = args.model == Model::Blocking;
    let mut builder = Server::builder().websocket_options(args.options);
    let tls = match &args.tls {
        Some((cert, key)) => Some(weft::tls::server_config_from_files(cert, key)?),
        None => None,
    };
    for addr in &args.addrs {
        builder = match &tls {
            Some(config) => builder.bind_tls(addr, Arc::clone(config))?,
            None => builder.bind(addr)?,
        };
    }
    if let Some(path) = &args.unix {
        builder = builder.bind_unix(path)?;
    }
    let server = builder.build(handler_fn(move |req| handle(req, blocking)))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    for addr in server.local_addrs() {
        eprintln!("server listening on {scheme}://{addr} ({:?})", args.model);
    }
    let shutdown = server.shutdown_handle();
    std::thread::spawn(move || {
        // SIGTERM or SIGINT: a graceful shutdown.
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("server: shutting down");
            shutdown.shutdown();
        });
    });
    server.run(args.model)?;
    Ok(())
}

async fn handle(mut req: http::Request<Incoming>, blocking: bool) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (_, "/ws") => match WebSocketUpgrade::from_request(&mut req) {
            Ok(upgrade) if blocking => upgrade.on_upgrade_blocking(echo_blocking),
            Ok(upgrade) => upgrade.on_upgrade(echo),
            Err(refusal) => refusal.map(Body::from),
        },
        (&Method::GET, "/") => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Body::from(PAGE))
            .unwrap_or_default(),
        (&Method::GET, "/health") => Response::new(Body::from("ok")),
        _ => {
            let mut r = Response::new(Body::from(Bytes::from_static(b"not found\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// Echoes every message with its kind; every message that already arrived is queued
/// first, then all are written at once (corking). (A function that returns an `async`
/// block, not an `async fn`: an `async fn` keeps its arguments twice, here the WebSocket,
/// for as long as the connection lasts.)
#[allow(clippy::manual_async_fn)] // (an `async fn` keeps its arguments twice)
fn echo(mut ws: weft::server::WebSocket) -> impl Future<Output = ()> + Send {
    async move {
        let result: weft::Result<()> = async {
            while let Some(msg) = ws.recv().await? {
                ws.feed(msg).await?;
                while let Some(next) = ws.try_recv()? {
                    ws.feed(next).await?;
                }
                ws.flush().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("connection: {e}");
        }
    }
}

/// The same echo, blocking, on the WebSocket's own thread.
fn echo_blocking(mut ws: weft::server::BlockingWebSocket) {
    let result: weft::Result<()> = (|| {
        while let Some(msg) = ws.recv(None)? {
            ws.send(msg, None)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("connection: {e}");
    }
}
