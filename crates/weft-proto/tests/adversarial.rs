//! Adversarial tests: inputs and call sequences chosen to break the engine (a hostile peer, a
//! demanding application). Each test states what RFC 6455 or REQUIREMENTS.md asks for; tests
//! that found a bug were fixed in the engine and now pass.

mod common;
use bytes::{Buf, Bytes, BytesMut};
use common::*;
use proptest::prelude::*;
use weft_proto::frame::{FrameHeader, OpCode};
use weft_proto::{
    CloseCode, Config, Connection, Error, Event, Message, MessageAssembler, MessageKind,
    ProtocolError, RecvLevel, Role, Utf8Bytes,
};

const LEVELS: [RecvLevel; 3] = [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk];

fn level(l: RecvLevel) -> Config {
    let mut c = Config::default();
    c.recv_level = l;
    c
}

fn server(config: Config) -> Connection {
    Connection::new(Role::Server, config)
}

/// A client whose mask keys are predictable, so two clients given the same calls produce the
/// same bytes.
fn counting_client(config: Config) -> Connection {
    let mut c = Connection::new(Role::Client, config);
    let mut n = 0u8;
    c.set_mask_source(move || {
        n = n.wrapping_add(1);
        [n, n ^ 0x5a, n ^ 0xa5, 0xff]
    });
    c
}

/// Whole messages from the events of any level (frame and chunk events are assembled).
fn messages(events: &[Event]) -> Vec<Message> {
    let mut asm = MessageAssembler::new(None);
    let mut out = Vec::new();
    for e in events {
        match e {
            Event::Message(m) => out.push(m.clone()),
            other => {
                if let Some(m) = asm.push(other).unwrap() {
                    out.push(m);
                }
            }
        }
    }
    out
}

/// Frames on the wire as (fin, opcode, unmasked payload), ignoring mask keys.
fn frames_of(wire: &[u8]) -> Vec<(bool, OpCode, Vec<u8>)> {
    parse_frames(wire)
        .into_iter()
        .map(|(h, p)| (h.fin, h.opcode, p))
        .collect()
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason.as_bytes());
    v
}

// ---------------------------------------------------------------------------------------------
// Bugs found in review (fixed; kept as regression tests)
// ---------------------------------------------------------------------------------------------

/// RFC 6455 §5.5.1: an endpoint that receives a close frame MUST answer it; it MAY wait until
/// its current message is sent. `Event::Close` documents "with `auto_close` the reply is
/// already queued". While a streamed frame is open the reply is skipped, and it is never
/// queued later either: the handshake never completes unless the application notices.
#[test]
fn peer_close_while_streaming_is_answered_once_the_frame_is_complete() {
    let mut s = server(Config::default());
    s.begin_message(MessageKind::Binary).unwrap();
    s.begin_frame(4, true).unwrap();
    s.send_frame_data("ab").unwrap();
    s.receive(&cframe(true, CLOSE, &close_payload(1001, "bye")));
    assert!(matches!(
        drain(&mut s).unwrap()[..],
        [Event::Close(Some(ref f))] if f.code == CloseCode::GOING_AWAY
    ));
    // The frame already on its way must be completed first...
    s.send_frame_data("cd").unwrap();
    let frames = frames_of(&take_out(&mut s));
    assert_eq!(frames[0], (true, OpCode::Binary, b"abcd".to_vec()));
    // ...and then the automatic reply goes out.
    assert_eq!(
        frames.last().map(|f| f.1),
        Some(OpCode::Close),
        "no close reply: {frames:?}"
    );
    assert_eq!(s.close_sent().map(|f| f.code), Some(CloseCode::GOING_AWAY));
    assert!(s.is_closed());
    assert!(s.is_done());
}

/// Automatic pongs are bounded at 32 waiting (a peer that pings faster than it reads must
/// not grow the queue). While the application streams a frame (begin_frame, then chunks as
/// they come from a file or a pipe) every pong is parked in a side list with no bound: a
/// ping flood from the peer grows memory without limit.
#[test]
fn ping_flood_while_streaming_stays_bounded() {
    let mut s = server(Config::default());
    s.begin_message(MessageKind::Binary).unwrap();
    s.begin_frame(4, true).unwrap();
    s.send_frame_data("ab").unwrap();
    // The header and "ab" are on the wire: no frame boundary is left for a pong.
    let mut wire = take_out(&mut s).to_vec();
    let ping = cframe(true, PING, &[0u8; 125]);
    for _ in 0..10_000 {
        s.receive(&ping);
        s.poll_event().unwrap();
    }
    s.send_frame_data("cd").unwrap();
    wire.extend_from_slice(&take_out(&mut s));
    let frames = frames_of(&wire);
    assert_eq!(frames[0], (true, OpCode::Binary, b"abcd".to_vec()));
    let pongs = frames.iter().filter(|f| f.1 == OpCode::Pong).count();
    assert!(pongs <= 32, "{pongs} pongs were held in memory");
}

/// `queued_messages` counts "messages and control frames queued and not yet completely
/// written" (REQUIREMENTS S7). A ping queued while a streamed frame is open is not counted
/// until the frame is complete.
#[test]
fn ping_held_behind_a_streamed_frame_is_counted() {
    let mut s = server(Config::default());
    s.begin_message(MessageKind::Binary).unwrap();
    s.begin_frame(4, true).unwrap();
    s.send_frame_data("ab").unwrap();
    take_out(&mut s);
    assert_eq!(s.queued_messages(), 0);
    s.ping(b"hb").unwrap();
    assert_eq!(s.queued_messages(), 1, "the queued ping is not counted");
    s.send_frame_data("cd").unwrap();
    assert_eq!(s.queued_messages(), 2);
    take_out(&mut s);
    assert_eq!((s.queued_messages(), s.queued_bytes()), (0, 0));
}

/// R7: RSV bits are handed to a negotiated extension. With permessage-deflate (RSV1) the
/// payload of a text message is compressed, so it is not UTF-8 until the extension has
/// inflated it (RFC 7692 §6: the UTF-8 rule applies to the decompressed data). The engine
/// validates the compressed bytes and fails the connection with 1007.
#[test]
fn compressed_text_is_left_to_the_extension() {
    let mut config = level(RecvLevel::Frame);
    config.extension_rsv = 0b100;
    let mut s = server(config);
    // A deflate stream is arbitrary bytes: here 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00 ("Hello").
    let deflated = [0xf2u8, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    s.receive(&raw_frame(true, 0b100, TEXT, &deflated, true));
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![
            Event::MessageStart {
                kind: MessageKind::Text,
                rsv: 0b100
            },
            Event::Frame(Bytes::copy_from_slice(&deflated)),
            Event::MessageEnd,
        ]
    );
}

/// `read_buf` lends the engine's `&mut BytesMut`, whose payload bytes are unmasked and
/// UTF-8-validated in place as they arrive. Safe code that edits them afterwards gets a
/// `Utf8Bytes` (whose `as_str` is `from_utf8_unchecked`) holding invalid UTF-8: undefined
/// behaviour from a safe API (a `debug_assert` catches it in debug builds).
#[test]
fn read_buf_cannot_forge_invalid_text() {
    let mut s = server(Config::default());
    let wire = cframe(true, TEXT, b"aaaaaaaa"); // 2 + 4 header bytes, 8 payload bytes
    s.receive(&wire[..10]);
    assert_eq!(s.poll_event().unwrap(), None); // "aaaa" is unmasked and validated now
    s.read_buf()[0] = 0xff; // an append-only contract that nothing enforces
    s.receive(&wire[10..]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.poll_event()));
    match result {
        Ok(Ok(Some(Event::Message(Message::Text(t))))) => assert!(
            std::str::from_utf8(t.as_bytes()).is_ok(),
            "Utf8Bytes holds invalid UTF-8: {:?}",
            t.as_bytes()
        ),
        Ok(Err(_)) => {} // refusing is fine too
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the engine built a Utf8Bytes from invalid UTF-8 (debug_assert)"),
    }
}

/// The same hole through another safe call: `take_read_buffer` in the middle of a frame takes
/// the bytes already unmasked and validated, and the engine goes on counting them as checked,
/// so the first bytes of whatever arrives next are neither unmasked nor validated.
#[test]
fn take_read_buffer_mid_frame_cannot_forge_invalid_text() {
    let mut s = server(Config::default());
    let wire = cframe(true, TEXT, b"aaaaaaaa");
    s.receive(&wire[..10]);
    assert_eq!(s.poll_event().unwrap(), None);
    let _ = s.take_read_buffer(); // e.g. a driver that detaches early
                                  // Four raw bytes that nobody will unmask or check, then the masked rest of the payload.
    s.receive(&[0xff; 4]);
    s.receive(&wire[10..]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.poll_event()));
    match result {
        Ok(Ok(Some(Event::Message(Message::Text(t))))) => assert!(
            std::str::from_utf8(t.as_bytes()).is_ok(),
            "Utf8Bytes holds invalid UTF-8: {:?}",
            t.as_bytes()
        ),
        Ok(Ok(None)) | Ok(Err(_)) => {}
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the engine built a Utf8Bytes from invalid UTF-8 (debug_assert)"),
    }
}

/// S5: one message from a list of buffers. An empty buffer after the last byte (or a list of
/// only empty buffers) makes `send_vectored` return an error although the whole message was
/// already queued: the caller retries or gives up, and the peer gets the message anyway (or
/// twice).
#[test]
fn vectored_message_with_empty_parts() {
    for parts in [
        vec![Bytes::from_static(b"abc"), Bytes::new()],
        vec![Bytes::new()],
        vec![Bytes::new(), Bytes::from_static(b"abc"), Bytes::new()],
    ] {
        let mut s = server(Config::default());
        let result = s.send_vectored(MessageKind::Binary, &parts);
        let frames = frames_of(&take_out(&mut s));
        let expect: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(frames, vec![(true, OpCode::Binary, expect)]);
        assert!(
            result.is_ok(),
            "{parts:?}: the message was queued but: {result:?}"
        );
    }
}

/// R4: queued control frames go out first, at frame boundaries; ARCHITECTURE.md: "Ping/pong go
/// to the earliest frame boundary not yet started". Small frames are coalesced into one
/// buffer, and the header of a large frame is appended to it too; once the first byte of that
/// buffer is written, it is treated as one started frame, so a ping (or an automatic pong)
/// waits behind every small message queued and behind the large message as well.
#[test]
fn control_frame_is_not_stuck_behind_a_started_coalescing_buffer() {
    let mut s = server(Config::default());
    for _ in 0..1000 {
        s.send_binary(vec![1u8; 100]).unwrap(); // 102 bytes each, all coalesced
    }
    s.send_binary(vec![2u8; 1 << 20]).unwrap(); // its header joins the coalescing buffer
    s.outgoing().advance(1);
    s.ping(b"now").unwrap();
    let rest = take_out(&mut s);
    let ping = [0x89, 3, b'n', b'o', b'w'];
    let at = rest.windows(5).position(|w| w == ping).unwrap();
    // It waits at most for the rest of one coalesced segment (8 KiB), never for the queue.
    assert!(at <= 8 * 1024 + 102, "the ping waits behind {at} bytes");
    // And at a frame boundary: the rest of the first frame, then whole 102-byte frames.
    assert_eq!((at + 1) % 102, 0, "the ping is inside a frame at {at}");
}

// ---------------------------------------------------------------------------------------------
// Receiving: levels, code points cut everywhere, zero-length frames, limits at the boundary
// ---------------------------------------------------------------------------------------------

/// A text message whose every byte is its own frame (code points cut at every edge), fed one
/// byte at a time, with a ping between two fragments: every level gives it back whole.
#[test]
fn text_cut_inside_every_code_point_at_every_level() {
    let text = "aé€𝄞z";
    let bytes = text.as_bytes();
    let mut wire = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let op = if i == 0 { TEXT } else { CONT };
        wire.extend(cframe(i == bytes.len() - 1, op, &[*b]));
        if i == 3 {
            wire.extend(cframe(true, PING, b"mid"));
        }
    }
    for l in LEVELS {
        let mut s = server(level(l));
        let mut events = Vec::new();
        for b in &wire {
            s.receive(std::slice::from_ref(b));
            events.extend(drain(&mut s).unwrap());
        }
        assert_eq!(messages(&events), vec![Message::from(text)], "{l:?}");
        let pings: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Ping(_)))
            .collect();
        assert_eq!(
            pings,
            vec![&Event::Ping(Bytes::from_static(b"mid"))],
            "{l:?}"
        );
    }
}

/// Zero-length data frames, first, middle and last, with control frames between them.
#[test]
fn zero_length_frames_at_every_level() {
    let mut wire = cframe(false, TEXT, b"");
    wire.extend(cframe(true, PING, b""));
    wire.extend(cframe(false, CONT, b""));
    wire.extend(cframe(true, PONG, b""));
    wire.extend(cframe(true, CONT, b""));
    wire.extend(cframe(true, BIN, b""));
    let expect = |l: RecvLevel| -> Vec<Event> {
        let text = Event::MessageStart {
            kind: MessageKind::Text,
            rsv: 0,
        };
        let bin = Event::MessageStart {
            kind: MessageKind::Binary,
            rsv: 0,
        };
        let ping = Event::Ping(Bytes::new());
        let pong = Event::Pong(Bytes::new());
        let hdr = |fin: bool, opcode: OpCode| {
            Event::FrameStart(FrameHeader {
                fin,
                rsv: 0,
                opcode,
                mask: Some([0x11, 0x22, 0x33, 0x44]),
                payload_len: 0,
            })
        };
        match l {
            RecvLevel::Message => vec![
                ping,
                pong,
                Event::Message(Message::from("")),
                Event::Message(Message::Binary(Bytes::new())),
            ],
            RecvLevel::Frame => {
                let f = || Event::Frame(Bytes::new());
                vec![
                    text,
                    f(),
                    ping,
                    f(),
                    pong,
                    f(),
                    Event::MessageEnd,
                    bin,
                    f(),
                    Event::MessageEnd,
                ]
            }
            RecvLevel::Chunk => vec![
                text,
                hdr(false, OpCode::Text),
                Event::FrameEnd,
                ping,
                hdr(false, OpCode::Continuation),
                Event::FrameEnd,
                pong,
                hdr(true, OpCode::Continuation),
                Event::FrameEnd,
                Event::MessageEnd,
                bin,
                hdr(true, OpCode::Binary),
                Event::FrameEnd,
                Event::MessageEnd,
            ],
        }
    };
    for l in LEVELS {
        // Whole, and byte by byte: the same events.
        let mut s = server(level(l));
        s.receive(&wire);
        assert_eq!(drain(&mut s).unwrap(), expect(l), "{l:?}");
        let mut s = server(level(l));
        let mut events = Vec::new();
        for b in &wire {
            s.receive(std::slice::from_ref(b));
            events.extend(drain(&mut s).unwrap());
        }
        assert_eq!(events, expect(l), "{l:?} byte by byte");
    }
}

/// Frame and message limits: exactly at the limit passes, one byte over fails with 1009, at
/// every level, with the limit reached across fragments for the message.
#[test]
fn limits_exactly_at_the_boundary_at_every_level() {
    for l in LEVELS {
        let mut config = level(l);
        config.max_frame_size = Some(100);
        config.max_message_size = Some(250);
        // A frame of exactly 100 bytes.
        let mut s = server(config.clone());
        s.receive(&cframe(true, BIN, &[1; 100]));
        assert_eq!(
            messages(&drain(&mut s).unwrap()),
            vec![Message::Binary(vec![1u8; 100].into())]
        );
        // 101: 1009 as soon as the header is read, before any payload, where the engine
        // buffers frames; the chunk level streams it.
        let mut s = server(config.clone());
        s.receive(&cframe(true, BIN, &[1; 101])[..8]);
        if l == RecvLevel::Chunk {
            assert!(drain(&mut s).is_ok());
        } else {
            let err = drain(&mut s).unwrap_err();
            assert_eq!(err.close_code(), Some(CloseCode::MESSAGE_TOO_BIG), "{l:?}");
            assert_eq!(close_code_in(&take_out(&mut s)), Some(1009));
        }
        // A message of exactly 250 bytes in three frames.
        let mut wire = cframe(false, TEXT, &[b'a'; 100]);
        wire.extend(cframe(false, CONT, &[b'b'; 100]));
        wire.extend(cframe(true, CONT, &[b'c'; 50]));
        let mut s = server(config.clone());
        s.receive(&wire);
        let got = messages(&drain(&mut s).unwrap());
        assert_eq!(got.len(), 1, "{l:?}");
        assert_eq!(got[0].len(), 250);
        // 251: the third header fails where the engine assembles (message level); the
        // frame and chunk levels hand the message out as it comes.
        let mut wire = cframe(false, TEXT, &[b'a'; 100]);
        wire.extend(cframe(false, CONT, &[b'b'; 100]));
        wire.extend(cframe(true, CONT, &[b'c'; 51]));
        let mut s = server(config);
        s.receive(&wire);
        if l == RecvLevel::Message {
            let err = drain(&mut s).unwrap_err();
            assert!(err.is_too_big(), "{l:?}: {err}");
            assert_eq!(close_code_in(&take_out(&mut s)), Some(1009));
        } else {
            assert_eq!(messages(&drain(&mut s).unwrap())[0].len(), 251);
        }
    }
}

/// A control frame is limited to 125 bytes, not by `max_frame_size` or `max_message_size`.
#[test]
fn tiny_limits_do_not_apply_to_control_frames() {
    let mut config = Config::default();
    config.max_frame_size = Some(0);
    config.max_message_size = Some(0);
    let mut s = server(config);
    s.receive(&cframe(true, PING, &[7; 125]));
    s.receive(&cframe(true, BIN, b""));
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![
            Event::Ping(vec![7u8; 125].into()),
            Event::Message(Message::Binary(Bytes::new()))
        ]
    );
}

/// Invalid UTF-8 in a later fragment, cut across the fragment edge, fails 1007 at every level
/// before the message ends; an incomplete code point at FIN fails 1007 too.
#[test]
fn bad_utf8_across_fragments_fails_1007_at_every_level() {
    for l in LEVELS {
        // "é" is c3 a9: c3 at the end of a fragment, then 0x28 — impossible.
        let mut wire = cframe(false, TEXT, b"ok\xc3");
        wire.extend(cframe(false, CONT, b"\x28rest"));
        let mut s = server(level(l));
        s.receive(&wire); // no final frame: the error may not wait for FIN
        let err = drain(&mut s).unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD), "{l:?}");
        assert_eq!(close_code_in(&take_out(&mut s)), Some(1007));

        let mut wire = cframe(false, TEXT, b"ok");
        wire.extend(cframe(true, CONT, b"\xe2\x82")); // € cut, and the message ends
        let mut s = server(level(l));
        s.receive(&wire);
        let err = drain(&mut s).unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD), "{l:?}");
        // Nothing of the last frame was handed out as if it were complete.
        assert!(!s.want_read());
    }
}

/// `read_buf` and `receive` feed the same buffer: mixing them, in any pattern, gives the same
/// events as one `receive` of everything.
#[test]
fn read_buf_and_receive_mixed() {
    let mut wire = cframe(false, TEXT, "héllo ".as_bytes());
    wire.extend(cframe(true, PING, b"p"));
    wire.extend(cframe(true, CONT, "wörld".as_bytes()));
    wire.extend(cframe(true, BIN, &[9; 3000]));
    wire.extend(cframe(true, CLOSE, &close_payload(1000, "")));
    for l in LEVELS {
        let mut whole = server(level(l));
        whole.receive(&wire);
        let expect = drain(&mut whole).unwrap();
        for step in [1usize, 3, 7, 100, 1500] {
            let mut s = server(level(l));
            let mut events = Vec::new();
            for (i, piece) in wire.chunks(step).enumerate() {
                if i % 2 == 0 {
                    s.receive(piece);
                } else {
                    s.read_buf().extend_from_slice(piece);
                }
                events.extend(drain(&mut s).unwrap());
            }
            // Chunk level: data chunks depend on the cuts; compare the assembled view.
            if l == RecvLevel::Chunk {
                assert_eq!(messages(&events), messages(&expect), "step {step}");
                assert_eq!(events.last(), expect.last());
            } else {
                assert_eq!(events, expect, "{l:?} step {step}");
            }
        }
    }
}

/// Switching levels between messages, several times, loses and duplicates nothing.
#[test]
fn switching_levels_between_messages() {
    let mut s = server(Config::default());
    let mut all = Vec::new();
    for (i, l) in [
        RecvLevel::Chunk,
        RecvLevel::Message,
        RecvLevel::Frame,
        RecvLevel::Chunk,
        RecvLevel::Frame,
        RecvLevel::Message,
    ]
    .into_iter()
    .enumerate()
    {
        s.set_recv_level(l).unwrap();
        let text = format!("message {i} ✓");
        let (a, b) = text.as_bytes().split_at(11); // inside ✓ (bytes 10..13)
        let mut wire = cframe(false, TEXT, a);
        wire.extend(cframe(true, CONT, b));
        s.receive(&wire);
        let events = drain(&mut s).unwrap();
        assert_eq!(messages(&events), vec![Message::from(text)], "{l:?}");
        all.extend(events);
    }
    assert_eq!(messages(&all).len(), 6);
}

/// A level change in the middle of a message is refused and changes nothing: the message
/// arrives at the old level.
#[test]
fn level_change_refused_mid_message_changes_nothing() {
    let mut s = server(level(RecvLevel::Frame));
    s.receive(&cframe(false, BIN, b"ab"));
    let first = drain(&mut s).unwrap();
    assert!(matches!(
        s.set_recv_level(RecvLevel::Message),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s.set_recv_level(RecvLevel::Chunk),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(s.config().recv_level, RecvLevel::Frame);
    // Setting the same level is fine.
    s.set_recv_level(RecvLevel::Frame).unwrap();
    s.receive(&cframe(true, CONT, b"cd"));
    let mut events = first;
    events.extend(drain(&mut s).unwrap());
    assert_eq!(
        events,
        vec![
            Event::MessageStart {
                kind: MessageKind::Binary,
                rsv: 0
            },
            Event::Frame(Bytes::from_static(b"ab")),
            Event::Frame(Bytes::from_static(b"cd")),
            Event::MessageEnd,
        ]
    );
    s.set_recv_level(RecvLevel::Message).unwrap();
}

/// A chunk-level application that hands the chunks back to a `MessageAssembler` gets the
/// same messages as the message level (V4), and the assembler's own limit gives 1009.
#[test]
fn assembler_on_chunks_with_a_limit() {
    let mut wire = cframe(false, TEXT, "ab".as_bytes());
    wire.extend(cframe(true, CONT, "cd".as_bytes()));
    let mut s = server(level(RecvLevel::Chunk));
    let mut events = Vec::new();
    for b in &wire {
        s.receive(std::slice::from_ref(b));
        events.extend(drain(&mut s).unwrap());
    }
    let mut asm = MessageAssembler::new(Some(4));
    let got: Vec<_> = events.iter().filter_map(|e| asm.push(e).unwrap()).collect();
    assert_eq!(got, vec![Message::from("abcd")]);
    let mut asm = MessageAssembler::new(Some(3));
    let err = events
        .iter()
        .map(|e| asm.push(e))
        .find_map(Result::err)
        .expect("over the assembler's limit");
    assert!(err.is_too_big());
    assert!(!asm.is_open());
}

/// Reserved opcodes, RSV bits, a bad close, and every framing fault each end the connection
/// with the right code even when they arrive one byte at a time, in the middle of a message.
#[test]
fn faults_in_the_middle_of_a_message_byte_by_byte() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (raw_frame(true, 0, 0x3, b"", true), 1002),
        (raw_frame(true, 0, 0xb, b"", true), 1002),
        (raw_frame(true, 0b010, CONT, b"x", true), 1002),
        (raw_frame(true, 0b100, PING, b"", true), 1002),
        (cframe(false, PING, b""), 1002),
        (cframe(true, CLOSE, b"\x03"), 1002),
        (cframe(true, CLOSE, &close_payload(1004, "")), 1002),
        (cframe(true, CLOSE, &close_payload(2999, "")), 1002),
        (cframe(true, CLOSE, &close_payload(5000, "")), 1002),
        (cframe(true, CLOSE, b"\x03\xe8\xc3"), 1007),
        (cframe(true, BIN, b"new message inside"), 1002),
        (cframe(true, TEXT, b"new message inside"), 1002),
        (raw_frame(true, 0, CONT, b"unmasked", false), 1002),
        (vec![0x80, 0xfe, 0x00, 0x10, 1, 2, 3, 4], 1002), // 16-bit length 16: not minimal
    ];
    for (fault, code) in cases {
        for l in LEVELS {
            let mut wire = cframe(false, TEXT, b"open");
            wire.extend(&fault);
            let mut s = server(level(l));
            let mut failed = None;
            for b in &wire {
                s.receive(std::slice::from_ref(b));
                match drain(&mut s) {
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let err = failed.unwrap_or_else(|| panic!("{l:?} {fault:02x?} accepted"));
            assert_eq!(
                err.close_code(),
                Some(CloseCode(code)),
                "{l:?} {fault:02x?}"
            );
            assert_eq!(close_code_in(&take_out(&mut s)), Some(code));
        }
    }
}

/// L4: after a failure, every later call says why and nothing more is read or written.
#[test]
fn after_a_failure_nothing_more_is_read_or_written() {
    let mut s = server(Config::default());
    s.send_text("queued before").unwrap();
    s.receive(&cframe(true, BIN, b"fine"));
    s.receive(&raw_frame(true, 0, BIN, b"unmasked", false));
    s.receive(&cframe(true, BIN, b"after the fault"));
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::Binary(Bytes::from_static(b"fine"))))
    );
    let err = s.poll_event().unwrap_err();
    assert!(matches!(err, Error::Protocol(ProtocolError::UnmaskedFrame)));
    for _ in 0..3 {
        assert!(matches!(
            s.poll_event(),
            Err(Error::Protocol(ProtocolError::UnmaskedFrame))
        ));
    }
    assert_eq!(s.error(), Some(&ProtocolError::UnmaskedFrame));
    assert!(!s.want_read());
    assert!(s.is_closed());
    assert!(!s.is_done());
    s.receive(&cframe(true, BIN, b"ignored"));
    assert_eq!(s.buffered(), 0);
    for r in [
        s.send_text("x"),
        s.ping(b""),
        s.pong(b""),
        s.begin_message(MessageKind::Text),
        s.close(CloseCode::NORMAL, ""),
    ] {
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    }
    // The data queued before the fault, then the close with 1002; then done.
    let frames = frames_of(&take_out(&mut s));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].2, b"queued before");
    assert_eq!(frames[1].1, OpCode::Close);
    assert_eq!(&frames[1].2[..2], &1002u16.to_be_bytes());
    assert!(s.is_done());
    assert_eq!(
        s.close_sent().map(|f| f.code),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    assert_eq!(s.close_status(), CloseCode::ABNORMAL);
}

/// Bytes after the peer's close are never parsed (not even garbage fails), and stay for
/// `take_read_buffer`, whether they came in the same read as the close or later.
#[test]
fn bytes_after_the_peers_close() {
    for l in LEVELS {
        let mut s = server(level(l));
        let mut wire = cframe(true, CLOSE, &close_payload(1000, "done"));
        wire.extend_from_slice(b"\xff\xff garbage, not a frame");
        s.receive(&wire);
        let ev = drain(&mut s).unwrap();
        assert_eq!(ev.len(), 1);
        assert!(matches!(ev[0], Event::Close(Some(_))));
        assert_eq!(s.poll_event().unwrap(), None);
        assert!(!s.want_read());
        assert!(s.error().is_none());
        s.receive(b"more");
        assert_eq!(
            s.take_read_buffer().as_ref(),
            b"\xff\xff garbage, not a framemore"
        );
        assert_eq!(s.poll_event().unwrap(), None);
    }
}

/// A peer declaring 2^63-1 bytes at the chunk level with no limits streams; nothing is
/// reserved for the declared length.
#[test]
fn huge_declared_frame_at_chunk_level_does_not_reserve_it() {
    let mut config = level(RecvLevel::Chunk);
    config.max_frame_size = None;
    config.max_message_size = None;
    let mut s = server(config);
    let mut hdr = vec![0x82, 0xff];
    hdr.extend_from_slice(&((1u64 << 63) - 1).to_be_bytes());
    hdr.extend_from_slice(&[0, 0, 0, 0]);
    s.receive(&hdr);
    for _ in 0..100 {
        s.read_buf().extend_from_slice(&[5u8; 1000]);
        drain(&mut s).unwrap();
    }
    assert!(s.read_buf().capacity() < 1 << 20);
}

// ---------------------------------------------------------------------------------------------
// Sending: masking never touches the caller's buffers, fragment sizes, errors change nothing
// ---------------------------------------------------------------------------------------------

/// A client masks every frame; a payload the caller still holds a clone of must never be
/// modified, whatever the send style and size (small ones are copied, large ones may be
/// masked in place only when uniquely owned).
#[test]
fn client_never_modifies_a_buffer_the_caller_still_holds() {
    for fragment_size in [None, Some(1), Some(700), Some(1500)] {
        let mut config = Config::default();
        config.fragment_size = fragment_size;
        let (mut client, mut server) = pair(config);
        let big = Bytes::from(vec![0x42u8; 3000]);
        let small = Bytes::from(vec![0x43u8; 10]);
        let text = Utf8Bytes::from("é".repeat(1500));
        // A buffer the caller keeps writing into, whose frozen head is sent.
        let mut own = BytesMut::with_capacity(8192);
        own.extend_from_slice(&[0x44; 2000]);
        let head = own.split_to(1000).freeze();
        // A slice of a larger buffer the caller keeps.
        let parent = Bytes::from(vec![0x45u8; 4000]);
        let part = parent.slice(1000..3000);

        client.send_binary(big.clone()).unwrap();
        client.send_binary(small.clone()).unwrap();
        client.send(Message::Text(text.clone())).unwrap();
        client.send_binary(head.clone()).unwrap();
        client.send_binary(part.clone()).unwrap();
        client.begin_message(MessageKind::Binary).unwrap();
        client.send_frame(big.clone(), false).unwrap();
        client.begin_frame(3000 + 10, true).unwrap();
        client.send_frame_data(big.clone()).unwrap();
        client.send_frame_data(small.clone()).unwrap();
        client
            .send_vectored(MessageKind::Binary, &[big.clone(), small.clone()])
            .unwrap();
        pump(&mut client, &mut server);

        assert!(big.iter().all(|&b| b == 0x42), "{fragment_size:?}");
        assert!(small.iter().all(|&b| b == 0x43));
        assert_eq!(text.as_str(), "é".repeat(1500));
        assert!(head.iter().all(|&b| b == 0x44));
        assert!(own.iter().all(|&b| b == 0x44));
        assert!(parent.iter().all(|&b| b == 0x45));
        let got = messages(&drain(&mut server).unwrap());
        assert_eq!(got.len(), 7);
        assert_eq!(got[0].payload(), &big);
        assert_eq!(got[2], Message::Text(text.clone()));
        assert_eq!(got[3].payload(), &head);
        assert_eq!(got[4].payload(), &part);
        assert_eq!(got[5].len(), 3000 + 3010);
        assert_eq!(got[6].len(), 3010);
    }
}

/// Uniquely owned payloads may be masked in place: the peer still gets the right bytes, for
/// every chunk phase of the key.
#[test]
fn uniquely_owned_payloads_masked_in_place_arrive_intact() {
    let (mut client, mut server) = pair(Config::default());
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    client.send_binary(data.clone()).unwrap();
    client.begin_message(MessageKind::Binary).unwrap();
    client.begin_frame(data.len() as u64, true).unwrap();
    let mut at = 0;
    for n in [1usize, 1027, 2, 1500, 3, 2467] {
        client
            .send_frame_data(Bytes::from(data[at..at + n].to_vec()))
            .unwrap();
        at += n;
    }
    assert_eq!(at, data.len());
    pump(&mut client, &mut server);
    let got = messages(&drain(&mut server).unwrap());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].payload().as_ref(), &data[..]);
    assert_eq!(got[1].payload().as_ref(), &data[..]);
}

/// fragment_size 0 (no split), 1, len - 1, exactly len, len + 1: the right number of frames,
/// minimal lengths, and the message back whole, for both roles.
#[test]
fn fragment_size_edge_values() {
    let text = "ab€d"; // 6 bytes, € at 2..5
    for role in [Role::Client, Role::Server] {
        for (size, frames_expected) in [
            (None, 1),
            (Some(0), 1),
            (Some(1), 6),
            (Some(5), 2),
            (Some(6), 1),
            (Some(7), 1),
            (Some(usize::MAX), 1),
        ] {
            let mut config = Config::default();
            config.fragment_size = size;
            let mut c = Connection::new(role, config);
            c.send_text(text).unwrap();
            c.send_text("").unwrap();
            assert_eq!(c.queued_messages(), 2);
            let wire = take_out(&mut c);
            let frames = frames_of(&wire);
            assert_eq!(frames.len(), frames_expected + 1, "{role:?} {size:?}");
            assert_eq!(frames[0].1, OpCode::Text);
            for f in &frames[1..frames_expected] {
                assert_eq!(f.1, OpCode::Continuation);
            }
            for (i, f) in frames[..frames_expected].iter().enumerate() {
                assert_eq!(f.0, i == frames_expected - 1, "{size:?} fin of frame {i}");
            }
            let mut peer = Connection::new(
                match role {
                    Role::Client => Role::Server,
                    Role::Server => Role::Client,
                },
                Config::default(),
            );
            peer.receive(&wire);
            assert_eq!(
                drain(&mut peer).unwrap(),
                vec![
                    Event::Message(Message::from(text)),
                    Event::Message(Message::from(""))
                ]
            );
            assert_eq!((c.queued_messages(), c.queued_bytes()), (0, 0));
        }
    }
}

/// One step of a send sequence, so it can be replayed on a second connection.
type Step = fn(&mut Connection) -> Result<(), Error>;

/// What a failing call must return.
type Expect = fn(&Error) -> bool;

/// (what, prefix, failing call, expected error, suffix)
type ErrorCase = (&'static str, Vec<Step>, Step, Expect, Vec<Step>);

/// Runs `prefix`, then the failing call, then `suffix` on one client, and `prefix` + `suffix`
/// on another: the failing call must return the expected error and leave no trace.
fn assert_error_changes_nothing(
    what: &str,
    prefix: &[Step],
    failing: Step,
    expect: Expect,
    suffix: &[Step],
) {
    let mut a = counting_client(Config::default());
    let mut b = counting_client(Config::default());
    for s in prefix {
        s(&mut a).unwrap();
        s(&mut b).unwrap();
    }
    let before = (a.queued_messages(), a.queued_bytes());
    let err = failing(&mut a).expect_err(what);
    assert!(expect(&err), "{what}: {err:?}");
    assert_eq!(before, (a.queued_messages(), a.queued_bytes()), "{what}");
    for s in suffix {
        s(&mut a).unwrap_or_else(|e| panic!("{what}: after the error: {e}"));
        s(&mut b).unwrap();
    }
    assert_eq!(
        frames_of(&take_out(&mut a)),
        frames_of(&take_out(&mut b)),
        "{what}"
    );
    assert_eq!(a.close_sent(), b.close_sent());
}

fn invalid_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_))
}

fn invalid_utf8(e: &Error) -> bool {
    matches!(e, Error::InvalidUtf8)
}

/// Every out-of-order or invalid send call, in every send state, is an error that leaves
/// the connection as it was: the same bytes go out afterwards as if it had not been made.
#[test]
fn send_errors_change_nothing() {
    let begin_text: Step = |c| c.begin_message(MessageKind::Text);
    let begin_bin: Step = |c| c.begin_message(MessageKind::Binary);
    let cut_euro: Step = |c| c.send_frame(Bytes::from_static(b"a\xe2\x82"), false);
    let finish_euro: Step = |c| c.send_frame(Bytes::from_static(b"\xac"), true);
    let stream4: Step = |c| c.begin_frame(4, true);
    let ab: Step = |c| c.send_frame_data("ab");
    let cd: Step = |c| c.send_frame_data("cd");
    let close: Step = |c| c.close(CloseCode::NORMAL, "");
    let ping: Step = |c| c.ping(b"p");

    let cases: Vec<ErrorCase> = vec![
        (
            "send_frame with no message",
            vec![],
            |c| c.send_frame("x", true),
            invalid_arg,
            vec![ping],
        ),
        (
            "end_message with no message",
            vec![],
            |c| c.end_message(),
            invalid_arg,
            vec![ping],
        ),
        (
            "begin_frame with no message",
            vec![],
            |c| c.begin_frame(3, true),
            invalid_arg,
            vec![ping],
        ),
        (
            "frame data with no frame",
            vec![],
            |c| c.send_frame_data("x"),
            invalid_arg,
            vec![ping],
        ),
        (
            "frame data with no frame, message open",
            vec![begin_bin],
            |c| c.send_frame_data("x"),
            invalid_arg,
            vec![ping, |c| c.end_message()],
        ),
        (
            "begin_message twice",
            vec![begin_bin],
            begin_text,
            invalid_arg,
            vec![|c| c.send_frame("x", true)],
        ),
        (
            "send while a message is open",
            vec![begin_bin],
            |c| c.send_text("x"),
            invalid_arg,
            vec![|c| c.end_message()],
        ),
        (
            "vectored while a message is open",
            vec![begin_bin],
            |c| c.send_vectored(MessageKind::Binary, &[Bytes::from_static(b"x")]),
            invalid_arg,
            vec![|c| c.end_message()],
        ),
        (
            "vectored bad text",
            vec![],
            |c| {
                c.send_vectored(
                    MessageKind::Text,
                    &[Bytes::from_static(b"a\xe2"), Bytes::from_static(b"\x82")],
                )
            },
            invalid_utf8,
            vec![ping],
        ),
        (
            "text cut at fin",
            vec![begin_text, cut_euro],
            |c| c.end_message(),
            invalid_utf8,
            vec![finish_euro],
        ),
        (
            "text cut at fin by an empty streamed frame",
            vec![begin_text, cut_euro],
            |c| c.begin_frame(0, true),
            invalid_utf8,
            vec![finish_euro],
        ),
        (
            "impossible text in a frame",
            vec![begin_text, cut_euro],
            |c| c.send_frame(Bytes::from_static(b"\x28"), false),
            invalid_utf8,
            vec![finish_euro],
        ),
        (
            "impossible text in a streamed chunk",
            vec![begin_text, cut_euro, |c| c.begin_frame(2, true)],
            |c| c.send_frame_data(Bytes::from_static(b"\xff")),
            invalid_utf8,
            vec![|c| c.send_frame_data(Bytes::from_static(b"\xacz"))],
        ),
        (
            "streamed text cut at its end",
            vec![begin_text, |c| c.begin_frame(2, true)],
            |c| c.send_frame_data(Bytes::from_static(b"a\xe2")),
            invalid_utf8,
            vec![|c| c.send_frame_data("ab")],
        ),
        (
            "chunk over the declared length",
            vec![begin_bin, stream4, ab],
            |c| c.send_frame_data("cde"),
            invalid_arg,
            vec![cd],
        ),
        (
            "begin_frame while one is open",
            vec![begin_bin, stream4],
            |c| c.begin_frame(1, true),
            invalid_arg,
            vec![ab, cd],
        ),
        (
            "send_frame while a streamed frame is open",
            vec![begin_bin, stream4, ab],
            |c| c.send_frame("x", true),
            invalid_arg,
            vec![cd],
        ),
        (
            "end_message while a streamed frame is open",
            vec![begin_bin, stream4, ab],
            |c| c.end_message(),
            invalid_arg,
            vec![cd],
        ),
        (
            "close while a streamed frame is open",
            vec![begin_bin, stream4, ab],
            close,
            invalid_arg,
            vec![cd, close],
        ),
        (
            "frame over 2^63-1",
            vec![begin_bin],
            |c| c.begin_frame(1 << 63, true),
            invalid_arg,
            vec![|c| c.end_message()],
        ),
        (
            "ping over 125",
            vec![],
            |c| c.ping(&[0; 126]),
            invalid_arg,
            vec![|c| c.ping(&[0; 125])],
        ),
        (
            "pong over 125",
            vec![],
            |c| c.pong(&[0; 126]),
            invalid_arg,
            vec![|c| c.pong(&[0; 125])],
        ),
        (
            "close reason over 123",
            vec![],
            |c| c.close(CloseCode::NORMAL, &"r".repeat(124)),
            invalid_arg,
            vec![|c| c.close(CloseCode::NORMAL, &"r".repeat(123))],
        ),
        (
            "close reason over 123 in bytes",
            vec![],
            |c| c.close(CloseCode::NORMAL, &"é".repeat(62)),
            invalid_arg,
            vec![close],
        ),
        (
            "close 1005",
            vec![],
            |c| c.close(CloseCode::NO_STATUS, ""),
            invalid_arg,
            vec![close],
        ),
        (
            "close 1006",
            vec![],
            |c| c.close(CloseCode::ABNORMAL, ""),
            invalid_arg,
            vec![close],
        ),
        (
            "close 1015",
            vec![],
            |c| c.close(CloseCode::TLS_HANDSHAKE, ""),
            invalid_arg,
            vec![close],
        ),
        (
            "close 1004",
            vec![],
            |c| c.close(CloseCode(1004), ""),
            invalid_arg,
            vec![close],
        ),
        (
            "close 999",
            vec![],
            |c| c.close(CloseCode(999), ""),
            invalid_arg,
            vec![close],
        ),
        (
            "close 5000",
            vec![],
            |c| c.close(CloseCode(5000), ""),
            invalid_arg,
            vec![close],
        ),
        (
            "close 0",
            vec![],
            |c| c.close(CloseCode(0), ""),
            invalid_arg,
            vec![close],
        ),
    ];
    for (what, prefix, failing, expect, suffix) in cases {
        assert_error_changes_nothing(what, &prefix, failing, expect, &suffix);
    }
}

/// After our close, every send call is `Closed` (not a protocol error, not accepted).
#[test]
fn after_our_close_every_send_is_closed() {
    let mut c = counting_client(Config::default());
    c.begin_message(MessageKind::Text).unwrap();
    c.send_frame("half", false).unwrap();
    c.close(CloseCode(4000), "private").unwrap();
    let results: Vec<Result<(), Error>> = vec![
        c.send_text("x"),
        c.send_binary(vec![1]),
        c.send_vectored(MessageKind::Binary, &[]),
        c.begin_message(MessageKind::Binary),
        c.send_frame("x", true),
        c.end_message(),
        c.begin_frame(1, true),
        c.send_frame_data("x"),
        c.ping(b""),
        c.pong(b""),
        c.close(CloseCode::NORMAL, ""),
    ];
    for r in results {
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    }
    let frames = frames_of(&take_out(&mut c));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], (false, OpCode::Text, b"half".to_vec()));
    assert_eq!(frames[1].1, OpCode::Close);
    assert_eq!(frames[1].2, close_payload(4000, "private"));
}

// ---------------------------------------------------------------------------------------------
// The close handshake in every order
// ---------------------------------------------------------------------------------------------

/// (want_read, want_write, is_closed, is_done)
fn flags(c: &Connection) -> (bool, bool, bool, bool) {
    (c.want_read(), c.want_write(), c.is_closed(), c.is_done())
}

#[test]
fn server_initiated_close_state_by_state() {
    let (mut client, mut server) = pair(Config::default());
    server.send_text("bye soon").unwrap();
    server.close(CloseCode::GOING_AWAY, "restart").unwrap();
    assert_eq!(flags(&server), (true, true, false, false));
    // The client still sends after the server's close was queued (not yet received).
    client.send_text("crossing").unwrap();
    pump(&mut server, &mut client);
    assert_eq!(flags(&server), (true, false, false, false));
    let ev = drain(&mut client).unwrap();
    assert_eq!(ev[0], Event::Message(Message::from("bye soon")));
    assert!(
        matches!(&ev[1], Event::Close(Some(f)) if f.code == CloseCode::GOING_AWAY && f.reason == "restart")
    );
    assert_eq!(flags(&client), (false, true, true, false));
    assert_eq!(
        client.close_sent().map(|f| f.code),
        Some(CloseCode::GOING_AWAY)
    );
    pump(&mut client, &mut server);
    assert_eq!(flags(&client), (false, false, true, true));
    // The server receives the data sent before the client's close, then the reply.
    let ev = drain(&mut server).unwrap();
    assert_eq!(ev[0], Event::Message(Message::from("crossing")));
    assert!(
        matches!(&ev[1], Event::Close(Some(f)) if f.code == CloseCode::GOING_AWAY && f.reason.is_empty())
    );
    assert_eq!(flags(&server), (false, false, true, true));
    assert!(!server.want_write()); // no reply to the reply
    assert_eq!(server.close_status(), CloseCode::GOING_AWAY);
}

#[test]
fn simultaneous_close() {
    let (mut client, mut server) = pair(Config::default());
    client.close(CloseCode::NORMAL, "c").unwrap();
    server.close(CloseCode(4001), "s").unwrap();
    let c_wire = take_out(&mut client);
    let s_wire = take_out(&mut server);
    client.receive(&s_wire);
    server.receive(&c_wire);
    assert!(
        matches!(&drain(&mut client).unwrap()[..], [Event::Close(Some(f))] if f.code == CloseCode(4001))
    );
    assert!(
        matches!(&drain(&mut server).unwrap()[..], [Event::Close(Some(f))] if f.code == CloseCode::NORMAL)
    );
    for c in [&client, &server] {
        assert_eq!(flags(c), (false, false, true, true));
    }
    assert_eq!(client.close_status(), CloseCode(4001));
    assert_eq!(server.close_status(), CloseCode::NORMAL);
    assert_eq!(client.close_sent().map(|f| f.code), Some(CloseCode::NORMAL));
}

/// Closing while our fragmented message is open: the close may go out between fragments
/// (a control frame), and the message is abandoned; the peer gets no partial message.
#[test]
fn close_while_our_fragmented_message_is_open() {
    for l in LEVELS {
        let (mut client, mut server) = pair(level(l));
        client.begin_message(MessageKind::Text).unwrap();
        client.send_frame("ab", false).unwrap();
        client.close(CloseCode::NORMAL, "").unwrap();
        assert!(matches!(client.end_message(), Err(Error::Closed)));
        pump(&mut client, &mut server);
        let ev = drain(&mut server).unwrap();
        assert!(matches!(ev.last(), Some(Event::Close(Some(_)))), "{l:?}");
        assert!(messages(&ev[..ev.len() - 1]).is_empty());
        pump(&mut server, &mut client);
        drain(&mut client).unwrap();
        assert!(client.is_done() && server.is_done());
    }
}

/// The peer's close while our fragmented message is open (no streamed frame): the reply goes
/// out at once and the rest of our message is refused.
#[test]
fn peer_close_while_our_fragmented_message_is_open() {
    let mut s = server(Config::default());
    s.begin_message(MessageKind::Binary).unwrap();
    s.send_frame("ab", false).unwrap();
    s.receive(&cframe(true, CLOSE, &close_payload(1000, "")));
    drain(&mut s).unwrap();
    assert!(matches!(s.send_frame("cd", true), Err(Error::Closed)));
    let frames = frames_of(&take_out(&mut s));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1], (true, OpCode::Close, close_payload(1000, "")));
    assert!(s.is_done());
}

/// With auto_close off, the application finishes its streamed frame after the peer's close
/// and then answers: the engine allows exactly that.
#[test]
fn peer_close_while_streaming_answered_by_the_application() {
    let mut config = Config::default();
    config.auto_close = false;
    let mut s = server(config);
    s.begin_message(MessageKind::Binary).unwrap();
    s.begin_frame(4, true).unwrap();
    s.send_frame_data("ab").unwrap();
    s.receive(&cframe(true, CLOSE, &close_payload(1000, "")));
    drain(&mut s).unwrap();
    assert!(!s.is_closed());
    assert!(matches!(
        s.close(CloseCode::NORMAL, ""),
        Err(Error::InvalidArgument(_))
    ));
    s.send_frame_data("cd").unwrap();
    s.close(CloseCode::NORMAL, "").unwrap();
    let frames = frames_of(&take_out(&mut s));
    assert_eq!(frames[0], (true, OpCode::Binary, b"abcd".to_vec()));
    assert_eq!(frames[1].1, OpCode::Close);
    assert!(s.is_done());
}

/// After our close, the peer's pings get no pong (nothing follows a close frame) but its data
/// is still delivered (half-close), until its close.
#[test]
fn half_closed_receives_data_but_sends_nothing() {
    let mut s = server(Config::default());
    s.close(CloseCode::NORMAL, "").unwrap();
    take_out(&mut s);
    s.receive(&cframe(true, PING, b"late"));
    s.receive(&cframe(true, TEXT, b"still here"));
    s.receive(&cframe(true, CLOSE, b""));
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![
            Event::Ping(Bytes::from_static(b"late")),
            Event::Message(Message::from("still here")),
            Event::Close(None),
        ]
    );
    assert!(!s.want_write());
    assert_eq!(s.close_status(), CloseCode::NO_STATUS);
    assert!(s.is_done());
}

/// A protocol error after our close: no second close frame, the failure is reported.
#[test]
fn protocol_error_after_our_close_sends_no_second_close() {
    let mut s = server(Config::default());
    s.close(CloseCode::NORMAL, "").unwrap();
    take_out(&mut s);
    s.receive(&cframe(true, CONT, b"stray"));
    assert!(matches!(
        s.poll_event(),
        Err(Error::Protocol(ProtocolError::UnexpectedContinuation))
    ));
    assert!(!s.want_write());
    assert_eq!(s.close_sent().map(|f| f.code), Some(CloseCode::NORMAL));
    assert!(s.is_done());
}

/// The maximum close reason (123 bytes, multi-byte UTF-8) goes out and comes back intact.
#[test]
fn longest_close_reason_round_trip() {
    let reason = "€".repeat(41); // 123 bytes
    let (mut client, mut server) = pair(Config::default());
    client.close(CloseCode(3000), &reason).unwrap();
    pump(&mut client, &mut server);
    match &drain(&mut server).unwrap()[..] {
        [Event::Close(Some(f))] => {
            assert_eq!(f.code, CloseCode(3000));
            assert_eq!(f.reason, reason.as_str());
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Random interleavings of every send style with control frames and partial writes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Style {
    Whole,
    Frames(Vec<usize>),
    Streamed(Vec<(usize, Vec<usize>)>),
    Vectored(Vec<usize>),
}

#[derive(Debug, Clone)]
struct Plan {
    text: bool,
    len: usize,
    style: Style,
}

#[derive(Debug, Clone)]
enum Side {
    Nothing,
    Write(usize),
    Ping(u8),
    Pong(u8),
    PeerPing(u8),
}

fn style() -> impl Strategy<Value = Style> {
    let cuts = || proptest::collection::vec(0usize..1500, 0..4);
    prop_oneof![
        Just(Style::Whole),
        cuts().prop_map(Style::Frames),
        proptest::collection::vec((0usize..1500, cuts()), 1..4).prop_map(Style::Streamed),
        cuts().prop_map(Style::Vectored),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        any::<bool>(),
        prop_oneof![0usize..20, 100usize..3000],
        style(),
    )
        .prop_map(|(text, len, style)| Plan { text, len, style })
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![
        3 => Just(Side::Nothing),
        3 => (1usize..2500).prop_map(Side::Write),
        1 => any::<u8>().prop_map(Side::Ping),
        1 => any::<u8>().prop_map(Side::Pong),
        1 => any::<u8>().prop_map(Side::PeerPing),
    ]
}

/// A payload of `len` bytes: text with multi-byte code points (cut anywhere by the frames),
/// or binary.
fn payload(text: bool, len: usize, seed: usize) -> Bytes {
    if text {
        let mut s = String::new();
        let mut i = seed;
        while s.len() < len {
            let c = ['a', 'é', '€', '𝄞', 'z'][i % 5];
            if s.len() + c.len_utf8() > len {
                s.push('.');
            } else {
                s.push(c);
            }
            i += 1;
        }
        Bytes::from(s)
    } else {
        (0..len).map(|i| (i + seed) as u8).collect()
    }
}

/// Cuts `0..len` at the given points (sorted, clamped), giving piece lengths.
fn pieces(len: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(p - at);
        at = p;
    }
    out.push(len - at);
    out
}

struct Sender {
    c: Connection,
    peer_masked: bool,
    wire: Vec<u8>,
    /// Control frames in the order they were queued: (opcode, payload).
    controls: Vec<(OpCode, Vec<u8>)>,
    sides: std::vec::IntoIter<Side>,
}

impl Sender {
    /// Between two send calls: the next side action, then the accounting invariants.
    fn side(&mut self) {
        match self.sides.next().unwrap_or(Side::Nothing) {
            Side::Nothing => {}
            Side::Write(n) => {
                let q = self.c.outgoing();
                let mut buf = vec![0u8; n.min(q.len())];
                // Alternate between write_to and chunk + advance.
                if n % 2 == 0 {
                    let k = q.write_to(&mut buf);
                    self.wire.extend_from_slice(&buf[..k]);
                } else {
                    let c = q.chunk();
                    let k = c.len().min(n);
                    self.wire.extend_from_slice(&c[..k]);
                    q.advance(k);
                }
            }
            Side::Ping(b) => {
                self.c.ping(&[b; 3]).unwrap();
                self.controls.push((OpCode::Ping, vec![b; 3]));
            }
            Side::Pong(b) => {
                self.c.pong(&[b; 2]).unwrap();
                self.controls.push((OpCode::Pong, vec![b; 2]));
            }
            Side::PeerPing(b) => {
                self.c
                    .receive(&raw_frame(true, 0, PING, &[b; 5], self.peer_masked));
                assert_eq!(
                    drain(&mut self.c).unwrap(),
                    vec![Event::Ping(vec![b; 5].into())]
                );
                self.controls.push((OpCode::Pong, vec![b; 5]));
            }
        }
        assert_eq!(self.c.queued_bytes(), self.c.outgoing().remaining());
        assert_eq!(self.c.want_write(), self.c.queued_bytes() > 0);
    }
}

fn run_interleaving(role: Role, config: Config, plans: &[Plan], sides: Vec<Side>) {
    let mut s = Sender {
        c: Connection::new(role, config),
        peer_masked: role == Role::Server,
        wire: Vec::new(),
        controls: Vec::new(),
        sides: sides.into_iter(),
    };
    let mut sent = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let data = payload(p.text, p.len, i);
        let kind = if p.text {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        sent.push(if p.text {
            Message::Text(Utf8Bytes::try_from(data.clone()).unwrap())
        } else {
            Message::Binary(data.clone())
        });
        match &p.style {
            Style::Whole => {
                s.c.send(sent.last().unwrap().clone()).unwrap();
            }
            Style::Vectored(cuts) => {
                let mut parts = Vec::new();
                let mut at = 0;
                for n in pieces(data.len(), cuts) {
                    // Empty parts are left out: see `vectored_message_with_empty_parts`.
                    if n > 0 {
                        parts.push(data.slice(at..at + n));
                    }
                    at += n;
                }
                s.c.send_vectored(kind, &parts).unwrap();
            }
            Style::Frames(cuts) => {
                s.c.begin_message(kind).unwrap();
                s.side();
                let lens = pieces(data.len(), cuts);
                let mut at = 0;
                for (j, n) in lens.iter().enumerate() {
                    s.c.send_frame(data.slice(at..at + n), j == lens.len() - 1)
                        .unwrap();
                    at += n;
                    s.side();
                }
            }
            Style::Streamed(frames) => {
                s.c.begin_message(kind).unwrap();
                s.side();
                let frame_cuts: Vec<usize> = frames.iter().map(|f| f.0).collect();
                let lens = pieces(data.len(), &frame_cuts[1..]);
                let mut at = 0;
                for (j, n) in lens.iter().enumerate() {
                    s.c.begin_frame(*n as u64, j == lens.len() - 1).unwrap();
                    s.side();
                    let chunks = pieces(*n, &frames.get(j).map_or(vec![], |f| f.1.clone()));
                    for k in chunks {
                        if k == 0 {
                            continue;
                        }
                        s.c.send_frame_data(data.slice(at..at + k)).unwrap();
                        at += k;
                        s.side();
                    }
                }
                assert_eq!(at, data.len());
            }
        }
        s.side();
    }
    // Whatever is left of the side actions, then a close, then drain.
    while s.sides.len() > 0 {
        s.side();
    }
    s.c.close(CloseCode::NORMAL, "end").unwrap();
    s.wire.extend_from_slice(&take_out(&mut s.c));
    assert_eq!((s.c.queued_messages(), s.c.queued_bytes()), (0, 0));
    assert!(!s.c.want_write());

    // The peer must parse every frame: a control frame inside a data frame breaks this.
    let mut peer_config = Config::default();
    peer_config.max_message_size = None;
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut peer = Connection::new(peer_role, peer_config);
    peer.receive(&s.wire);
    let events = drain(&mut peer).unwrap();
    assert!(matches!(events.last(), Some(Event::Close(Some(f))) if f.code == CloseCode::NORMAL));
    let got_messages: Vec<Message> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got_messages, sent);
    let got_controls: Vec<(OpCode, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Ping(p) => Some((OpCode::Ping, p.to_vec())),
            Event::Pong(p) => Some((OpCode::Pong, p.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(got_controls, s.controls);
    assert_eq!(peer.buffered(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Every send style, with pings, pongs, automatic pongs and partial writes between every
    /// call, for both roles and several coalescing thresholds: the peer reads every message
    /// and every control frame in order (no control frame ever lands inside a data frame),
    /// and the queue counters reach zero exactly when the queue is drained.
    #[test]
    fn random_interleavings_keep_frames_whole_and_counts_exact(
        client in any::<bool>(),
        threshold in prop_oneof![Just(0usize), Just(1), Just(64), Just(1024), Just(usize::MAX)],
        fragment_size in prop_oneof![Just(None), Just(Some(0usize)), Just(Some(1)), Just(Some(7)), Just(Some(1000))],
        plans in proptest::collection::vec(plan(), 1..6),
        sides in proptest::collection::vec(side(), 0..30),
    ) {
        let mut config = Config::default();
        config.coalesce_threshold = threshold;
        config.fragment_size = fragment_size;
        let role = if client { Role::Client } else { Role::Server };
        run_interleaving(role, config, &plans, sides);
    }
}

// ---------------------------------------------------------------------------------------------
// More sequences
// ---------------------------------------------------------------------------------------------

/// A peer that pings far faster than we write, while we write one byte at a time: the queue
/// stays bounded, the wire stays well-formed, the latest ping is answered, and the counters
/// reach zero.
#[test]
fn ping_flood_with_trickling_writes() {
    let mut s = server(Config::default());
    let mut wire = Vec::new();
    s.send_binary(vec![3u8; 3000]).unwrap();
    for i in 0..2000u32 {
        s.receive(&cframe(true, PING, &i.to_be_bytes()));
        assert!(matches!(s.poll_event().unwrap(), Some(Event::Ping(_))));
        if i % 3 == 0 {
            s.send_text("x").unwrap();
        }
        let q = s.outgoing();
        let mut b = [0u8; 1];
        let n = q.write_to(&mut b);
        wire.extend_from_slice(&b[..n]);
        assert!(s.queued_bytes() < 3000 + 40 * 127 + 700 * 3 + 100);
        assert_eq!(s.queued_bytes(), s.outgoing().remaining());
    }
    wire.extend_from_slice(&take_out(&mut s));
    assert_eq!((s.queued_messages(), s.queued_bytes()), (0, 0));
    let mut client = Connection::new(Role::Client, Config::default());
    client.receive(&wire);
    let events = drain(&mut client).unwrap();
    let pongs: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Pong(p) => Some(u32::from_be_bytes(p[..].try_into().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(pongs.last(), Some(&1999));
    assert!(pongs.windows(2).all(|w| w[0] < w[1]), "pongs out of order");
    assert_eq!(messages(&events).len(), 1 + 667);
}

/// A peer's protocol error while we stream a frame: the error is reported, no close frame is
/// put inside the open frame, and the connection is done once the queue is written.
#[test]
fn peer_fault_while_we_stream_never_breaks_our_frame() {
    let mut s = server(Config::default());
    s.begin_message(MessageKind::Binary).unwrap();
    s.begin_frame(10, true).unwrap();
    s.send_frame_data("01234").unwrap();
    s.receive(&raw_frame(true, 0, TEXT, b"unmasked", false));
    assert!(matches!(s.poll_event(), Err(Error::Protocol(_))));
    assert!(matches!(
        s.send_frame_data("56789"),
        Err(Error::Protocol(_))
    ));
    let wire = take_out(&mut s);
    // Only the header and the 5 bytes supplied: nothing was inserted into the frame.
    assert_eq!(&wire[..], b"\x82\x0a01234");
    assert!(s.is_closed());
    assert!(s.is_done());
}

/// The level may change right after the last chunk of a message, before its FrameEnd and
/// MessageEnd were polled: those still arrive, and the next message comes at the new level.
#[test]
fn level_change_between_last_chunk_and_message_end() {
    let mut s = server(level(RecvLevel::Chunk));
    s.receive(&cframe(true, TEXT, b"one"));
    s.receive(&cframe(true, TEXT, b"two"));
    let mut events = Vec::new();
    while !matches!(events.last(), Some(Event::FrameData(_))) {
        events.push(s.poll_event().unwrap().unwrap());
    }
    s.set_recv_level(RecvLevel::Message).unwrap();
    events.extend(drain(&mut s).unwrap());
    assert_eq!(
        messages(&events),
        vec![Message::from("one"), Message::from("two")]
    );
    assert_eq!(events.last(), Some(&Event::Message(Message::from("two"))));
}

/// Client masking: each frame, control frames included, gets its own key from the source,
/// also for fragments and the automatic replies.
#[test]
fn every_client_frame_gets_a_fresh_key() {
    let mut config = Config::default();
    config.fragment_size = Some(2);
    let mut c = counting_client(config);
    c.send_text("abcdef").unwrap(); // 3 frames
    c.ping(b"p").unwrap();
    c.begin_message(MessageKind::Binary).unwrap();
    c.begin_frame(2, false).unwrap();
    c.send_frame_data("xy").unwrap();
    c.end_message().unwrap();
    c.receive(&raw_frame(true, 0, PING, b"q", false));
    c.receive(&raw_frame(true, 0, CLOSE, &close_payload(1000, ""), false));
    drain(&mut c).unwrap();
    let frames = parse_frames(&take_out(&mut c));
    assert_eq!(frames.len(), 3 + 1 + 2 + 1 + 1);
    let mut keys: Vec<[u8; 4]> = frames.iter().map(|f| f.0.mask.unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), frames.len());
}

#[derive(Debug, Clone)]
enum Feed {
    Receive(Vec<u8>),
    Lend(Vec<u8>),
    Level(u8),
    Poll,
}

fn feed() -> impl Strategy<Value = Feed> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Feed::Receive),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Feed::Lend),
        1 => (0u8..3).prop_map(Feed::Level),
        3 => Just(Feed::Poll),
    ]
}

/// Mostly-valid frames (so parsing gets deep), with random bytes spliced in.
fn frame_soup() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        any::<bool>(),
        prop_oneof![
            Just(0u8),
            Just(1),
            Just(2),
            Just(8),
            Just(9),
            Just(10),
            0u8..16
        ],
        proptest::collection::vec(any::<u8>(), 0..30),
        0u8..8,
    )
        .prop_map(|(fin, op, payload, rsv)| {
            let rsv = if rsv < 6 { 0 } else { rsv & 7 };
            raw_frame(fin, rsv, op, &payload, true)
        });
    proptest::collection::vec(frame, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Any bytes, in any pieces, through `receive` and `read_buf`, with level changes between
    /// polls: no panic, no hang; text is valid UTF-8; an error is sticky; after the peer's
    /// close nothing more is reported.
    #[test]
    fn hostile_input_never_panics(
        soup in frame_soup(),
        ops in proptest::collection::vec(feed(), 0..40),
        cut in 0usize..400,
    ) {
        let mut s = server(Config::default());
        let cut = cut.min(soup.len());
        s.receive(&soup[..cut]);
        let mut failed: Option<String> = None;
        let mut closed = false;
        let mut ops = ops;
        ops.push(Feed::Receive(soup[cut..].to_vec()));
        ops.push(Feed::Poll);
        for op in ops {
            match op {
                Feed::Receive(b) => s.receive(&b),
                Feed::Lend(b) => s.read_buf().extend_from_slice(&b),
                Feed::Level(l) => {
                    let _ = s.set_recv_level(LEVELS[l as usize]);
                }
                Feed::Poll => loop {
                    match s.poll_event() {
                        Ok(Some(e)) => {
                            prop_assert!(failed.is_none(), "event after an error: {e:?}");
                            prop_assert!(!closed, "event after close: {e:?}");
                            if let Event::Message(Message::Text(t)) = &e {
                                prop_assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                            }
                            if let Event::Close(_) = e {
                                closed = true;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let msg = e.to_string();
                            if let Some(prev) = &failed {
                                prop_assert_eq!(prev, &msg);
                            }
                            prop_assert!(!s.want_read());
                            prop_assert!(e.close_code().is_some());
                            failed = Some(msg);
                            break;
                        }
                    }
                },
            }
        }
        // Whatever happened, the queue drains to zero.
        take_out(&mut s);
        prop_assert_eq!((s.queued_messages(), s.queued_bytes()), (0, 0));
    }
}

// ---------------------------------------------------------------------------------------------
// The handshake parsers under mutation (they are also fuzzed; this runs with every test run)
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A valid request and response with a few bytes replaced, inserted or cut, parsed at
    /// every prefix: no panic, and a prefix that is accepted stays accepted (the same
    /// `consumed`) as more bytes arrive.
    #[test]
    fn handshake_parsers_survive_mutation(
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..6),
    ) {
        use weft_proto::handshake::{
            parse_extensions, parse_request, parse_response, ClientRequest, ExtensionOffer,
            ServerLimits, DEFAULT_MAX_HEAD_SIZE,
        };
        let request = ClientRequest::builder("ws://example.com:8080/chat?x=1")
            .origin("http://example.com")
            .protocols(["v2.chat", "v1.chat"])
            .extensions(&[ExtensionOffer::new("permessage-deflate")
                .with_param("client_max_window_bits", None)])
            .build()
            .unwrap();
        let mut req = Vec::new();
        request.write(&mut req);
        let mut resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: v1.chat\r\n\r\n",
            weft_proto::handshake::accept_key(request.key().as_bytes())
        )
        .into_bytes();
        for buf in [&mut req, &mut resp] {
            for &(at, byte, how) in &edits {
                let at = at as usize % (buf.len() + 1);
                match how {
                    0 if at < buf.len() => buf[at] = byte,
                    1 => buf.insert(at, byte),
                    _ if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => {}
                }
            }
        }
        let limits = ServerLimits::default();
        let mut accepted = None;
        for n in 0..=req.len() {
            match parse_request(&req[..n], &limits) {
                Ok(Some((r, consumed))) => {
                    prop_assert!(consumed <= n);
                    if let Some(c) = accepted {
                        prop_assert_eq!(c, consumed);
                    }
                    accepted = Some(consumed);
                    let _ = (r.resource(), r.host(), r.protocols(), r.extensions());
                }
                Ok(None) => prop_assert!(accepted.is_none(), "accepted, then incomplete"),
                Err(_) => {}
            }
        }
        prop_assert!(!edits.is_empty() || accepted == Some(req.len()));
        let mut accepted = None;
        for n in 0..=resp.len() {
            match parse_response(&resp[..n], &request, DEFAULT_MAX_HEAD_SIZE) {
                Ok(Some((_, consumed))) => {
                    prop_assert!(consumed <= n);
                    if let Some(c) = accepted {
                        prop_assert_eq!(c, consumed);
                    }
                    accepted = Some(consumed);
                }
                Ok(None) => prop_assert!(accepted.is_none(), "accepted, then incomplete"),
                Err(_) => {}
            }
        }
        prop_assert!(!edits.is_empty() || accepted == Some(resp.len()));
        let _ = parse_extensions(&req);
    }
}
