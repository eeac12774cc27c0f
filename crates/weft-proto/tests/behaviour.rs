//! The engine's behaviour between two connections: send styles, receive levels, control
//! frames between fragments, auto-pong, the close handshake, queue accounting, and the
//! errors for send calls made out of order (REQUIREMENTS R4-R6, S1-S3, S5-S7, V1-V4, V7).

mod common;
use bytes::{Buf, Bytes};
use common::*;
use weft_proto::frame::OpCode;
use weft_proto::{
    CloseCode, Config, Connection, Error, Event, Message, MessageAssembler, MessageKind, RecvLevel,
    Role,
};

fn level(l: RecvLevel) -> Config {
    let mut c = Config::default();
    c.recv_level = l;
    c
}

#[test]
fn whole_messages_both_directions() {
    let (mut client, mut server) = pair(Config::default());
    client.send(Message::from("hello")).unwrap();
    client.send_binary(vec![1, 2, 3]).unwrap();
    pump(&mut client, &mut server);
    assert_eq!(
        drain(&mut server).unwrap(),
        vec![
            Event::Message(Message::from("hello")),
            Event::Message(Message::Binary(Bytes::from_static(&[1, 2, 3])))
        ]
    );
    server.send_text("back").unwrap();
    pump(&mut server, &mut client);
    assert_eq!(
        drain(&mut client).unwrap(),
        vec![Event::Message(Message::from("back"))]
    );
}

#[test]
fn client_frames_are_masked_server_frames_are_not() {
    let (mut client, mut server) = pair(Config::default());
    client.send_text("abc").unwrap();
    server.send_text("abc").unwrap();
    let c = parse_frames(&take_out(&mut client));
    let s = parse_frames(&take_out(&mut server));
    assert!(c[0].0.mask.is_some());
    assert!(s[0].0.mask.is_none());
    assert_eq!(c[0].1, b"abc");
}

#[test]
fn pluggable_mask_source_gives_fresh_keys() {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut n = 0u8;
    client.set_mask_source(move || {
        n += 1;
        [n, n, n, n]
    });
    client.send_text("a").unwrap();
    client.send_text("b").unwrap();
    let frames = parse_frames(&take_out(&mut client));
    assert_eq!(frames[0].0.mask, Some([1; 4]));
    assert_eq!(frames[1].0.mask, Some([2; 4]));
}

#[test]
fn fragment_size_splits_messages() {
    let mut config = Config::default();
    config.fragment_size = Some(4);
    let mut server = Connection::new(Role::Server, config);
    server.send_text("héllo wörld").unwrap(); // 13 bytes; code points cut at edges
    let frames = parse_frames(&take_out(&mut server));
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0].0.opcode, OpCode::Text);
    assert!(frames[1..]
        .iter()
        .all(|f| f.0.opcode == OpCode::Continuation));
    assert!(frames[..3].iter().all(|f| !f.0.fin));
    assert!(frames[3].0.fin);
    let mut client = Connection::new(Role::Client, Config::default());
    let wire: Vec<u8> = frames
        .iter()
        .flat_map(|(h, p)| {
            let mut hb = [0u8; 14];
            let n = h.encode(&mut hb);
            let mut v = hb[..n].to_vec();
            v.extend_from_slice(p);
            v
        })
        .collect();
    client.receive(&wire);
    assert_eq!(
        drain(&mut client).unwrap(),
        vec![Event::Message(Message::from("héllo wörld"))]
    );
}

#[test]
fn frame_by_frame_sending() {
    let (mut client, mut server) = pair(level(RecvLevel::Frame));
    client.begin_message(MessageKind::Text).unwrap();
    client.send_frame("he", false).unwrap();
    client
        .send_frame(Bytes::from_static(&[b'l', 0xc3]), false)
        .unwrap(); // cut é
    client
        .send_frame(Bytes::from_static(&[0xa9]), false)
        .unwrap();
    client.end_message().unwrap();
    pump(&mut client, &mut server);
    let ev = drain(&mut server).unwrap();
    assert_eq!(
        ev,
        vec![
            Event::MessageStart {
                kind: MessageKind::Text,
                rsv: 0
            },
            Event::Frame(Bytes::from_static(b"he")),
            Event::Frame(Bytes::from_static(&[b'l', 0xc3])),
            Event::Frame(Bytes::from_static(&[0xa9])),
            Event::Frame(Bytes::new()),
            Event::MessageEnd,
        ]
    );
    let mut asm = MessageAssembler::new(None);
    let msgs: Vec<_> = ev.iter().filter_map(|e| asm.push(e).unwrap()).collect();
    assert_eq!(msgs, vec![Message::from("helé")]);
}

#[test]
fn streamed_frame_of_declared_length() {
    let (mut client, mut server) = pair(level(RecvLevel::Chunk));
    client.begin_message(MessageKind::Binary).unwrap();
    client.begin_frame(10, false).unwrap();
    client.send_frame_data(&b"0123"[..]).unwrap();
    pump(&mut client, &mut server);
    let ev = drain(&mut server).unwrap();
    assert!(matches!(
        ev[0],
        Event::MessageStart {
            kind: MessageKind::Binary,
            ..
        }
    ));
    assert!(matches!(ev[1], Event::FrameStart(h) if h.payload_len == 10 && !h.fin));
    assert_eq!(ev[2], Event::FrameData(Bytes::from_static(b"0123")));
    assert_eq!(ev.len(), 3);
    // More than declared is refused, and changes nothing.
    assert!(matches!(
        client.send_frame_data(vec![0u8; 7]),
        Err(Error::InvalidArgument(_))
    ));
    client.send_frame_data(&b"456789"[..]).unwrap();
    // A second streamed frame in the same message, final.
    client.begin_frame(3, true).unwrap();
    client.send_frame_data(&b"abc"[..]).unwrap();
    pump(&mut client, &mut server);
    let ev = drain(&mut server).unwrap();
    assert_eq!(
        ev,
        vec![
            Event::FrameData(Bytes::from_static(b"456789")),
            Event::FrameEnd,
            Event::FrameStart(weft_proto::frame::FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Continuation,
                mask: ev.get(2).and_then(|e| match e {
                    Event::FrameStart(h) => h.mask,
                    _ => None,
                }),
                payload_len: 3
            }),
            Event::FrameData(Bytes::from_static(b"abc")),
            Event::FrameEnd,
            Event::MessageEnd,
        ]
    );
}

#[test]
fn send_calls_out_of_order_are_errors() {
    let mut c = Connection::new(Role::Server, Config::default());
    assert!(matches!(
        c.send_frame("x", true),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(c.end_message(), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        c.begin_frame(3, true),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.send_frame_data("x"),
        Err(Error::InvalidArgument(_))
    ));
    c.begin_message(MessageKind::Binary).unwrap();
    assert!(matches!(
        c.begin_message(MessageKind::Text),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.send(Message::from("x")),
        Err(Error::InvalidArgument(_))
    ));
    c.begin_frame(2, true).unwrap();
    assert!(matches!(
        c.send_frame("x", true),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.begin_frame(1, true),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.close(CloseCode::NORMAL, ""),
        Err(Error::InvalidArgument(_))
    ));
    c.send_frame_data("ab").unwrap();
    // The message ended with the final frame: whole messages work again.
    c.send(Message::from("y")).unwrap();
    assert!(matches!(c.ping(&[0; 126]), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        c.close(CloseCode(1005), ""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.close(CloseCode(1006), ""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.close(CloseCode(999), ""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.close(CloseCode::NORMAL, &"x".repeat(124)),
        Err(Error::InvalidArgument(_))
    ));
    c.close(CloseCode::NORMAL, &"x".repeat(123)).unwrap();
    // Queueing after close is an error (S7).
    assert!(matches!(c.send(Message::from("z")), Err(Error::Closed)));
    assert!(matches!(c.ping(b""), Err(Error::Closed)));
    assert!(matches!(c.close(CloseCode::NORMAL, ""), Err(Error::Closed)));
}

#[test]
fn invalid_text_is_refused_on_send() {
    let mut c = Connection::new(Role::Server, Config::default());
    c.begin_message(MessageKind::Text).unwrap();
    assert!(matches!(
        c.send_frame(Bytes::from_static(&[0xff]), false),
        Err(Error::InvalidUtf8)
    ));
    c.send_frame(Bytes::from_static(&[0xe2, 0x82]), false)
        .unwrap();
    // Ending with a cut code point is refused; completing it works.
    assert!(matches!(c.end_message(), Err(Error::InvalidUtf8)));
    c.send_frame(Bytes::from_static(&[0xac]), true).unwrap();
    let frames = parse_frames(&take_out(&mut c));
    assert_eq!(frames.len(), 2);
    assert!(matches!(
        c.send_vectored(
            MessageKind::Text,
            &[Bytes::from_static(&[0xe2]), Bytes::from_static(&[0x82])]
        ),
        Err(Error::InvalidUtf8)
    ));
}

#[test]
fn vectored_message_is_one_frame_without_copy() {
    let mut c = Connection::new(Role::Server, Config::default());
    let big = Bytes::from(vec![7u8; 4096]);
    c.send_vectored(
        MessageKind::Binary,
        &[Bytes::from_static(b"head"), big.clone()],
    )
    .unwrap();
    let q = c.outgoing();
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    let n = q.chunks_vectored(&mut slices);
    // The large part is handed out as the caller's own memory.
    assert!(slices[..n].iter().any(|s| s.as_ptr() == big.as_ptr()));
    let frames = parse_frames(&take_out(&mut c));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1.len(), 4100);
}

#[test]
fn control_frames_between_fragments_both_directions() {
    let (mut client, mut server) = pair(Config::default());
    // The client sends a fragmented message with a ping in the middle.
    client.begin_message(MessageKind::Text).unwrap();
    client.send_frame("ab", false).unwrap();
    pump(&mut client, &mut server);
    client.ping(b"p1").unwrap();
    client.send_frame("cd", true).unwrap();
    pump(&mut client, &mut server);
    assert_eq!(
        drain(&mut server).unwrap(),
        vec![
            Event::Ping(Bytes::from_static(b"p1")),
            Event::Message(Message::from("abcd"))
        ]
    );
    // The server's automatic pong came back.
    pump(&mut server, &mut client);
    assert_eq!(
        drain(&mut client).unwrap(),
        vec![Event::Pong(Bytes::from_static(b"p1"))]
    );
}

#[test]
fn queued_control_frames_go_first_at_a_frame_boundary() {
    let mut c = Connection::new(Role::Server, Config::default());
    c.send_binary(vec![1u8; 5000]).unwrap();
    c.send_binary(vec![2u8; 10]).unwrap();
    // Write part of the first frame; then queue a ping.
    c.outgoing().advance(100);
    c.ping(b"now").unwrap();
    let rest = take_out(&mut c);
    // The rest of the 5000-byte frame, then the ping, then the second message.
    let ping_at = 5004 - 100;
    assert_eq!(&rest[ping_at..ping_at + 5], &[0x89, 3, b'n', b'o', b'w']);
    let frames = parse_frames(&rest[ping_at..]);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].1, vec![2u8; 10]);
}

#[test]
fn control_frame_waits_for_an_open_streamed_frame() {
    let mut c = Connection::new(Role::Server, Config::default());
    c.begin_message(MessageKind::Binary).unwrap();
    c.begin_frame(4, true).unwrap();
    c.send_frame_data("ab").unwrap();
    c.outgoing().advance(1);
    c.ping(b"").unwrap();
    c.send_frame_data("cd").unwrap();
    let rest = take_out(&mut c);
    assert_eq!(&rest[..], &[4, b'a', b'b', b'c', b'd', 0x89, 0]);
}

#[test]
fn auto_pong_can_be_turned_off() {
    let mut config = Config::default();
    config.auto_pong = false;
    let mut s = Connection::new(Role::Server, config);
    s.receive(&cframe(true, PING, b"x"));
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![Event::Ping(Bytes::from_static(b"x"))]
    );
    assert!(!s.want_write());
    s.pong(b"x").unwrap();
    assert!(s.want_write());
}

#[test]
fn every_ping_gets_its_pong_and_a_flood_stays_bounded() {
    let mut s = Connection::new(Role::Server, Config::default());
    for i in 0..10u32 {
        s.receive(&cframe(true, PING, &i.to_be_bytes()));
    }
    assert_eq!(drain(&mut s).unwrap().len(), 10);
    let frames = parse_frames(&take_out(&mut s));
    let payloads: Vec<_> = frames.iter().map(|f| f.1.clone()).collect();
    let expect: Vec<_> = (0..10u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(payloads, expect);
    // A peer that pings and never reads: the queue stays bounded, the latest is answered.
    for i in 0..100_000u32 {
        s.receive(&cframe(true, PING, &i.to_be_bytes()));
    }
    assert_eq!(drain(&mut s).unwrap().len(), 100_000);
    assert!(s.queued_messages() <= 32, "{}", s.queued_messages());
    assert!(s.queued_bytes() <= 32 * 127);
    let frames = parse_frames(&take_out(&mut s));
    assert_eq!(frames.last().unwrap().1, 99_999u32.to_be_bytes());
}

#[test]
fn close_handshake_initiated_by_client() {
    let (mut client, mut server) = pair(Config::default());
    client.send_text("last").unwrap();
    client.close(CloseCode::GOING_AWAY, "bye").unwrap();
    assert_eq!(
        client.close_sent().map(|f| f.code),
        Some(CloseCode::GOING_AWAY)
    );
    assert!(!client.is_closed());
    assert!(client.want_read()); // half-closed: it still receives
    pump(&mut client, &mut server);
    let ev = drain(&mut server).unwrap();
    assert_eq!(ev[0], Event::Message(Message::from("last")));
    match &ev[1] {
        Event::Close(Some(f)) => {
            assert_eq!(f.code, CloseCode::GOING_AWAY);
            assert_eq!(f.reason, "bye");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.close_status(), CloseCode::GOING_AWAY);
    assert!(server.is_closed());
    assert!(!server.is_done()); // the reply is still queued
    assert!(matches!(server.send_text("no"), Err(Error::Closed)));
    pump(&mut server, &mut client);
    assert!(server.is_done());
    assert!(matches!(
        drain(&mut client).unwrap()[..],
        [Event::Close(Some(_))]
    ));
    assert!(client.is_done());
    assert_eq!(client.close_status(), CloseCode::GOING_AWAY);
}

#[test]
fn close_without_status_reads_1005_and_no_close_reads_1006() {
    let mut s = Connection::new(Role::Server, Config::default());
    assert_eq!(s.close_status(), CloseCode::ABNORMAL);
    s.receive(&cframe(true, CLOSE, b""));
    assert_eq!(drain(&mut s).unwrap(), vec![Event::Close(None)]);
    assert_eq!(s.close_status(), CloseCode::NO_STATUS);
    // The reply carries no status either.
    let out = take_out(&mut s);
    assert_eq!(out.as_ref(), &[0x88, 0]);
}

#[test]
fn auto_close_can_be_turned_off() {
    let mut config = Config::default();
    config.auto_close = false;
    let mut s = Connection::new(Role::Server, config);
    s.receive(&cframe(true, CLOSE, &1000u16.to_be_bytes()));
    drain(&mut s).unwrap();
    assert!(!s.want_write());
    assert!(!s.is_closed());
    s.close(CloseCode(4001), "mine").unwrap();
    assert!(s.is_closed());
}

#[test]
fn queue_counts_messages_and_bytes() {
    let mut c = Connection::new(Role::Server, Config::default());
    assert_eq!((c.queued_messages(), c.queued_bytes()), (0, 0));
    c.send_text("abc").unwrap(); // 5 bytes
    c.send_binary(vec![0u8; 2000]).unwrap(); // 4 + 2000
    c.ping(b"").unwrap(); // 2
    assert_eq!(c.queued_messages(), 3);
    assert_eq!(c.queued_bytes(), 5 + 2004 + 2);
    // The ping goes first, then "abc" and the next header (coalesced in one buffer).
    c.outgoing().advance(2 + 5 + 4);
    assert_eq!(c.queued_messages(), 1);
    c.outgoing().advance(2000);
    assert_eq!((c.queued_messages(), c.queued_bytes()), (0, 0));
    assert!(!c.want_write());
}

#[test]
fn small_frames_are_coalesced_into_one_buffer() {
    let mut c = Connection::new(Role::Server, Config::default());
    for i in 0..100u8 {
        c.send_binary(vec![i; 16]).unwrap();
    }
    let q = c.outgoing();
    assert_eq!(q.chunk().len(), 100 * 18);
}

#[test]
fn write_into_caller_buffer_in_small_pieces() {
    let (mut client, mut server) = pair(Config::default());
    client
        .send_text("a longer message that is written out in tiny pieces")
        .unwrap();
    let mut piece = [0u8; 3];
    loop {
        let n = client.outgoing().write_to(&mut piece);
        if n == 0 {
            break;
        }
        server.receive(&piece[..n]);
    }
    assert_eq!(
        drain(&mut server).unwrap(),
        vec![Event::Message(Message::from(
            "a longer message that is written out in tiny pieces"
        ))]
    );
}

#[test]
fn read_buf_lends_the_engine_buffer() {
    let mut s = Connection::new(Role::Server, Config::default());
    let wire = cframe(true, TEXT, b"direct");
    let buf = s.read_buf();
    assert!(buf.capacity() - buf.len() >= 4096);
    buf.extend_from_slice(&wire);
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::from("direct")))
    );
}

#[test]
fn chunk_level_streams_without_limits_when_asked() {
    let mut config = level(RecvLevel::Chunk);
    config.max_frame_size = None;
    config.max_message_size = None;
    let mut s = Connection::new(Role::Server, config);
    // A frame declaring 1 GiB; deliver 3 MiB in pieces and check memory stays with the pieces.
    let mut wire = vec![0x82, 0xff];
    wire.extend_from_slice(&(1u64 << 30).to_be_bytes());
    wire.extend_from_slice(&[0; 4]);
    s.receive(&wire);
    let mut total = 0;
    for _ in 0..48 {
        s.receive(&[0u8; 65536]);
        for e in drain(&mut s).unwrap() {
            if let Event::FrameData(d) = e {
                total += d.len();
            }
        }
        assert_eq!(s.buffered(), 0);
    }
    assert_eq!(total, 48 * 65536);
}

#[test]
fn set_recv_level_between_messages() {
    let mut s = Connection::new(Role::Server, Config::default());
    s.receive(&cframe(false, TEXT, b"a"));
    s.receive(&cframe(true, CONT, b"b"));
    s.receive(&cframe(true, BIN, b"c"));
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::from("ab")))
    );
    s.set_recv_level(RecvLevel::Frame).unwrap();
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![
            Event::MessageStart {
                kind: MessageKind::Binary,
                rsv: 0
            },
            Event::Frame(Bytes::from_static(b"c")),
            Event::MessageEnd
        ]
    );
    s.receive(&cframe(false, BIN, b"d"));
    drain(&mut s).unwrap();
    assert!(s.set_recv_level(RecvLevel::Message).is_err());
}

#[test]
fn bytes_after_close_are_left_for_detach() {
    let mut s = Connection::new(Role::Server, Config::default());
    let mut wire = cframe(true, CLOSE, b"");
    wire.extend_from_slice(b"OTHER PROTOCOL");
    s.receive(&wire);
    drain(&mut s).unwrap();
    assert_eq!(&s.take_read_buffer()[..], b"OTHER PROTOCOL");
}

/// Lends the read buffer and appends as much of `wire` as the lent room takes (as a read
/// would); returns how many bytes were taken.
fn read_some(conn: &mut Connection, wire: &[u8]) -> usize {
    let buf = conn.read_buf();
    let room = buf.capacity() - buf.len();
    let n = room.min(wire.len());
    buf.extend_from_slice(&wire[..n]);
    n
}

#[test]
fn read_room_grows_while_reads_fill_it_and_shrinks_after() {
    let mut config = Config::default();
    config.read_buffer_size = 1024;
    config.max_read_buffer_size = 8192;
    let (mut client, mut server) = pair(config);
    for _ in 0..200 {
        client.send_binary(vec![7u8; 100]).unwrap();
    }
    let wire = take_out(&mut client);
    assert_eq!(server.read_reserve(), 1024);
    let mut at = 0;
    let mut reserves = Vec::new();
    let mut messages = 0;
    while at < wire.len() {
        at += read_some(&mut server, &wire[at..]);
        messages += drain(&mut server).unwrap().len();
        reserves.push(server.read_reserve());
    }
    assert_eq!(messages, 200);
    // Each read filled the room: it doubled up to the cap.
    assert_eq!(&reserves[..4], &[2048, 4096, 8192, 8192]);
    // A read that would block (lent, nothing appended) changes nothing.
    server.read_buf();
    server.release_idle_buffers();
    server.read_buf();
    assert_eq!(drain(&mut server).unwrap().len(), 0);
    assert_eq!(server.read_reserve(), 8192);
    // Small reads: it halves back down to read_buffer_size, never below.
    client.send_binary(vec![1u8; 10]).unwrap();
    let small = take_out(&mut client);
    for expect in [4096, 2048, 1024, 1024] {
        assert_eq!(read_some(&mut server, &small), small.len());
        assert_eq!(drain(&mut server).unwrap().len(), 1);
        assert_eq!(server.read_reserve(), expect);
    }
}

#[test]
fn idle_connection_gives_its_buffers_back() {
    let (mut client, mut server) = pair(Config::default());
    client.send_binary(vec![7u8; 3000]).unwrap();
    let wire = take_out(&mut client);
    // Half a frame arrived: the buffer holds it, and keeps it.
    read_some(&mut server, &wire[..1500]);
    assert!(drain(&mut server).unwrap().is_empty());
    server.release_idle_buffers();
    read_some(&mut server, &wire[1500..]);
    assert_eq!(drain(&mut server).unwrap().len(), 1);
    // Now it is empty: released.
    server.release_idle_buffers();
    assert_eq!(server.take_read_buffer().capacity(), 0);
    // The same for what a client sends: the output buffer goes once written.
    client.send_binary(vec![1u8; 10]).unwrap();
    take_out(&mut client);
    client.release_idle_buffers();
    client.send_binary(vec![2u8; 10]).unwrap();
    assert_eq!(take_out(&mut client).len(), 2 + 4 + 10);
}

#[test]
fn a_read_that_would_block_releases_buffers_only_after_small_reads() {
    let mut config = Config::default();
    config.read_buffer_size = 1024;
    let (mut client, mut server) = pair(config);
    // A small read, then nothing: the empty buffer goes.
    client.send_binary(vec![1u8; 10]).unwrap();
    let small = take_out(&mut client);
    read_some(&mut server, &small);
    assert_eq!(drain(&mut server).unwrap().len(), 1);
    server.read_buf();
    server.read_would_block();
    let (mut client2, mut server2) = pair({
        let mut c = Config::default();
        c.read_buffer_size = 1024;
        c
    });
    // Reads that fill a growing room, then nothing: the buffer stays for the next read.
    // (128-byte frames, each read a whole number of them: it ends at a frame boundary, so
    // the buffer is empty.)
    for _ in 0..50 {
        client2.send_binary(vec![7u8; 122]).unwrap();
    }
    let wire = take_out(&mut client2);
    let mut at = 0;
    for _ in 0..2 {
        let room = read_room(&mut server2);
        at += read_at_most(&mut server2, &wire[at..], room / 128 * 128).0;
        drain(&mut server2).unwrap();
    }
    assert!(server2.read_reserve() > 1024);
    // A read of half the room: the buffer keeps spare capacity once drained.
    let half = server2.read_reserve() / 2;
    read_some(&mut server2, &wire[at..at + half]);
    drain(&mut server2).unwrap();
    assert_eq!(server2.buffered(), 0);
    server2.read_would_block();
    assert!(server2.take_read_buffer().capacity() > 0);
    assert_eq!(server.take_read_buffer().capacity(), 0);
}

/// The room the read buffer lends now.
fn read_room(conn: &mut Connection) -> usize {
    let buf = conn.read_buf();
    buf.capacity() - buf.len()
}

/// Lends the read buffer and appends at most `max` bytes of `wire` (as a read would, when
/// the kernel holds only that much); returns how many bytes were taken and the address the
/// first one was written to.
fn read_at_most(conn: &mut Connection, wire: &[u8], max: usize) -> (usize, usize) {
    let floor = conn.config().read_buffer_size;
    let buf = conn.read_buf();
    let room = buf.capacity() - buf.len();
    // Never less than the least room a reader is promised.
    assert!(room >= floor, "{room}");
    let n = room.min(wire.len()).min(max);
    let at = buf.as_ptr() as usize + buf.len();
    buf.extend_from_slice(&wire[..n]);
    (n, at)
}

/// Reads `wire` (64 KiB messages) into `server` in reads of at most `max` bytes, and checks
/// that every message after the first `warm` ones was handed out from the place its payload
/// was read into: no partial frame was moved to a bigger buffer.
fn assert_large_frames_read_in_place(max: usize, warm: usize) -> usize {
    const PAYLOAD: usize = 64 * 1024;
    const FRAME: usize = PAYLOAD + 14;
    let (mut client, mut server) = pair(Config::default());
    let count = 40;
    for i in 0..count {
        client.send_binary(vec![i as u8; PAYLOAD]).unwrap();
    }
    let wire = take_out(&mut client);
    assert_eq!(wire.len(), count * FRAME);
    let mut reads = Vec::new(); // (wire offset, address) of each read's first byte
    let mut messages = Vec::new(); // kept alive: no address is reused
    let mut at = 0;
    while at < wire.len() {
        let (n, addr) = read_at_most(&mut server, &wire[at..], max);
        reads.push((at, addr));
        at += n;
        for e in drain(&mut server).unwrap() {
            match e {
                Event::Message(m) => messages.push(m.into_payload()),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(messages.len(), count);
    for (i, payload) in messages.iter().enumerate().skip(warm) {
        assert_eq!(payload.len(), PAYLOAD);
        assert!(payload.iter().all(|&b| b == i as u8));
        // (Its first bytes may have come with the frame before, and been moved: at most
        // `read_buffer_size`, 4 KiB, and mostly a few dozen.)
        for at in [4096, PAYLOAD / 2, PAYLOAD - 1] {
            let off = i * FRAME + 14 + at;
            let &(start, addr) = reads.iter().rev().find(|(s, _)| *s <= off).unwrap();
            assert_eq!(
                payload.as_ptr() as usize + at,
                addr + (off - start),
                "message {i} was moved after it was read (reads of at most {max})"
            );
        }
    }
    reads.len()
}

/// 64 KiB messages, 8 and more in flight: once the read room has grown, each frame is read
/// straight into the place it is handed out from, with its header, whether the kernel has
/// all of them (one frame per read) or less than a frame (the rest read in place).
#[test]
fn large_frames_are_read_in_place_not_moved() {
    assert_large_frames_read_in_place(usize::MAX, 8);
    assert_large_frames_read_in_place(40_000, 8);
    assert_large_frames_read_in_place(100_000, 8);
}

/// A backlog of 64 KiB frames (the kernel holds all of them): each read takes two whole
/// frames (twice `max_read_buffer_size`), still in place, so an echo of a burst makes half
/// as many reads and writes as frames. (One frame per read cost 1.6x the server CPU per
/// echo at 1 x 64 KiB x 8 in flight.)
#[test]
fn a_backlog_of_large_frames_is_read_two_per_read() {
    let reads = assert_large_frames_read_in_place(usize::MAX, 8);
    assert!(reads <= 40 / 2 + 4, "{reads} reads for 40 frames");
    // Reads that bring less than the room (the kernel had no backlog) stay one frame each.
    let reads = assert_large_frames_read_in_place(66_000, 8);
    assert!(reads >= 40, "{reads} reads for 40 frames");
}

/// One 64 KiB message in flight: once the room has grown, a whole frame with its 14-byte
/// header arrives in one read (not 64 KiB and then 14 bytes).
#[test]
fn a_64k_frame_and_its_header_fit_one_read() {
    let (mut client, mut server) = pair(Config::default());
    let mut reads = 0;
    let mut short = false;
    // The messages are kept (as an echo server keeps each until it is written), so the
    // buffer they were split from cannot be reclaimed whole.
    let mut kept = Vec::new();
    for i in 0..12 {
        client.send_binary(vec![i as u8; 64 * 1024]).unwrap();
        let wire = take_out(&mut client);
        let mut at = 0;
        reads = 0;
        while at < wire.len() {
            let room = read_room(&mut server);
            let n = read_some(&mut server, &wire[at..]);
            short = n < room;
            at += n;
            reads += 1;
            kept.extend(drain(&mut server).unwrap());
        }
        server.read_buf();
        server.read_would_block();
    }
    assert_eq!(reads, 1);
    // Shorter than the room: a reader knows there is nothing more to read now.
    assert!(short);
    assert!(server.read_reserve() >= 64 * 1024);
}

/// 64 KiB messages one at a time, each kept until the next has arrived (as an echo server
/// keeps one while it is written): every read of a whole frame starts on a cache line,
/// even when it goes into the rest of the allocation the frame before was read into (the
/// kernel's copy into a misaligned destination is far slower).
#[test]
fn a_large_read_starts_on_a_cache_line() {
    let (mut client, mut server) = pair(Config::default());
    let mut kept = Vec::new();
    let mut starts = Vec::new();
    for i in 0..12 {
        client.send_binary(vec![i as u8; 64 * 1024]).unwrap();
        let wire = take_out(&mut client);
        let mut at = 0;
        let mut events = Vec::new();
        while at < wire.len() {
            let buf = server.read_buf();
            if buf.is_empty() && buf.capacity() >= 64 * 1024 {
                starts.push(buf.as_ptr() as usize);
            }
            at += read_some(&mut server, &wire[at..]);
            events.extend(drain(&mut server).unwrap());
        }
        assert_eq!(events.len(), 1);
        // Only the last message is kept: its buffer cannot be reclaimed, the one before can.
        kept.clear();
        kept.extend(events);
        server.read_would_block();
    }
    assert!(starts.len() >= 8, "{}", starts.len());
    for s in &starts {
        assert_eq!(s % 64, 0, "a read starts at {s:#x}");
    }
    // They are not all one place: the rest of an allocation was used too.
    assert!(starts.iter().any(|s| *s != starts[0]));
}

/// The header of a 64 KiB frame arrived alone: the room offered covers the rest of it.
#[test]
fn after_a_large_header_the_room_covers_the_rest_of_the_frame() {
    let (mut client, mut server) = pair(Config::default());
    client.send_binary(vec![3u8; 64 * 1024]).unwrap();
    let wire = take_out(&mut client);
    server.receive(&wire[..14]);
    assert!(drain(&mut server).unwrap().is_empty());
    let buf = server.read_buf();
    assert!(buf.capacity() - buf.len() >= 64 * 1024);
    buf.extend_from_slice(&wire[14..]);
    assert_eq!(drain(&mut server).unwrap().len(), 1);
}

/// A header declaring 1 GiB: over a small limit it fails and offers no room for it; with no
/// limit at all the room is still bounded (it grows as the bytes arrive, not as declared).
#[test]
fn a_declared_gigabyte_reserves_nothing_like_it() {
    let mut hdr = vec![0x82, 0xff];
    hdr.extend_from_slice(&(1u64 << 30).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    let mut config = Config::default();
    config.max_frame_size = Some(4096);
    let mut s = Connection::new(Role::Server, config);
    s.receive(&hdr);
    let room = s.read_buf().capacity();
    assert!(room <= 128 * 1024, "{room}");
    assert!(s.poll_event().is_err());
    assert!(s.read_buf().capacity() <= 128 * 1024);
    let mut config = Config::default();
    config.max_frame_size = None;
    config.max_message_size = None;
    let mut s = Connection::new(Role::Server, config);
    s.receive(&hdr);
    assert!(drain(&mut s).unwrap().is_empty());
    let room = s.read_buf().capacity();
    assert!(room <= 2 << 20, "{room}");
}

/// A read room lent as a buffer of its own (`lend_read_room`, for io_uring) and given back
/// filled (`read_done`): the bytes land in the allocation the engine hands them out from
/// (no copy), `read_would_block` while it is out changes nothing, and the room adapts as
/// after any read.
#[test]
fn a_lent_read_room_comes_back_in_place_and_adapts() {
    let mut config = Config::default();
    config.read_buffer_size = 1024;
    config.max_read_buffer_size = 64 * 1024;
    let (mut client, mut server) = pair(config);
    let msg = vec![7u8; 60_000];
    client.send_binary(msg.clone()).unwrap();
    let wire = take_out(&mut client);
    let mut at = 0;
    let mut events = Vec::new();
    let mut rooms = Vec::new();
    while at < wire.len() {
        let reserve = server.read_reserve();
        let mut room = server.lend_read_room();
        assert!(room.is_empty() && room.capacity() > 0);
        // Waiting with the room out: nothing learned, nothing released.
        server.read_would_block();
        assert_eq!(server.read_reserve(), reserve);
        let n = room.capacity().min(wire.len() - at);
        room.extend_from_slice(&wire[at..at + n]);
        at += n;
        rooms.push((room.as_ptr() as usize, n));
        server.read_done(room);
        events.extend(drain(&mut server).unwrap());
    }
    assert_eq!(events, vec![Event::Message(Message::Binary(msg.into()))]);
    // Full rooms made it grow: the frame's rest went into one room sized for it.
    assert!(rooms.len() >= 2 && rooms.len() < 8, "{rooms:?}");
    // The payload handed out is the room's memory: its rest was received in place.
    let Event::Message(Message::Binary(got)) = &events[0] else {
        unreachable!()
    };
    let (last_at, last_n) = *rooms.last().unwrap();
    let end = got.as_ptr() as usize + got.len();
    assert_eq!(
        last_at + last_n,
        end,
        "the last read is the payload's end, in place"
    );
}

/// A room given up (`read_buf` called instead of `read_done`): the engine goes on with a
/// buffer of its own, and bytes received later are not lost.
#[test]
fn a_read_room_given_up_leaves_the_engine_working() {
    let (mut client, mut server) = pair(Config::default());
    client.send(Message::from("one")).unwrap();
    client.send(Message::from("two")).unwrap();
    let wire = take_out(&mut client);
    let room = server.lend_read_room();
    drop(room);
    server.receive(&wire);
    assert_eq!(
        drain(&mut server).unwrap(),
        vec![
            Event::Message(Message::from("one")),
            Event::Message(Message::from("two"))
        ]
    );
}

/// `OutQueue::pieces` lends what a vectored write would, in order, with a large payload as
/// the very `Bytes` it was sent as (no copy), and small frames and headers as bytes.
#[test]
fn the_queue_lends_large_payloads_as_their_bytes() {
    let (_, mut server) = pair(Config::default());
    let big = Bytes::from(vec![3u8; 100_000]);
    server.send(Message::from("small")).unwrap();
    server.send(Message::Binary(big.clone())).unwrap();
    server.send(Message::from("after")).unwrap();
    let out = server.outgoing();
    let mut joined = Vec::new();
    let mut shared = 0;
    for p in out.pieces() {
        // (The small frame before it was cut off as a segment of its own: shared too.)
        if let weft_proto::OutPiece::Shared(b) = p {
            shared += (b.as_ptr() == big.as_ptr() && b.len() == big.len()) as usize;
        }
        joined.extend_from_slice(p.as_slice());
    }
    assert_eq!(shared, 1, "the payload was copied");
    let mut wire = Vec::new();
    while out.has_remaining() {
        let c = out.chunk().len();
        wire.extend_from_slice(out.chunk());
        out.advance(c);
    }
    assert_eq!(joined, wire);
    assert_eq!(out.pieces().count(), 0);
}

/// `read_room` is the room the engine means (the adaptive room, or a large frame's rest),
/// not whatever spare capacity an earlier room left: after large reads and then small
/// ones it is small again, while a large frame arriving makes it the frame's rest.
#[test]
fn read_room_says_the_room_meant() {
    let mut config = Config::default();
    config.read_buffer_size = 1024;
    config.max_read_buffer_size = 64 * 1024;
    let (mut client, mut server) = pair(config);
    // A large frame: once its header is in, the room is its rest (and a header's slack).
    client.send_binary(vec![5u8; 200_000]).unwrap();
    let wire = take_out(&mut client);
    let mut at = read_at_most(&mut server, &wire, 1000).0;
    drain(&mut server).unwrap();
    server.read_buf();
    assert!(
        server.read_room() >= wire.len() - at,
        "{}",
        server.read_room()
    );
    while at < wire.len() {
        at += read_some(&mut server, &wire[at..]);
    }
    assert_eq!(drain(&mut server).unwrap().len(), 1);
    // Small reads: the room shrinks back to read_buffer_size (and its slack).
    client.send_binary(vec![1u8; 10]).unwrap();
    let small = take_out(&mut client);
    for _ in 0..12 {
        read_some(&mut server, &small);
        drain(&mut server).unwrap();
    }
    let buf = server.read_buf();
    let spare = buf.capacity() - buf.len();
    assert_eq!(server.read_reserve(), 1024);
    assert_eq!(server.read_room(), 1024 + 64);
    assert!(spare >= server.read_room());
}
