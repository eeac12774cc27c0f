//! A command-line client: sends messages and prints the replies, one per line (text as is,
//! binary as `<binary N bytes>`).
//!
//! ```text
//! cargo run --release -p weft --example client -- ws://127.0.0.1:9001/ hello world
//! cargo run --release -p weft --example client -- wss://example.com/chat --protocol chat
//! ```
//! Usage: `client URL [MESSAGE...] [--binary] [--origin O] [--protocol P]...
//! [--header 'Name: value']... [--wait-ms N] [--ca PEM]`
//!
//! With MESSAGE arguments, each is sent (as text, or binary with `--binary`); the client
//! closes (1000) once it has had one reply per message, or after `--wait-ms` (default 2000)
//! without receiving anything. Without them it sends each line of stdin as it is typed,
//! prints replies as they come, and once stdin ends it closes the same way. `--ca` trusts
//! the PEM certificates of a file (a private CA or a self-signed server) for `wss://`.
//! Progress and errors go to stderr; exit status 1 on a connection, handshake or protocol
//! error (a 403 answer, say) or when the server closes with a status other than 1000, 1001
//! or none; 2 on bad arguments.

use std::io::BufRead;
use std::time::Duration;
use tokio::sync::mpsc;
use weft::{ClientRequest, CloseCode, Message, Options};

struct Args {
    url: String,
    messages: Vec<String>,
    binary: bool,
    origin: Option<String>,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    wait: Duration,
    ca: Option<String>,
}

const USAGE: &str = "usage: client URL [MESSAGE...] [--binary] [--origin O] [--protocol P]... \
                     [--header 'Name: value']... [--wait-ms N] [--ca PEM]";

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut args = Args {
        url: String::new(),
        messages: Vec::new(),
        binary: false,
        origin: None,
        protocols: Vec::new(),
        headers: Vec::new(),
        wait: Duration::from_millis(2000),
        ca: None,
    };
    let mut it = std::env::args().skip(1);
    let mut flags_done = false;
    while let Some(arg) = it.next() {
        if flags_done || !arg.starts_with("--") {
            // The first positional argument is the URL, the rest are messages.
            match url {
                None => url = Some(arg),
                Some(_) => args.messages.push(arg),
            }
            continue;
        }
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--" => flags_done = true,
            "--binary" => args.binary = true,
            "--origin" => args.origin = Some(value()?),
            "--protocol" => args.protocols.push(value()?),
            "--header" => {
                let h = value()?;
                let (name, v) = h
                    .split_once(':')
                    .ok_or(format!("--header {h:?}: expected 'Name: value'"))?;
                args.headers
                    .push((name.trim().to_string(), v.trim().to_string()));
            }
            "--wait-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--wait-ms: {e}"))?;
                args.wait = Duration::from_millis(ms);
            }
            "--ca" => args.ca = Some(value()?),
            "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    args.url = url.ok_or(USAGE)?;
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(2);
        }
    };
    match run(args).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(1);
        }
    }
}

fn to_message(bytes: Vec<u8>, binary: bool) -> Message {
    if binary {
        Message::from(bytes)
    } else {
        Message::from(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn print_reply(msg: &Message) {
    match msg {
        Message::Text(t) => println!("{}", t.as_str()),
        Message::Binary(b) => println!("<binary {} bytes>", b.len()),
    }
}

/// Reads stdin lines on a thread of its own (the tokio `io-std` feature is not enabled for
/// this crate, and a blocking read must not stall the runtime). The channel is bounded:
/// a fast stdin waits for the socket. The channel closes at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("client: reading stdin: {e}");
                    break;
                }
            }
        }
    });
    rx
}

async fn run(args: Args) -> Result<(), String> {
    let mut builder = ClientRequest::builder(&args.url);
    if let Some(origin) = &args.origin {
        builder = builder.origin(origin);
    }
    if !args.protocols.is_empty() {
        builder = builder.protocols(&args.protocols);
    }
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    let request = builder.build().map_err(|e| format!("{}: {e}", args.url))?;
    let mut options = Options::default();
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("--ca {ca}: {e}"))?;
        options.tls =
            Some(weft::tls::client_config_with_roots(&pem).map_err(|e| format!("--ca {ca}: {e}"))?);
    }
    let (mut ws, response) = weft::tokio::connect_request(&request, options)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.url))?;
    match response.protocol() {
        Some(p) => eprintln!("client: connected to {} (subprotocol {p})", args.url),
        None => eprintln!("client: connected to {}", args.url),
    }

    let fail = |e: weft::Error| e.to_string();
    // One reply is expected per message sent.
    let mut expected = 0usize;
    let mut received = 0usize;
    let mut lines = if args.messages.is_empty() {
        Some(spawn_stdin_reader())
    } else {
        // Cork: queue every message, then write them together.
        for m in &args.messages {
            ws.feed(to_message(m.clone().into_bytes(), args.binary))
                .await
                .map_err(fail)?;
            expected += 1;
        }
        ws.flush().await.map_err(fail)?;
        None
    };

    loop {
        if lines.is_none() && received >= expected {
            break;
        }
        // Cancelling `recv` when another branch wins is safe: it keeps no state of its own
        // across polls (whatever arrived stays in the connection for the next call).
        tokio::select! {
            line = async { lines.as_mut()?.recv().await }, if lines.is_some() => match line {
                Some(line) => {
                    ws.send(to_message(line, args.binary)).await.map_err(fail)?;
                    expected += 1;
                }
                // End of input: from now on, wait for the replies still due.
                None => lines = None,
            },
            msg = ws.recv() => match msg.map_err(fail)? {
                Some(msg) => {
                    print_reply(&msg);
                    received += 1;
                }
                None => {
                    // The server closed first; the close handshake is already complete.
                    let conn = ws.connection();
                    let (code, reason) = match conn.close_received() {
                        Some(f) => (f.code, f.reason.as_str().to_string()),
                        None => (CloseCode::NO_STATUS, String::new()),
                    };
                    eprintln!("client: the server closed the connection: {code} {reason}");
                    return match code {
                        CloseCode::NORMAL | CloseCode::GOING_AWAY | CloseCode::NO_STATUS => Ok(()),
                        _ => Err(format!("closed with status {code}")),
                    };
                }
            },
            // Recreated on each turn of the loop: it measures silence since the last event.
            _ = tokio::time::sleep(args.wait), if lines.is_none() => {
                eprintln!(
                    "client: {} of {expected} replies after {} ms of silence",
                    received,
                    args.wait.as_millis()
                );
                break;
            }
        }
    }
    ws.close(CloseCode::NORMAL, "").await.map_err(fail)?;
    Ok(())
}
