//! weft's echo behind `weft::server`: the same echo as `echo-weft` (`recv`, then `feed`
//! every message that has already arrived, `try_recv`, then one `flush`: corking; 64 MiB
//! messages and frames), but the connection is accepted by weft::server (hyper's HTTP/1.1
//! server, HTTP/2 by prior knowledge too, as the server's defaults have it) and the
//! WebSocket is an upgrade of `GET /` (`WebSocketUpgrade::from_request`, `on_upgrade`),
//! run on the transport itself. A plain `GET /` on the same address is answered 200 `ok`
//! (a `Full<Bytes>`: hyper writes Content-Length 2 and `date`, keep-alive), as `http-hyper`
//! answers it; anything else is 404.
//!
//! weft::server binds (`SO_REUSEADDR`, `SO_REUSEPORT`, backlog 1024), accepts (TCP_NODELAY)
//! and builds its runtimes itself, so of `servers/src/lib.rs` this uses the command line,
//! the descriptor limit, the counting allocator and the `SIGUSR1` heap report (`--heap-file`,
//! on a thread of its own). `--model current-thread|multi-thread|per-core|blocking|uring`
//! (default current-thread: one thread, as every other echo server here) picks
//! weft::server's threading model, `--threads N` the workers of multi-thread and per-core
//! (default one per CPU); with `blocking` each connection has a thread, and the WebSocket
//! is taken with `on_upgrade_blocking` and echoed by the blocking driver (`recv`, `send`:
//! it has no `try_recv`, so no corking).

use bytes::Bytes;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use servers::{prepare, spawn_heap_reporter, MAX_MESSAGE};
use std::future::Future;
use weft::server::{
    handler_fn, is_websocket_request, BlockingWebSocket, Body, Model, Server, WebSocket,
    WebSocketUpgrade,
};
use weft::Options;

const NAME: &str = "echo-weft-server";

fn main() {
    let args = prepare(NAME);
    let model = match args.model.as_deref() {
        None | Some("current-thread") => Model::CurrentThread,
        Some("multi-thread") => Model::MultiThread(args.threads),
        Some("per-core") => Model::PerCore(args.threads),
        Some("blocking") => Model::Blocking,
        Some("uring") => Model::Uring(args.threads),
        Some(other) => {
            eprintln!("{NAME}: --model: unknown model {other}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args, model) {
        eprintln!("{NAME}: {e}");
        std::process::exit(1);
    }
}

fn run(args: &servers::Args, model: Model) -> std::io::Result<()> {
    if let Some(path) = args.heap_file.clone() {
        spawn_heap_reporter(path)?;
    }
    let mut options = Options::default();
    options.config.max_message_size = Some(MAX_MESSAGE as u64);
    options.config.max_frame_size = Some(MAX_MESSAGE as u64);
    let blocking = model == Model::Blocking;
    let verbose = args.verbose;
    // (The idle part opens 10,001 connections: past the default limit of 10,000.)
    let server = Server::builder()
        .max_connections(1_000_000)
        .bind(args.addr)?
        .websocket_options(options)
        .build(handler_fn(move |req| handle(req, blocking, verbose)))?;
    for addr in server.local_addrs() {
        eprintln!("{NAME} listening on {addr} ({model:?})");
    }
    server.run(model)
}

async fn handle(req: Request<Incoming>, blocking: bool, verbose: bool) -> Response<Body> {
    if req.uri().path() != "/" {
        return status(StatusCode::NOT_FOUND);
    }
    if is_websocket_request(&req) {
        return upgrade(req, blocking, verbose);
    }
    if req.method() == Method::GET {
        return Response::new(Body::from(Bytes::from_static(b"ok")));
    }
    status(StatusCode::METHOD_NOT_ALLOWED)
}

/// The WebSocket: an echo on the server's runtime, or on a thread of its own (`blocking`).
fn upgrade(mut req: Request<Incoming>, blocking: bool, verbose: bool) -> Response<Body> {
    match WebSocketUpgrade::from_request(&mut req) {
        Ok(upgrade) if blocking => {
            upgrade.on_upgrade_blocking(move |ws| report(echo_blocking(ws), verbose))
        }
        // `map`, not `async move { report(echo(ws).await, verbose) }`: an async block keeps
        // the WebSocket it captured beside the one inside `echo`'s future.
        Ok(upgrade) => upgrade.on_upgrade(move |ws| echo(ws).map(move |r| report(r, verbose))),
        Err(refusal) => refusal.map(Body::from),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = code;
    res
}

/// A connection's error, with `--verbose` (by default they are dropped: a load generator
/// that exits resets its connections).
fn report(result: weft::Result<()>, verbose: bool) {
    if let Err(e) = result {
        if verbose {
            eprintln!("connection: {e}");
        }
    }
}

/// `echo-weft`'s echo: every message that already arrived is queued, then all are written
/// at once. (Not an `async fn`: one would keep its argument, the WebSocket, twice.)
#[allow(clippy::manual_async_fn)] // (an `async fn` keeps its arguments twice)
fn echo(mut ws: WebSocket) -> impl Future<Output = weft::Result<()>> {
    async move {
        while let Some(msg) = ws.recv().await? {
            ws.feed(msg).await?;
            while let Some(next) = ws.try_recv()? {
                ws.feed(next).await?;
            }
            ws.flush().await?;
        }
        Ok(())
    }
}

/// The blocking echo, on the WebSocket's own thread.
fn echo_blocking(mut ws: BlockingWebSocket) -> weft::Result<()> {
    while let Some(msg) = ws.recv(None)? {
        ws.send(msg, None)?;
    }
    Ok(())
}
