//! Property tests of the engine: any split of the input gives the same events; every send
//! style round-trips through the decoder for every size around the length-encoding edges.

mod common;
use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use weft_proto::{Config, Connection, Event, Message, MessageKind, RecvLevel, Role};

/// One step of what a sender does.
#[derive(Debug, Clone)]
enum Op {
    Whole(bool, Vec<u8>),
    Frames(bool, Vec<Vec<u8>>),
    Streamed(bool, Vec<Vec<u8>>),
    Ping(Vec<u8>),
}

fn text_or_bytes(text: bool) -> BoxedStrategy<Vec<u8>> {
    if text {
        "\\PC{0,40}".prop_map(String::into_bytes).boxed()
    } else {
        proptest::collection::vec(any::<u8>(), 0..300).boxed()
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_flat_map(|t| text_or_bytes(t).prop_map(move |p| Op::Whole(t, p))),
        any::<bool>().prop_flat_map(|t| proptest::collection::vec(text_or_bytes(t), 1..4)
            .prop_map(move |p| Op::Frames(t, p))),
        any::<bool>().prop_flat_map(|t| proptest::collection::vec(text_or_bytes(t), 1..4)
            .prop_map(move |p| Op::Streamed(t, p))),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(Op::Ping),
    ]
}

fn kind(text: bool) -> MessageKind {
    if text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

/// Runs the ops through a sender of `role`; returns the wire bytes and the whole messages.
fn encode(role: Role, ops: &[Op], fragment_size: Option<usize>) -> (Vec<u8>, Vec<Message>) {
    let mut config = Config::default();
    config.fragment_size = fragment_size;
    let mut c = Connection::new(role, config);
    let mut expect = Vec::new();
    let msg = |t: bool, p: Vec<u8>| {
        if t {
            Message::Text(String::from_utf8(p).unwrap().into())
        } else {
            Message::Binary(p.into())
        }
    };
    for op in ops {
        match op.clone() {
            Op::Whole(t, p) => {
                c.send(msg(t, p.clone())).unwrap();
                expect.push(msg(t, p));
            }
            Op::Frames(t, parts) => {
                c.begin_message(kind(t)).unwrap();
                for p in &parts {
                    c.send_frame(p.clone(), false).unwrap();
                    c.ping(b"between").unwrap();
                }
                c.end_message().unwrap();
                expect.push(msg(t, parts.concat()));
            }
            Op::Streamed(t, parts) => {
                c.begin_message(kind(t)).unwrap();
                let n = parts.len();
                for (i, p) in parts.iter().enumerate() {
                    c.begin_frame(p.len() as u64, i + 1 == n).unwrap();
                    // Feed each frame's payload in two chunks (cut anywhere for binary, at a
                    // char boundary-agnostic point for text: partial code points are fine).
                    let cut = p.len() / 2;
                    for chunk in [&p[..cut], &p[cut..]] {
                        if !chunk.is_empty() {
                            c.send_frame_data(chunk.to_vec()).unwrap();
                        }
                    }
                }
                expect.push(msg(t, parts.concat()));
            }
            Op::Ping(p) => c.ping(&p).unwrap(),
        }
    }
    (take_out(&mut c).to_vec(), expect)
}

/// Feeds `wire` cut at `cuts` to a receiver; returns its events with adjacent chunks merged.
fn decode(role: Role, level: RecvLevel, wire: &[u8], cuts: &[usize], lend: bool) -> Vec<Event> {
    let mut config = Config::default();
    config.recv_level = level;
    let mut c = Connection::new(role, config);
    let mut events = Vec::new();
    let mut start = 0;
    let mut feed = |c: &mut Connection, piece: &[u8]| {
        if lend {
            c.read_buf().extend_from_slice(piece);
        } else {
            c.receive(piece);
        }
        events.extend(drain(c).unwrap());
    };
    for &cut in cuts {
        let cut = cut.clamp(start, wire.len());
        feed(&mut c, &wire[start..cut]);
        start = cut;
    }
    feed(&mut c, &wire[start..]);
    merge_chunks(events)
}

fn merge_chunks(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        match (out.last_mut(), e) {
            (Some(Event::FrameData(prev)), Event::FrameData(d)) => {
                let mut v = prev.to_vec();
                v.extend_from_slice(&d);
                *prev = Bytes::from(v);
            }
            (_, e) => out.push(e),
        }
    }
    out
}

fn messages_of(level: RecvLevel, events: &[Event]) -> Vec<Message> {
    let mut asm = weft_proto::MessageAssembler::new(None);
    events
        .iter()
        .filter_map(|e| match (level, e) {
            (RecvLevel::Message, Event::Message(m)) => Some(m.clone()),
            (RecvLevel::Message, _) => None,
            _ => asm.push(e).unwrap(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_events(
        ops in proptest::collection::vec(op(), 1..8),
        mut cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        client_sends in any::<bool>(),
        fragment_size in proptest::option::of(1usize..64),
        lend in any::<bool>(),
    ) {
        let (sender, receiver) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let (wire, expect) = encode(sender, &ops, fragment_size);
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(wire.len() + 1)).collect();
        cuts.sort();
        for level in [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk] {
            let whole = decode(receiver, level, &wire, &[], false);
            let split = decode(receiver, level, &wire, &cuts, lend);
            prop_assert_eq!(&whole, &split, "level {:?}", level);
            prop_assert_eq!(messages_of(level, &whole), expect.clone(), "level {:?}", level);
        }
        // Byte by byte, too.
        let every: Vec<usize> = (1..wire.len()).collect();
        prop_assert_eq!(decode(receiver, RecvLevel::Message, &wire, &every, false),
                        decode(receiver, RecvLevel::Message, &wire, &[], false));
    }
}

/// Every send style, every size around 125 / 126 / 65535 / 65536, both roles.
#[test]
fn round_trip_every_send_style_around_length_edges() {
    let sizes = [
        0usize, 1, 124, 125, 126, 127, 65534, 65535, 65536, 65537, 200_000,
    ];
    for &size in &sizes {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        for client_sends in [true, false] {
            let (sender, receiver) = if client_sends {
                (Role::Client, Role::Server)
            } else {
                (Role::Server, Role::Client)
            };
            let ops = vec![
                Op::Whole(false, payload.clone()),
                Op::Whole(true, text.clone().into_bytes()),
                Op::Frames(false, vec![payload.clone(), payload[..size / 3].to_vec()]),
                Op::Streamed(true, vec![text.clone().into_bytes(), b"tail".to_vec()]),
            ];
            for fragment_size in [None, Some(125), Some(65536)] {
                let (wire, expect) = encode(sender, &ops, fragment_size);
                for level in [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk] {
                    let events = decode(
                        receiver,
                        level,
                        &wire,
                        &[wire.len() / 3, wire.len() / 2],
                        false,
                    );
                    assert_eq!(messages_of(level, &events), expect, "size {size} {level:?}");
                }
            }
        }
    }
}

/// The header of each frame uses the minimal length encoding for every edge size.
#[test]
fn minimal_length_encoding_on_send() {
    for (size, header_len) in [(125usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
        let mut c = Connection::new(Role::Server, Config::default());
        c.send_binary(vec![0u8; size]).unwrap();
        let wire = take_out(&mut c);
        assert_eq!(wire.len(), size + header_len, "size {size}");
        let frames = parse_frames(&wire);
        assert_eq!(frames[0].0.payload_len as usize, size);
    }
}
