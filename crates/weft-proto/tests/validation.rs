//! Every validation rule of RFC 6455 that the engine enforces, each with its close code
//! (REQUIREMENTS R1-R3, L1-L4).

mod common;
use common::*;
use weft_proto::{CloseCode, Config, Connection, Error, Event, Message, RecvLevel, Role};

/// Feeds `wire` to a fresh server (or client) and expects a protocol error with `code`;
/// checks the close frame queued for it and that the connection stays failed.
fn expect_failure(role: Role, config: Config, wire: &[u8], code: u16) {
    expect_failure_at(
        &[RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk],
        role,
        config,
        wire,
        code,
    )
}

/// Like [`expect_failure`], at the given receive levels only.
fn expect_failure_at(levels: &[RecvLevel], role: Role, config: Config, wire: &[u8], code: u16) {
    for &level in levels {
        let mut config = config.clone();
        config.recv_level = level;
        let mut c = Connection::new(role, config);
        c.receive(wire);
        let err = loop {
            match c.poll_event() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error for {wire:02x?} at {level:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(
            err.close_code(),
            Some(CloseCode(code)),
            "{err} at {level:?}"
        );
        assert!(!c.want_read());
        assert!(c.is_closed());
        // L4: it says why, again, and sends nothing more.
        assert!(matches!(c.poll_event(), Err(Error::Protocol(_))));
        assert!(matches!(
            c.send(Message::from("x")),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(c.ping(b""), Err(Error::Protocol(_))));
        let out = take_out(&mut c);
        // A client masks its close frame; parse_frames unmasks either way.
        assert_eq!(close_code_in(&out), Some(code), "{level:?}");
        assert!(c.is_done());
    }
}

fn server_fails(wire: &[u8], code: u16) {
    expect_failure(Role::Server, Config::default(), wire, code);
}

#[test]
fn reserved_bits_without_extension() {
    for rsv in 1..8 {
        server_fails(&raw_frame(true, rsv, TEXT, b"hi", true), 1002);
    }
}

#[test]
fn reserved_bits_allowed_for_negotiated_extension_only_on_first_frame() {
    let mut config = Config::default();
    config.extension_rsv = 0b100;
    let mut c = Connection::new(Role::Server, config.clone());
    c.receive(&raw_frame(true, 0b100, BIN, b"z", true));
    assert!(matches!(c.poll_event(), Ok(Some(Event::Message(_)))));
    // Not on a continuation, not on control frames, not other bits.
    let mut wire = raw_frame(false, 0b100, BIN, b"a", true);
    wire.extend(raw_frame(true, 0b100, CONT, b"b", true));
    expect_failure(Role::Server, config.clone(), &wire, 1002);
    expect_failure(
        Role::Server,
        config.clone(),
        &raw_frame(true, 0b100, PING, b"", true),
        1002,
    );
    expect_failure(
        Role::Server,
        config,
        &raw_frame(true, 0b010, TEXT, b"", true),
        1002,
    );
}

#[test]
fn reserved_opcodes() {
    for op in (3..=7).chain(11..=15) {
        server_fails(&cframe(true, op, b""), 1002);
    }
}

#[test]
fn fragmented_control_frame() {
    for op in [CLOSE, PING, PONG] {
        server_fails(&cframe(false, op, b""), 1002);
    }
}

#[test]
fn control_frame_over_125_bytes() {
    server_fails(&cframe(true, PING, &[0u8; 126]), 1002);
    // 125 is fine.
    let mut c = Connection::new(Role::Server, Config::default());
    c.receive(&cframe(true, PING, &[7u8; 125]));
    assert!(matches!(c.poll_event(), Ok(Some(Event::Ping(p))) if p.len() == 125));
}

#[test]
fn continuation_without_message() {
    server_fails(&cframe(true, CONT, b"x"), 1002);
}

#[test]
fn new_data_frame_inside_a_message() {
    let mut wire = cframe(false, TEXT, b"a");
    wire.extend(cframe(true, BIN, b"b"));
    server_fails(&wire, 1002);
    let mut wire = cframe(false, BIN, b"a");
    wire.extend(cframe(true, TEXT, b"b"));
    server_fails(&wire, 1002);
}

#[test]
fn one_byte_close_payload() {
    server_fails(&cframe(true, CLOSE, &[3]), 1002);
}

#[test]
fn invalid_close_codes() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        server_fails(&cframe(true, CLOSE, &code.to_be_bytes()), 1002);
    }
}

#[test]
fn valid_close_codes_accepted() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut c = Connection::new(Role::Server, Config::default());
        c.receive(&cframe(true, CLOSE, &code.to_be_bytes()));
        match c.poll_event() {
            Ok(Some(Event::Close(Some(f)))) => assert_eq!(f.code, CloseCode(code)),
            other => panic!("{code}: {other:?}"),
        }
        // The reply echoes the code.
        let out = take_out(&mut c);
        assert_eq!(close_code_in(&out), Some(code));
    }
}

#[test]
fn invalid_utf8_in_close_reason() {
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(&[b'o', b'k', 0xff]);
    server_fails(&cframe(true, CLOSE, &p), 1007);
}

#[test]
fn invalid_utf8_in_text() {
    server_fails(&cframe(true, TEXT, &[b'a', 0xc0, 0x80]), 1007);
    // Across fragments: a surrogate split between two frames.
    let mut wire = cframe(false, TEXT, &[b'a', 0xed]);
    wire.extend(cframe(true, CONT, &[0xa0, 0x80]));
    server_fails(&wire, 1007);
}

#[test]
fn incomplete_utf8_at_fin() {
    server_fails(&cframe(true, TEXT, &[b'a', 0xe2, 0x82]), 1007);
    let mut wire = cframe(false, TEXT, &[0xe2]);
    wire.extend(cframe(true, CONT, &[0x82]));
    server_fails(&wire, 1007);
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    // Autobahn 6.4.x: the bad byte arrives, the rest of the frame does not; fail now.
    for level in [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk] {
        let mut config = Config::default();
        config.recv_level = level;
        let mut c = Connection::new(Role::Server, config);
        let mut payload = b"hello".to_vec();
        payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
        payload.extend_from_slice(b"more text that has not arrived yet");
        let wire = cframe(true, TEXT, &payload);
        c.receive(&wire[..6 + 7]); // header (2 + 4 mask) + "hello" + 2 bad bytes
        let err = loop {
            match c.poll_event() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("did not fail early at {level:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD));
    }
}

/// Streams `wire` at the chunk level and returns the payload bytes that came through.
fn streamed_bytes(config: Config, wire: &[u8]) -> usize {
    let mut config = config;
    config.recv_level = RecvLevel::Chunk;
    let mut c = Connection::new(Role::Server, config);
    c.receive(wire);
    let mut n = 0;
    while let Some(e) = c.poll_event().unwrap() {
        if let Event::FrameData(d) = e {
            n += d.len();
        }
    }
    n
}

#[test]
fn frame_over_the_size_limit() {
    // Where the engine buffers whole frames (message and frame levels).
    let both = [RecvLevel::Message, RecvLevel::Frame];
    let mut config = Config::default();
    config.max_frame_size = Some(100);
    expect_failure_at(
        &both,
        Role::Server,
        config.clone(),
        &cframe(true, BIN, &[0; 101]),
        1009,
    );
    // The check is on the header: no payload needs to arrive.
    let wire = cframe(true, BIN, &[0; 1000]);
    expect_failure_at(&both, Role::Server, config.clone(), &wire[..8], 1009);
    let mut c = Connection::new(Role::Server, config.clone());
    c.receive(&cframe(true, BIN, &[0; 100]));
    assert!(matches!(c.poll_event(), Ok(Some(Event::Message(m))) if m.len() == 100));
    // The chunk level buffers nothing: the frame streams through.
    assert_eq!(streamed_bytes(config, &wire), 1000);
}

#[test]
fn message_over_the_size_limit() {
    let mut config = Config::default();
    config.max_message_size = Some(100);
    let mut wire = cframe(false, BIN, &[0; 60]);
    wire.extend(cframe(true, CONT, &[0; 41]));
    expect_failure_at(
        &[RecvLevel::Message],
        Role::Server,
        config.clone(),
        &wire,
        1009,
    );
    // Not assembled by the engine at the frame and chunk levels: it passes.
    assert_eq!(streamed_bytes(config.clone(), &wire), 101);
    let mut wire = cframe(false, BIN, &[0; 60]);
    wire.extend(cframe(true, CONT, &[0; 40]));
    let mut c = Connection::new(Role::Server, config);
    c.receive(&wire);
    assert!(matches!(c.poll_event(), Ok(Some(Event::Message(m))) if m.len() == 100));
}

#[test]
fn huge_declared_length_does_not_allocate() {
    let mut config = Config::default();
    config.max_frame_size = None;
    config.max_message_size = None;
    let mut c = Connection::new(Role::Server, config);
    // A header declaring 2^62 bytes, with none of them.
    let mut wire = vec![0x82, 0xff];
    wire.extend_from_slice(&(1u64 << 62).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    c.receive(&wire);
    assert!(matches!(c.poll_event(), Ok(None)));
    let buf = c.read_buf();
    assert!(buf.capacity() <= 2 << 20, "reserved {}", buf.capacity());
}

#[test]
fn masking_direction() {
    // A server requires masked frames...
    server_fails(&raw_frame(true, 0, TEXT, b"hi", false), 1002);
    // ...and a client refuses them.
    expect_failure(
        Role::Client,
        Config::default(),
        &raw_frame(true, 0, TEXT, b"hi", true),
        1002,
    );
    let mut c = Connection::new(Role::Client, Config::default());
    c.receive(&raw_frame(true, 0, TEXT, b"hi", false));
    assert_eq!(
        c.poll_event().unwrap(),
        Some(Event::Message(Message::from("hi")))
    );
}

#[test]
fn non_minimal_lengths() {
    // 16-bit length used for 5 bytes.
    let mut wire = vec![0x82, 0x80 | 126, 0, 5, 0, 0, 0, 0];
    wire.extend_from_slice(&[0; 5]);
    server_fails(&wire, 1002);
    // 64-bit length used for 200 bytes.
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&200u64.to_be_bytes());
    wire.extend_from_slice(&[0; 4]);
    server_fails(&wire, 1002);
}

#[test]
fn length_with_top_bit_set() {
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
    wire.extend_from_slice(&[0; 4]);
    server_fails(&wire, 1002);
}

#[test]
fn no_events_after_close() {
    let mut c = Connection::new(Role::Server, Config::default());
    let mut wire = cframe(true, CLOSE, &1000u16.to_be_bytes());
    wire.extend(cframe(true, TEXT, b"late"));
    c.receive(&wire);
    assert!(matches!(c.poll_event(), Ok(Some(Event::Close(_)))));
    assert_eq!(c.poll_event().unwrap(), None);
    assert!(!c.want_read());
}
