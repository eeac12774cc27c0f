//! An axum application whose WebSockets are weft's: `GET /` is text, `/ws` echoes every
//! message through `weft::axum::WebSocketUpgrade` (HTTP/1.1 upgrade, and RFC 8441 over
//! h2c: `axum::serve` serves HTTP/2 with prior knowledge and enables extended CONNECT).
//!
//! ```text
//! cargo run -p weft --features axum --example axum -- --addr 127.0.0.1:8081
//! ```
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:8081).

use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use weft::axum::WebSocketUpgrade;

/// `/ws`: echoes each message back, text as text and binary as binary, until the client
/// closes.
async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.protocols(["echo"]).on_upgrade(|mut ws| async move {
        while let Ok(Some(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}

fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { "weft on axum: open a WebSocket to /ws\n" }),
        )
        // `any`: over HTTP/2 the handshake is a CONNECT, not a GET.
        .route("/ws", any(ws))
}

fn parse_addr() -> Result<String, String> {
    let mut addr = "127.0.0.1:8081".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--addr" => addr = it.next().ok_or("--addr needs a value")?,
            "-h" | "--help" => {
                return Err("flags: --addr HOST:PORT (default 127.0.0.1:8081)".into())
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(addr)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = match parse_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app()).await
}
