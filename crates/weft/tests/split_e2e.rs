//! A connection split into read and write halves in different tasks: messages both ways,
//! pings answered while the writer is idle (fastwebsockets#76/#87), and the close
//! handshake started by either side.

use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use weft::{CloseCode, Event, Message};

async fn pair() -> (
    weft::tokio::WebSocket<TcpStream>,
    weft::tokio::WebSocket<TcpStream>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let url = format!("ws://{addr}/");
    let accept = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        weft::tokio::accept(s).await.unwrap()
    });
    let s = TcpStream::connect(addr).await.unwrap();
    let (client, _) = weft::tokio::connect(&url, s).await.unwrap();
    (client, accept.await.unwrap())
}

#[tokio::test]
async fn halves_in_two_tasks_answer_pings_while_the_writer_is_idle() {
    let run = async {
        let (mut client, server) = pair().await;
        let (mut reader, writer) = server.split();
        // The read half runs in its own task and only reads.
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = reader.recv().await.unwrap() {
                got.push(m);
            }
            got
        });
        // The writer task is idle; the client pings and must still get its pong.
        client.ping(b"are you there").await.unwrap();
        let pong = loop {
            match client.next_event().await.unwrap() {
                Some(Event::Pong(p)) => break p,
                Some(_) => continue,
                None => panic!("closed"),
            }
        };
        assert_eq!(&pong[..], b"are you there");
        // Messages both ways, the writer in yet another task.
        let writing = tokio::spawn(async move {
            for i in 0..10 {
                writer.send(Message::from(format!("w{i}"))).await.unwrap();
            }
            writer
        });
        for i in 0..5 {
            client.send(Message::from(format!("c{i}"))).await.unwrap();
        }
        for i in 0..10 {
            assert_eq!(
                client.recv().await.unwrap(),
                Some(Message::from(format!("w{i}")))
            );
        }
        let writer = writing.await.unwrap();
        // The client closes: the read half answers on its own and ends.
        client.close(CloseCode::NORMAL, "").await.unwrap();
        let got = reading.await.unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(
            writer.with_connection(|c| c.close_status()),
            CloseCode::NORMAL
        );
        assert!(writer.send("late").await.is_err());
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_write_half_starts_the_close_handshake() {
    let run = async {
        let (mut client, server) = pair().await;
        let (mut reader, writer) = server.split();
        let reading = tokio::spawn(async move { reader.recv().await });
        writer
            .close(CloseCode::GOING_AWAY, "restart")
            .await
            .unwrap();
        // The client sees the close and replies (its recv ends).
        assert_eq!(client.recv().await.unwrap(), None);
        assert_eq!(client.connection().close_status(), CloseCode::GOING_AWAY);
        // The read half gets the reply and ends too.
        assert_eq!(reading.await.unwrap().unwrap(), None);
        assert!(writer.with_connection(|c| c.is_closed()));
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cancelled_send_loses_nothing() {
    let run = async {
        let (mut client, server) = pair().await;
        let (_reader, writer) = server.split();
        // The client does not read yet: a 16 MiB send cannot finish, and is cancelled.
        let big = vec![0xabu8; 16 << 20];
        let r = tokio::time::timeout(Duration::from_millis(100), writer.send(big.clone())).await;
        assert!(r.is_err(), "the send should have been cut short");
        writer.feed("after").await.unwrap();
        // Now read: the message arrives whole and intact, then the next one.
        let reading = tokio::spawn(async move {
            let first = client.recv().await.unwrap();
            let second = client.recv().await.unwrap();
            (first, second)
        });
        writer.flush().await.unwrap();
        let (first, second) = reading.await.unwrap();
        assert_eq!(first, Some(Message::from(big)));
        assert_eq!(second, Some(Message::from("after")));
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap();
}

/// The read half's keepalive: it pings when the peer is quiet, goes on while pongs come
/// back, and fails with `Timeout` once they stop.
#[tokio::test]
async fn the_read_half_pings_and_times_out_without_pongs() {
    let run = async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let mut options = weft::Options::default();
        options.ping_interval = Some(Duration::from_millis(50));
        options.pong_timeout = Duration::from_millis(200);
        let server = weft::tokio::WebSocket::from_raw(s, weft::Role::Server, options);
        let mut client =
            weft::tokio::WebSocket::from_raw(c, weft::Role::Client, weft::Options::default());
        let (mut reader, _writer) = server.split();
        let reading = tokio::spawn(async move { reader.recv().await });
        // Pongs go back (the client answers while it polls): the reader pings again.
        for _ in 0..3 {
            loop {
                match client.next_event().await.unwrap() {
                    Some(Event::Ping(p)) => {
                        assert_eq!(&p[..], b"weft-keepalive");
                        break;
                    }
                    Some(_) => continue,
                    None => panic!("closed"),
                }
            }
        }
        // The client stops answering: the reader gives up.
        let result = reading.await.unwrap();
        assert!(matches!(result, Err(weft::Error::Timeout)), "{result:?}");
        drop(client);
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("hung");
}

/// The read half reads into the engine's own buffer, with its adaptive room: after a burst
/// of large reads and then a few small ones, a reader whose next read would block holds no
/// read buffer (as the whole connection does), and the burst still arrives whole.
#[tokio::test]
async fn an_idle_read_half_holds_no_read_buffer_after_a_burst() {
    let run = async {
        let (mut client, server) = pair().await;
        let (mut reader, writer) = server.split();
        for i in 0..64u8 {
            client.feed(Message::from(vec![i; 4096])).await.unwrap();
        }
        client.flush().await.unwrap();
        for i in 0..64u8 {
            let m = reader.recv().await.unwrap().unwrap();
            assert_eq!(m.into_payload(), vec![i; 4096]);
        }
        let grown = writer.with_connection(|c| c.read_reserve());
        assert!(grown > 4096, "{grown}");
        // Small messages, one read each: the room shrinks back.
        for _ in 0..8 {
            client.send(Message::from("small")).await.unwrap();
            assert_eq!(
                reader.recv().await.unwrap().unwrap(),
                Message::from("small")
            );
        }
        // Nothing more comes: the read would block, and the empty buffer goes.
        let idle = tokio::time::timeout(Duration::from_millis(50), reader.next_event()).await;
        assert!(idle.is_err());
        let held = writer.with_connection(|c| c.take_read_buffer().capacity());
        assert_eq!(held, 0);
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap();
}

/// A server split into halves and its client, over a pipe of 64 bytes each way (no
/// handshake): a side's writes block until the other reads.
fn split_over_a_small_pipe() -> (
    weft::tokio::WsReader<tokio::io::DuplexStream>,
    weft::tokio::WsWriter<tokio::io::DuplexStream>,
    weft::tokio::WebSocket<tokio::io::DuplexStream>,
) {
    use weft::proto::Role;
    let (server_end, client_end) = tokio::io::duplex(64);
    let server =
        weft::tokio::WebSocket::from_raw(server_end, Role::Server, weft::Options::default());
    let client =
        weft::tokio::WebSocket::from_raw(client_end, Role::Client, weft::Options::default());
    let (reader, writer) = server.split();
    (reader, writer, client)
}

/// `recv` on the read half returns a message that already arrived without waiting for a
/// write the peer does not take, and it is cancel-safe while it writes (a `select!` or a
/// timeout around it): the write goes on at the next call and nothing is lost.
#[tokio::test]
async fn a_receive_does_not_wait_for_a_blocked_write_and_loses_nothing_when_cancelled() {
    let run = async {
        let (mut reader, writer, mut client) = split_over_a_small_pipe();
        // Two messages in one write: the first read brings both.
        client.feed("a").await.unwrap();
        client.feed("b").await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(reader.recv().await.unwrap(), Some(Message::from("a")));
        // Corked by the write half: written by whichever half writes next.
        writer.feed(vec![7u8; 1000]).await.unwrap();
        // "b" is already here: returned although the client reads nothing yet.
        let second = tokio::time::timeout(Duration::from_millis(200), reader.recv()).await;
        assert_eq!(second.expect("waited").unwrap(), Some(Message::from("b")));
        // The next receive writes the 1000 bytes while it waits for the client, which reads
        // nothing yet: cancelled.
        let third = tokio::time::timeout(Duration::from_millis(200), reader.recv()).await;
        assert!(third.is_err(), "nothing was sent: {third:?}");
        // The client reads now (and sends one more message).
        let peer = tokio::spawn(async move {
            let echo = client.recv().await.unwrap();
            client.send("c").await.unwrap();
            (client, echo)
        });
        let next = tokio::time::timeout(Duration::from_secs(5), reader.recv())
            .await
            .expect("recv after the cancelled one")
            .unwrap();
        assert_eq!(next, Some(Message::from("c")));
        let (_client, echo) = peer.await.unwrap();
        assert_eq!(echo, Some(Message::from(vec![7u8; 1000])));
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("bounded");
}

/// A peer that sends a lot before it reads anything back, talking to a split connection
/// whose write half corks an answer to each message: the read half writes the answers
/// while it goes on reading, so neither side waits for the other for ever.
#[tokio::test]
async fn the_read_half_writes_while_it_reads_a_peer_that_writes_first() {
    let run = async {
        let (mut reader, writer, client) = split_over_a_small_pipe();
        let (mut client_reader, client_writer) = client.split();
        const N: usize = 200;
        // The client writes all of it before it reads.
        let sending = tokio::spawn(async move {
            for k in 0..N {
                client_writer.send(vec![k as u8; 500]).await.unwrap();
            }
            client_writer
        });
        // The server answers each message by corking it on its write half.
        let answering = tokio::spawn(async move {
            for k in 0..N {
                let m = reader.recv().await.unwrap().unwrap();
                assert_eq!(m, Message::from(vec![k as u8; 500]));
                writer.feed(m).await.unwrap();
            }
            // Whatever is still corked goes out with the reader's next call or this flush.
            writer.flush().await.unwrap();
            (reader, writer)
        });
        let _client_writer = sending.await.unwrap();
        for k in 0..N {
            let m = client_reader.recv().await.unwrap().unwrap();
            assert_eq!(m, Message::from(vec![k as u8; 500]), "{k}");
        }
        let _ = answering.await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("bounded");
}

/// The read half keeps receiving while the write half is blocked writing to a peer that
/// does not read yet: it does not wait for the write half's write to finish.
#[tokio::test]
async fn the_read_half_receives_while_the_write_half_is_blocked() {
    let run = async {
        let (mut reader, writer, mut client) = split_over_a_small_pipe();
        let big = Message::from(vec![5u8; 100_000]);
        let sent = big.clone();
        let writing = tokio::spawn(async move {
            writer.send(sent).await.unwrap();
            writer
        });
        // Let the write start and block (the client reads nothing yet).
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send("while you write").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), reader.recv())
            .await
            .expect("the read half waited for the write half")
            .unwrap();
        assert_eq!(got, Some(Message::from("while you write")));
        assert_eq!(client.recv().await.unwrap(), Some(big));
        let _writer = writing.await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("bounded");
}

/// A send of the write half given up half-way (a timeout around it) while the read half
/// waits for the peer: the rest of the message goes out once the peer reads, although the
/// write half is never called again (the read half is woken to write it).
#[tokio::test]
async fn a_send_given_up_half_way_is_finished_by_the_waiting_read_half() {
    let run = async {
        let (mut reader, writer, mut client) = split_over_a_small_pipe();
        let reading = tokio::spawn(async move {
            let got = reader.recv().await;
            (reader, got)
        });
        // The read half is parked in its read now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let big = Message::from(vec![9u8; 10_000]);
        let given_up = tokio::time::timeout(Duration::from_millis(100), writer.send(big.clone()));
        assert!(given_up.await.is_err(), "the send should have blocked");
        let got = tokio::time::timeout(Duration::from_secs(5), client.recv())
            .await
            .expect("the rest of the message was never written")
            .unwrap();
        assert_eq!(got, Some(big));
        client.send("thanks").await.unwrap();
        let (_reader, got) = reading.await.unwrap();
        assert_eq!(got.unwrap(), Some(Message::from("thanks")));
        drop(writer);
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("bounded");
}
