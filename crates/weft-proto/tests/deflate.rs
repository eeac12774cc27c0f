//! permessage-deflate in the engine: every send style and receive level round-trips with
//! every parameter combination; RSV1 marks compressed messages; context takeover shrinks
//! repeats; a deflate bomb stops at the limit with 1009; bad data is 1007.
#![cfg(feature = "deflate")]

mod common;
use bytes::Bytes;
use common::*;
use weft_proto::deflate::{Deflate, DeflateParams};
use weft_proto::frame::OpCode;
use weft_proto::{
    CloseCode, Config, Connection, Event, Message, MessageAssembler, MessageKind, RecvLevel, Role,
};

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

fn deflate_pair(p: DeflateParams, level: RecvLevel) -> (Connection, Connection) {
    let mut config = Config::default();
    config.recv_level = level;
    config.deflate = Some(Deflate {
        params: p,
        level: 1,
        threshold: 16,
    });
    pair(config)
}

fn receive_all(c: &mut Connection, level: RecvLevel) -> Vec<Message> {
    receive_with(c, level, &mut MessageAssembler::new(None))
}

fn receive_with(c: &mut Connection, level: RecvLevel, asm: &mut MessageAssembler) -> Vec<Message> {
    drain(c)
        .unwrap()
        .iter()
        .filter_map(|e| match (level, e) {
            (RecvLevel::Message, Event::Message(m)) => Some(m.clone()),
            (RecvLevel::Message, _) => None,
            _ => asm.push(e).unwrap(),
        })
        .collect()
}

fn sample_messages() -> Vec<Message> {
    let repetitive: String = "the quick brown fox jumps over the lazy dog. ".repeat(2000);
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    vec![
        Message::from("tiny"),
        Message::from(""),
        Message::from(repetitive.clone()),
        Message::from(noise),
        Message::from("héllo wörld ✓ 𝄞 ".repeat(500)),
        Message::from(repetitive),
    ]
}

#[test]
fn every_parameter_combination_round_trips_at_every_level() {
    for snct in [false, true] {
        for cnct in [false, true] {
            for (sbits, cbits) in [(15, 15), (9, 12), (12, 9), (8, 8), (10, 15)] {
                for level in [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk] {
                    let p = params(snct, cnct, sbits, cbits);
                    let (mut client, mut server) = deflate_pair(p, level);
                    let msgs = sample_messages();
                    for m in &msgs {
                        client.send(m.clone()).unwrap();
                    }
                    pump(&mut client, &mut server);
                    assert_eq!(
                        receive_all(&mut server, level),
                        msgs,
                        "{p:?} {level:?} c->s"
                    );
                    for m in &msgs {
                        server.send(m.clone()).unwrap();
                    }
                    pump(&mut server, &mut client);
                    assert_eq!(
                        receive_all(&mut client, level),
                        msgs,
                        "{p:?} {level:?} s->c"
                    );
                }
            }
        }
    }
}

#[test]
fn rsv1_marks_compressed_messages_and_small_ones_go_plain() {
    let (mut client, _server) = deflate_pair(params(false, false, 15, 15), RecvLevel::Message);
    client.send(Message::from("short")).unwrap(); // under the threshold of 16
    client.send(Message::from("x".repeat(10_000))).unwrap();
    let frames = parse_frames(&take_out(&mut client));
    assert_eq!(frames[0].0.rsv, 0);
    assert_eq!(frames[1].0.rsv, 0b100);
    assert!(
        frames[1].1.len() < 200,
        "10 000 x's compress to {}",
        frames[1].1.len()
    );
}

#[test]
fn window_of_8_bits_means_uncompressed() {
    // zlib cannot compress with an 8-bit window: that end sends plain messages.
    let (mut client, mut server) = deflate_pair(params(false, false, 15, 8), RecvLevel::Message);
    client.send(Message::from("y".repeat(10_000))).unwrap();
    server.send(Message::from("y".repeat(10_000))).unwrap();
    let c = parse_frames(&take_out(&mut client));
    let s = parse_frames(&take_out(&mut server));
    assert_eq!(c[0].0.rsv, 0);
    assert_eq!(s[0].0.rsv, 0b100);
}

#[test]
fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
    let msg = Message::from("a line that the peer has seen before, again and again. ".repeat(20));
    for (nct, shrinks) in [(false, true), (true, false)] {
        let (mut client, mut server) = deflate_pair(params(nct, nct, 15, 15), RecvLevel::Message);
        client.send(msg.clone()).unwrap();
        let first = take_out(&mut client);
        client.send(msg.clone()).unwrap();
        let second = take_out(&mut client);
        assert_eq!(
            second.len() < first.len(),
            shrinks,
            "nct {nct}: {} then {}",
            first.len(),
            second.len()
        );
        server.receive(&first);
        server.receive(&second);
        assert_eq!(
            receive_all(&mut server, RecvLevel::Message),
            vec![msg.clone(), msg.clone()]
        );
    }
}

#[test]
fn fragmented_and_streamed_compressed_messages() {
    for level in [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk] {
        let (mut client, mut server) = deflate_pair(params(false, false, 15, 15), level);
        let mut config = client.config().clone();
        config.fragment_size = Some(7);
        let mut frag_client = Connection::new(Role::Client, config);
        let text = "fragments of a compressed message, cut every seven bytes ".repeat(30);
        frag_client.send(Message::from(text.clone())).unwrap();
        let wire = take_out(&mut frag_client);
        let frames = parse_frames(&wire);
        assert!(frames.len() > 2);
        assert_eq!(frames[0].0.rsv, 0b100);
        assert!(frames[1..]
            .iter()
            .all(|f| f.0.rsv == 0 && f.0.opcode == OpCode::Continuation));
        server.receive(&wire);
        assert_eq!(receive_all(&mut server, level), vec![Message::from(text)]);
        // begin / frame x N / end, each frame compressed and flushed as it goes.
        client.begin_message(MessageKind::Binary).unwrap();
        for i in 0..5u8 {
            client.send_frame(vec![i; 1000], false).unwrap();
        }
        client.end_message().unwrap();
        pump(&mut client, &mut server);
        let expect: Vec<u8> = (0..5u8).flat_map(|i| vec![i; 1000]).collect();
        assert_eq!(receive_all(&mut server, level), vec![Message::from(expect)]);
        // A declared-length frame cannot be compressed: that message goes plain.
        client.begin_message(MessageKind::Binary).unwrap();
        client.begin_frame(3, true).unwrap();
        client.send_frame_data(&b"abc"[..]).unwrap();
        let frames = parse_frames(&take_out(&mut client));
        assert_eq!(frames[0].0.rsv, 0);
    }
}

#[test]
fn any_split_of_a_compressed_stream_gives_the_same_messages() {
    let (mut client, _) = deflate_pair(params(false, false, 12, 12), RecvLevel::Message);
    for m in sample_messages() {
        client.send(m).unwrap();
    }
    let wire = take_out(&mut client);
    for level in [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk] {
        for piece in [1usize, 7, 100, 4096] {
            let (_, mut server) = deflate_pair(params(false, false, 12, 12), level);
            let mut got = Vec::new();
            let mut asm = MessageAssembler::new(None);
            for chunk in wire.chunks(piece) {
                server.receive(chunk);
                got.extend(receive_with(&mut server, level, &mut asm));
            }
            assert_eq!(got, sample_messages(), "{level:?} piece {piece}");
        }
    }
}

#[test]
fn a_deflate_bomb_ends_with_1009_without_spending_the_memory() {
    // 64 MiB of zeros: about 600 KiB compressed (at level 1), in one frame.
    let (mut client, _) = deflate_pair(params(false, false, 15, 15), RecvLevel::Message);
    let zeros = Bytes::from(vec![0u8; 64 << 20]);
    client.send(Message::Binary(zeros)).unwrap();
    let wire = take_out(&mut client);
    assert!(wire.len() < 1 << 20, "{}", wire.len());
    for level in [RecvLevel::Message, RecvLevel::Frame] {
        let mut config = Config::default();
        config.recv_level = level;
        config.max_message_size = Some(1 << 20);
        config.max_frame_size = Some(1 << 20);
        config.deflate = Some(Deflate {
            params: params(false, false, 15, 15),
            level: 1,
            threshold: 16,
        });
        let mut server = Connection::new(Role::Server, config);
        server.receive(&wire);
        let err = drain(&mut server).unwrap_err();
        assert_eq!(
            err.close_code(),
            Some(CloseCode::MESSAGE_TOO_BIG),
            "{level:?}"
        );
        assert_eq!(close_code_in(&take_out(&mut server)), Some(1009));
    }
    // The chunk level streams it in bounded pieces instead (no limit applies there).
    let mut config = Config::default();
    config.recv_level = RecvLevel::Chunk;
    config.deflate = Some(Deflate {
        params: params(false, false, 15, 15),
        level: 1,
        threshold: 16,
    });
    let mut server = Connection::new(Role::Server, config);
    server.receive(&wire);
    let mut total = 0usize;
    while let Some(e) = server.poll_event().unwrap() {
        if let Event::FrameData(d) = e {
            assert!(d.len() <= 64 * 1024);
            total += d.len();
        }
    }
    assert_eq!(total, 64 << 20);
}

/// A compressed frame is decoded as its bytes arrive, not buffered whole: the read buffer
/// never holds more than one piece of it. At the message level, with a message limit and
/// no frame limit, a frame that announces 8 MiB of incompressible data fails with 1009 as
/// soon as its decoded bytes pass the limit (it used to be buffered whole first, all 8 MiB,
/// whatever the limit); at the frame level it is decoded whole, piece by piece.
#[test]
fn a_large_compressed_frame_is_not_buffered_whole() {
    let mut x = 0x9e37_79b9u32;
    let noise: Vec<u8> = (0..8u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let (mut client, _) = deflate_pair(params(false, false, 15, 15), RecvLevel::Message);
    client.send(Message::Binary(noise.clone().into())).unwrap();
    let wire = take_out(&mut client);
    assert!(wire.len() > 8 << 20, "{}", wire.len());
    for level in [RecvLevel::Message, RecvLevel::Frame] {
        let mut config = Config::default();
        config.recv_level = level;
        config.max_message_size = Some(1 << 20);
        config.max_frame_size = match level {
            RecvLevel::Message => None,
            _ => Some(9 << 20),
        };
        config.deflate = Some(Deflate {
            params: params(false, false, 15, 15),
            level: 1,
            threshold: 16,
        });
        let mut server = Connection::new(Role::Server, config);
        let (mut fed, mut most) = (0, 0);
        let mut events = Vec::new();
        let mut error = None;
        while fed < wire.len() && error.is_none() {
            let piece = &wire[fed..(fed + (16 << 10)).min(wire.len())];
            server.receive(piece);
            fed += piece.len();
            most = most.max(server.buffered());
            match drain(&mut server) {
                Ok(e) => events.extend(e),
                Err(e) => error = Some(e),
            }
        }
        assert!(most <= 16 << 10, "{level:?}: {most} bytes buffered");
        match level {
            RecvLevel::Message => {
                let err = error.expect("1009");
                assert_eq!(err.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
                assert!(fed < 2 << 20, "1009 only after {fed} bytes");
                assert!(events.is_empty(), "{events:?}");
            }
            _ => {
                assert!(error.is_none(), "{error:?}");
                let frames: Vec<&Bytes> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Frame(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                assert_eq!(frames.len(), 1);
                assert!(frames[0][..] == noise[..], "the frame decoded differently");
            }
        }
    }
}

#[test]
fn invalid_compressed_data_and_misplaced_rsv1() {
    let mut config = Config::default();
    config.deflate = Some(Deflate {
        params: params(false, false, 15, 15),
        level: 1,
        threshold: 16,
    });
    // Garbage that is not a deflate stream: 1007.
    let mut s = Connection::new(Role::Server, config.clone());
    s.receive(&raw_frame(
        true,
        0b100,
        BIN,
        &[0xff, 0xff, 0xff, 0xff, 0x00],
        true,
    ));
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::INVALID_PAYLOAD)
    );
    // RSV1 on a continuation frame: 1002.
    let mut s = Connection::new(Role::Server, config.clone());
    let mut wire = raw_frame(false, 0, BIN, b"a", true);
    wire.extend(raw_frame(true, 0b100, CONT, b"b", true));
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    // RSV1 on a control frame: 1002.
    let mut s = Connection::new(Role::Server, config);
    s.receive(&raw_frame(true, 0b100, PING, b"", true));
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    // RSV1 without deflate negotiated: 1002.
    let mut s = Connection::new(Role::Server, Config::default());
    s.receive(&raw_frame(true, 0b100, BIN, b"x", true));
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    // Compress invalid UTF-8 as a binary message, then relabel its frame as text.
    let (mut client, _) = deflate_pair(params(false, false, 15, 15), RecvLevel::Message);
    let mut bad = "valid text, then ".repeat(10).into_bytes();
    bad.extend_from_slice(&[0xff, 0xfe]);
    client.send(Message::Binary(bad.into())).unwrap();
    let mut wire = take_out(&mut client).to_vec();
    wire[0] = (wire[0] & 0xf0) | 0x1; // opcode text
    let mut config = Config::default();
    config.deflate = Some(Deflate {
        params: params(false, false, 15, 15),
        level: 1,
        threshold: 16,
    });
    let mut s = Connection::new(Role::Server, config);
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::INVALID_PAYLOAD)
    );
}

fn settings(nct: bool) -> Deflate {
    Deflate {
        params: params(nct, nct, 15, 15),
        level: 1,
        threshold: 16,
    }
}

#[test]
fn per_message_deflate_holds_zlib_state_only_while_it_needs_it() {
    use weft_proto::deflate::PerMessageDeflate;
    use weft_proto::extension::{Boundary, Extension};
    let text = "some text that compresses, some text that compresses".repeat(10);
    for nct in [false, true] {
        let mut server = PerMessageDeflate::new(Role::Server, &settings(nct));
        let mut client = PerMessageDeflate::new(Role::Client, &settings(nct));
        // Nothing is made before the first compressed message.
        assert!(!server.holds_compressor() && !server.holds_decompressor());
        for _ in 0..2 {
            assert_eq!(server.start_encode(MessageKind::Text, None), 0b100);
            let mut wire = Vec::new();
            server.encode(text.as_bytes(), Boundary::Frame, &mut wire);
            // Mid-message the state is held whatever the parameters.
            assert!(server.holds_compressor());
            server.encode(text.as_bytes(), Boundary::Message, &mut wire);
            assert_eq!(server.holds_compressor(), !nct, "nct {nct}");
            client.start_decode(MessageKind::Text, 0b100).unwrap();
            let mut out = Vec::new();
            let progress = client
                .decode(&wire, Boundary::Frame, &mut out, usize::MAX / 2)
                .unwrap();
            assert!(progress.done);
            assert!(client.holds_decompressor());
            let progress = client
                .decode(&[], Boundary::Message, &mut out, usize::MAX / 2)
                .unwrap();
            assert!(progress.done);
            assert_eq!(client.holds_decompressor(), !nct, "nct {nct}");
            assert_eq!(out, text.repeat(2).as_bytes());
        }
    }
}

#[test]
fn per_message_deflate_decodes_under_any_output_bound_and_input_split() {
    use weft_proto::deflate::PerMessageDeflate;
    use weft_proto::extension::{Boundary, Extension};
    let msgs: Vec<Vec<u8>> = sample_messages()
        .into_iter()
        .map(|m| m.payload().to_vec())
        .collect();
    for nct in [false, true] {
        let mut enc = PerMessageDeflate::new(Role::Server, &settings(nct));
        let wires: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| {
                let mut w = Vec::new();
                enc.encode(m, Boundary::Message, &mut w);
                w
            })
            .collect();
        for (piece, max) in [(1usize, 1usize), (3, 7), (1000, 1), (4096, 65536)] {
            let mut dec = PerMessageDeflate::new(Role::Client, &settings(nct));
            for (m, wire) in msgs.iter().zip(&wires) {
                let mut out = Vec::new();
                let pieces: Vec<&[u8]> = wire.chunks(piece).collect();
                for (i, mut input) in pieces.iter().copied().enumerate() {
                    let end = if i + 1 == pieces.len() {
                        Boundary::Message
                    } else {
                        Boundary::None
                    };
                    loop {
                        let before = out.len();
                        let p = dec.decode(input, end, &mut out, max).unwrap();
                        assert!(out.len() - before <= max, "bound {max}");
                        input = &input[p.consumed..];
                        if p.done {
                            assert!(input.is_empty());
                            break;
                        }
                    }
                }
                assert_eq!(&out, m, "nct {nct} piece {piece} max {max}");
            }
        }
    }
}

#[test]
fn per_message_deflate_installed_by_hand_matches_config_deflate() {
    use weft_proto::deflate::PerMessageDeflate;
    for nct in [false, true] {
        let mut config = Config::default();
        config.deflate = Some(settings(nct));
        let mut by_config = Connection::new(Role::Server, config);
        let pmd = PerMessageDeflate::new(Role::Server, &settings(nct));
        let mut by_hand =
            Connection::with_extension(Role::Server, Config::default(), Box::new(pmd));
        for m in sample_messages() {
            by_config.send(m.clone()).unwrap();
            by_hand.send(m).unwrap();
        }
        let wire = take_out(&mut by_config);
        assert!(parse_frames(&wire).iter().any(|f| f.0.rsv == 0b100));
        assert_eq!(wire, take_out(&mut by_hand));
        let (mut client, _) = deflate_pair(params(nct, nct, 15, 15), RecvLevel::Message);
        client.receive(&wire);
        assert_eq!(
            receive_all(&mut client, RecvLevel::Message),
            sample_messages()
        );
    }
}
