//! A broadcast chat: every text message from a client goes to every connected client,
//! the sender included, prefixed with the sender's id (`[3] hello`). Joins and departures
//! are announced to the others (`* [3] joined`, `* [3] left`).
//!
//! ```text
//! cargo run --release -p weft --example chat-server -- --addr 127.0.0.1:9003
//! cargo run --release -p weft --example client -- ws://127.0.0.1:9003/
//! ```
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:9003), `--queue N` (default 256: how many
//! messages a client may fall behind before it is disconnected).
//!
//! Each connection is `split()`: its read half runs in the connection's task and publishes
//! to a `tokio::sync::broadcast` channel; its write half runs in a task of its own that
//! forwards from the channel to the socket. A slow client holds up nobody: the channel is
//! a bounded ring that publishers never wait on, and each writer waits only on its own
//! socket.
//!
//! A slow client is **disconnected**, not left to skip messages: a chat with silent holes
//! in it would misrepresent the conversation, and a client that reconnects knows it missed
//! something. One that falls more than `--queue` messages behind is sent close 1008 ("too
//! slow"); one whose socket takes no data for `SEND_TIMEOUT` is dropped outright (a write
//! was cut short, so no close frame can follow). Binary messages are not relayed
//! (ignored); text is limited to `MAX_MESSAGE` bytes (over it: close 1009).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use weft::tokio::WsWriter;
use weft::{CloseCode, Message, Options};

/// The largest text message relayed.
const MAX_MESSAGE: u64 = 64 * 1024;
/// How long a write to one client may take before that client is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close handshake with a dropped client may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

struct Args {
    addr: SocketAddr,
    queue: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9003".parse().map_err(|e| format!("{e}"))?,
        queue: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--queue" => {
                args.queue = value()?.parse().map_err(|e| format!("--queue: {e}"))?;
                if args.queue == 0 {
                    return Err("--queue must be at least 1".into());
                }
            }
            "-h" | "--help" => return Err("flags: --addr HOST:PORT --queue N".into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chat-server: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = serve(args).await {
        eprintln!("chat-server: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.addr).await?;
    eprintln!("chat-server listening on ws://{}", listener.local_addr()?);
    // Every client's writer subscribes; `send` never waits, and a receiver that falls
    // `queue` messages behind gets `Lagged` on its next receive.
    let (hub, _) = broadcast::channel::<Message>(args.queue);
    let mut next_id = 1u64;
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let id = next_id;
        next_id += 1;
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(e) = client(stream, id, hub).await {
                eprintln!("chat-server: [{id}] {peer}: {e}");
            }
        });
    }
}

/// Why a client's writer stopped.
enum WriterEnd {
    /// The connection ended (the read half saw it close, or a write failed).
    Gone,
    /// The client was too slow and was sent a close frame.
    Dropped,
}

async fn client(stream: TcpStream, id: u64, hub: broadcast::Sender<Message>) -> weft::Result<()> {
    let mut options = Options::default();
    options.config.max_message_size = Some(MAX_MESSAGE);
    options.config.max_frame_size = Some(MAX_MESSAGE);
    options.close_timeout = CLOSE_TIMEOUT;
    // `_`, not a named binding: the request (its headers) is dropped at once.
    let (ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(weft::Accept::new())).await?;
    let (mut reader, writer) = ws.split();

    // Announce first, subscribe second: the newcomer does not get its own announcement
    // (it learns its id from the prefix of its first message).
    announce(&hub, format!("* [{id}] joined"));
    eprintln!("chat-server: [{id}] joined");
    let mut writing = tokio::spawn(write_loop(writer, hub.subscribe(), id));

    let result = loop {
        tokio::select! {
            msg = reader.recv() => match msg {
                Ok(Some(Message::Text(text))) => {
                    announce(&hub, format!("[{id}] {}", text.as_str()));
                    // Messages already buffered are returned without waiting (nor touching
                    // tokio's cooperative budget): without this, a burst from one client
                    // would be published whole before any writer ran, and every client,
                    // the fast ones included, would lag by the length of the burst.
                    tokio::task::yield_now().await;
                }
                Ok(Some(Message::Binary(_))) => {
                    eprintln!("chat-server: [{id}] binary message ignored");
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            },
            // The writer gave up on this client (too slow, or its socket failed). Dropping
            // `reader.recv()` here is fine: the connection is being torn down.
            end = &mut writing => {
                if let Ok(WriterEnd::Dropped) = end {
                    eprintln!("chat-server: [{id}] too slow: disconnected");
                    // A close frame was sent: give the client a moment to answer it.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Ok(Some(_)) = reader.recv().await {}
                    })
                    .await;
                }
                break Ok(());
            }
        }
    };
    writing.abort();
    announce(&hub, format!("* [{id}] left"));
    eprintln!("chat-server: [{id}] left");
    result
}

/// Publishes to every subscriber. With no subscriber (nobody connected) the message goes
/// nowhere, which is right.
fn announce(hub: &broadcast::Sender<Message>, text: String) {
    let _ = hub.send(Message::from(text));
}

/// Forwards the broadcast to one client, batching what is already waiting into one write.
async fn write_loop(
    writer: WsWriter<TcpStream>,
    mut rx: broadcast::Receiver<Message>,
    id: u64,
) -> WriterEnd {
    loop {
        let first = match rx.recv().await {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                eprintln!("chat-server: [{id}] fell {n} messages behind");
                return drop_client(&writer).await;
            }
            Err(RecvError::Closed) => return WriterEnd::Gone,
        };
        // Returns how far behind the client fell, if it did while the batch was taken.
        let batch = async {
            writer.feed(first).await?;
            let lagged = loop {
                match rx.try_recv() {
                    Ok(m) => writer.feed(m).await?,
                    Err(TryRecvError::Lagged(n)) => break Some(n),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break None,
                }
            };
            writer.flush().await?;
            Ok::<_, weft::Error>(lagged)
        };
        match tokio::time::timeout(SEND_TIMEOUT, batch).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(n))) => {
                // `try_recv` reports lagging once only: act on it now.
                eprintln!("chat-server: [{id}] fell {n} messages behind");
                return drop_client(&writer).await;
            }
            // Closed (by the read half) or a transport error.
            Ok(Err(_)) => return WriterEnd::Gone,
            Err(_) => {
                eprintln!("chat-server: [{id}] not reading for {SEND_TIMEOUT:?}");
                // A write was cut short: the stream is unusable, no close frame can follow.
                return WriterEnd::Gone;
            }
        }
    }
}

async fn drop_client(writer: &WsWriter<TcpStream>) -> WriterEnd {
    let close = writer.close(CloseCode::POLICY_VIOLATION, "too slow");
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) => WriterEnd::Dropped,
        _ => WriterEnd::Gone,
    }
}
