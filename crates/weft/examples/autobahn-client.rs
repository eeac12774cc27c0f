//! The standard Autobahn|Testsuite client loop: asks the fuzzingserver how many cases there
//! are, runs each one as an echo client, then asks it to write its reports.
//!
//! ```text
//! scripts/autobahn client -- ./target/release/examples/autobahn-client
//! ```
//! Flags: `--url URL` (default `$AUTOBAHN_URL` or ws://127.0.0.1:9002), `--agent NAME`
//! (default `$AUTOBAHN_AGENT` or weft), `--deflate` (offer permessage-deflate).

use tokio::net::TcpStream;
use weft::proto::handshake::ClientRequest;
use weft::{Options, RecvLevel};

async fn open(url: &str, deflate: bool) -> weft::Result<weft::tokio::WebSocket<TcpStream>> {
    let mut builder = ClientRequest::builder(url);
    let config = weft::proto::deflate::DeflateConfig::default();
    if deflate {
        builder = builder.extensions(&[config.offer()]);
    }
    let request = builder.build()?;
    let stream = TcpStream::connect((request.host(), request.port())).await?;
    stream.set_nodelay(true)?;
    let mut options = Options::default();
    // The suite sends messages up to 16 MiB in frames as small as one byte.
    options.config.max_message_size = Some(64 << 20);
    options.config.max_frame_size = Some(64 << 20);
    options.config.recv_level = RecvLevel::Message;
    if deflate {
        options.deflate = Some(config);
    }
    let (ws, _) = weft::tokio::connect_with(&request, stream, options).await?;
    Ok(ws)
}

async fn run_case(base: &str, case: u32, agent: &str, deflate: bool) -> weft::Result<()> {
    let mut ws = open(
        &format!("{base}/runCase?case={case}&agent={agent}"),
        deflate,
    )
    .await?;
    loop {
        match ws.recv().await {
            Ok(Some(msg)) => {
                ws.feed(msg).await?;
                while let Some(next) = ws.try_recv()? {
                    ws.feed(next).await?;
                }
                ws.flush().await?;
            }
            Ok(None) => return Ok(()),
            // The case ends here; the suite judges what was sent.
            Err(_) => return Ok(()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> weft::Result<()> {
    let mut base = std::env::var("AUTOBAHN_URL").unwrap_or("ws://127.0.0.1:9002".into());
    let mut agent = std::env::var("AUTOBAHN_AGENT").unwrap_or("weft".into());
    let mut deflate = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--deflate" => deflate = true,
            "--url" | "--agent" => {
                let Some(v) = args.next() else {
                    eprintln!("{flag} needs a value");
                    std::process::exit(2);
                };
                if flag == "--url" {
                    base = v;
                } else {
                    agent = v;
                }
            }
            _ => {
                eprintln!("usage: autobahn-client [--url URL] [--agent NAME] [--deflate]");
                std::process::exit(2);
            }
        }
    }
    let mut ws = open(&format!("{base}/getCaseCount"), false).await?;
    let count: u32 = match ws.recv().await? {
        Some(m) => std::str::from_utf8(m.payload())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        None => 0,
    };
    drop(ws);
    eprintln!("autobahn-client: {count} cases");
    for case in 1..=count {
        if let Err(e) = run_case(&base, case, &agent, deflate).await {
            eprintln!("case {case}: {e}");
        }
    }
    let mut ws = open(&format!("{base}/updateReports?agent={agent}"), false).await?;
    // The suite may drop this connection without a close frame once the reports are
    // written: that is not a failure of ours.
    while let Ok(Some(_)) = ws.recv().await {}
    Ok(())
}
