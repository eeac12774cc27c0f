//! The extension mechanism with a toy extension (XOR with a constant under RSV2, optionally
//! repeating each decoded byte): RSV bits are accepted only with the extension installed;
//! it sees each frame at every receive level and each send style; its output bound ends in
//! 1009; its errors close with its code; messages without its bit never reach it.

mod common;
use common::*;
use std::sync::{Arc, Mutex};
use weft_proto::extension::{Boundary, Extension, ExtensionError, Progress};
use weft_proto::frame::OpCode;
use weft_proto::{
    CloseCode, Config, Connection, Error, Event, Message, MessageAssembler, MessageKind, RecvLevel,
    Role,
};

const RSV2: u8 = 0b010;
const KEY: u8 = 0x5a;

/// What the engine asked of the toy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    StartDecode(MessageKind, u8),
    Decode {
        len: usize,
        end: Boundary,
        max: usize,
    },
    StartEncode(MessageKind, Option<u64>),
    Encode {
        len: usize,
        end: Boundary,
    },
}

type Log = Arc<Mutex<Vec<Call>>>;

/// XOR with `key`; each decoded byte is repeated `repeat` times (a "bomb" when large).
struct Toy {
    rsv: u8,
    key: u8,
    repeat: usize,
    /// Encode messages of at least this many bytes (whole messages only).
    encode_from: u64,
    /// A received (decoded) byte that is an error.
    fail_on: Option<(u8, ExtensionError)>,
    /// Refuse messages whose first frame has these RSV bits.
    refuse_rsv: Option<(u8, ExtensionError)>,
    /// Never make progress.
    stall: bool,
    log: Log,
    /// The decoded byte being repeated, and how many copies are still owed.
    current: u8,
    owed: usize,
}

impl Toy {
    fn new() -> (Self, Log) {
        let log = Log::default();
        let toy = Toy {
            rsv: RSV2,
            key: KEY,
            repeat: 1,
            encode_from: 0,
            fail_on: None,
            refuse_rsv: None,
            stall: false,
            log: log.clone(),
            current: 0,
            owed: 0,
        };
        (toy, log)
    }

    fn boxed(self) -> Box<dyn Extension> {
        Box::new(self)
    }
}

impl Extension for Toy {
    fn rsv(&self) -> u8 {
        self.rsv
    }

    fn start_decode(&mut self, kind: MessageKind, rsv: u8) -> Result<(), ExtensionError> {
        self.log.lock().unwrap().push(Call::StartDecode(kind, rsv));
        match self.refuse_rsv {
            Some((bits, e)) if rsv & bits != 0 => Err(e),
            _ => Ok(()),
        }
    }

    fn decode(
        &mut self,
        input: &[u8],
        end: Boundary,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Progress, ExtensionError> {
        self.log.lock().unwrap().push(Call::Decode {
            len: input.len(),
            end,
            max,
        });
        if self.stall {
            return Ok(Progress {
                consumed: 0,
                done: false,
            });
        }
        let mut used = 0;
        let mut room = max;
        loop {
            while self.owed > 0 && room > 0 {
                out.push(self.current);
                self.owed -= 1;
                room -= 1;
            }
            if self.owed > 0 {
                return Ok(Progress {
                    consumed: used,
                    done: false,
                });
            }
            let Some(&b) = input.get(used) else { break };
            used += 1;
            let decoded = b ^ self.key;
            if let Some((bad, e)) = self.fail_on {
                if decoded == bad {
                    return Err(e);
                }
            }
            self.current = decoded;
            self.owed = self.repeat;
        }
        Ok(Progress {
            consumed: used,
            done: true,
        })
    }

    fn start_encode(&mut self, kind: MessageKind, len: Option<u64>) -> u8 {
        self.log.lock().unwrap().push(Call::StartEncode(kind, len));
        if len.is_some_and(|n| n < self.encode_from) {
            0
        } else {
            // Bits outside rsv() are ignored by the engine.
            self.rsv | 0b001
        }
    }

    fn encode(&mut self, input: &[u8], end: Boundary, out: &mut Vec<u8>) {
        self.log.lock().unwrap().push(Call::Encode {
            len: input.len(),
            end,
        });
        out.extend(input.iter().map(|b| b ^ self.key));
    }
}

fn xor(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b ^ KEY).collect()
}

fn config(level: RecvLevel) -> Config {
    let mut c = Config::default();
    c.recv_level = level;
    c
}

fn server_with(toy: Toy, level: RecvLevel) -> Connection {
    Connection::with_extension(Role::Server, config(level), toy.boxed())
}

fn decode_calls(log: &Log) -> Vec<Call> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|c| matches!(c, Call::Decode { .. } | Call::StartDecode(..)))
        .cloned()
        .collect()
}

fn messages(events: &[Event], level: RecvLevel) -> Vec<Message> {
    let mut asm = MessageAssembler::new(None);
    events
        .iter()
        .filter_map(|e| match (level, e) {
            (RecvLevel::Message, Event::Message(m)) => Some(m.clone()),
            (RecvLevel::Message, _) => None,
            _ => asm.push(e).unwrap(),
        })
        .collect()
}

const LEVELS: [RecvLevel; 3] = [RecvLevel::Message, RecvLevel::Frame, RecvLevel::Chunk];

#[test]
fn rsv_bits_are_accepted_only_with_the_extension_installed() {
    let frame = raw_frame(true, RSV2, BIN, &xor(b"secret"), true);
    // No extension: RSV2 is a protocol error.
    let mut s = Connection::new(Role::Server, Config::default());
    s.receive(&frame);
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    assert_eq!(close_code_in(&take_out(&mut s)), Some(1002));
    // Installed: decoded.
    let (toy, _) = Toy::new();
    let mut s = server_with(toy, RecvLevel::Message);
    s.receive(&frame);
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![Event::Message(Message::from(b"secret".to_vec()))]
    );
    // Installed with set_extension, then removed: refused again.
    let (toy, _) = Toy::new();
    let mut s = Connection::new(Role::Server, Config::default());
    s.set_extension(Some(toy.boxed())).unwrap();
    assert_eq!(s.extension().map(|e| e.rsv()), Some(RSV2));
    s.receive(&frame);
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    s.set_extension(None).unwrap();
    assert!(s.extension().is_none());
    s.receive(&frame);
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    // Bits that are not the extension's, and its bit where no message starts: 1002.
    let mut cont = raw_frame(false, 0, BIN, b"a", true);
    cont.extend(raw_frame(true, RSV2, CONT, b"b", true));
    for bad in [
        raw_frame(true, 0b001, BIN, b"x", true),
        raw_frame(true, 0b100, TEXT, b"x", true),
        raw_frame(true, RSV2 | 0b001, BIN, b"x", true),
        raw_frame(true, RSV2, PING, b"", true),
        cont,
    ] {
        let (toy, log) = Toy::new();
        let mut s = server_with(toy, RecvLevel::Message);
        s.receive(&bad);
        assert_eq!(
            drain(&mut s).unwrap_err().close_code(),
            Some(CloseCode::PROTOCOL_ERROR),
            "{bad:?}"
        );
        assert!(
            decode_calls(&log)
                .iter()
                .all(|c| !matches!(c, Call::Decode { .. })),
            "{bad:?}"
        );
    }
}

/// A three-frame message (RSV2 on the first) and a one-frame text message, on the wire.
fn fragmented_wire() -> (Vec<u8>, Vec<Vec<u8>>) {
    let parts: Vec<Vec<u8>> = vec![
        b"first part, ".to_vec(),
        b"second, ".to_vec(),
        b"end".to_vec(),
    ];
    let mut wire = raw_frame(false, RSV2, BIN, &xor(&parts[0]), true);
    wire.extend(raw_frame(false, 0, CONT, &xor(&parts[1]), true));
    wire.extend(raw_frame(true, 0, CONT, &xor(&parts[2]), true));
    wire.extend(raw_frame(
        true,
        RSV2,
        TEXT,
        &xor("héllo ✓".as_bytes()),
        true,
    ));
    (wire, parts)
}

#[test]
fn the_extension_sees_each_frame_at_the_message_and_frame_levels() {
    let (wire, parts) = fragmented_wire();
    let whole: Vec<u8> = parts.concat();
    for level in [RecvLevel::Message, RecvLevel::Frame] {
        let (toy, log) = Toy::new();
        let mut s = server_with(toy, level);
        s.receive(&wire);
        let events = drain(&mut s).unwrap();
        assert_eq!(
            messages(&events, level),
            vec![Message::from(whole.clone()), Message::from("héllo ✓")],
            "{level:?}"
        );
        if level == RecvLevel::Frame {
            let frames: Vec<&Event> = events
                .iter()
                .filter(|e| matches!(e, Event::Frame(_)))
                .collect();
            assert_eq!(frames[0], &Event::Frame(parts[0].clone().into()));
            assert_eq!(frames[2], &Event::Frame(parts[2].clone().into()));
            assert_eq!(
                events[0],
                Event::MessageStart {
                    kind: MessageKind::Binary,
                    rsv: RSV2
                }
            );
        }
        // Each frame is decoded whole, as it completes, with where it ends.
        let calls: Vec<(usize, Boundary)> = decode_calls(&log)
            .iter()
            .filter_map(|c| match c {
                Call::Decode { len, end, .. } => Some((*len, *end)),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                (parts[0].len(), Boundary::Frame),
                (parts[1].len(), Boundary::Frame),
                (parts[2].len(), Boundary::Message),
                ("héllo ✓".len(), Boundary::Message),
            ],
            "{level:?}"
        );
        let starts: Vec<Call> = decode_calls(&log)
            .into_iter()
            .filter(|c| matches!(c, Call::StartDecode(..)))
            .collect();
        assert_eq!(
            starts,
            vec![
                Call::StartDecode(MessageKind::Binary, RSV2),
                Call::StartDecode(MessageKind::Text, RSV2)
            ]
        );
    }
}

#[test]
fn the_extension_sees_the_bytes_as_they_arrive_at_the_chunk_level() {
    let (wire, parts) = fragmented_wire();
    let (toy, log) = Toy::new();
    let mut s = server_with(toy, RecvLevel::Chunk);
    let mut events = Vec::new();
    // One byte at a time: each payload byte is decoded when it arrives.
    for b in &wire {
        s.receive(std::slice::from_ref(b));
        events.extend(drain(&mut s).unwrap());
    }
    assert_eq!(
        messages(&events, RecvLevel::Chunk),
        vec![Message::from(parts.concat()), Message::from("héllo ✓")]
    );
    let data: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::FrameData(_)))
        .collect();
    assert_eq!(
        data.len(),
        parts.concat().len() + "héllo ✓".len(),
        "one FrameData per byte"
    );
    let calls: Vec<(usize, Boundary)> = decode_calls(&log)
        .iter()
        .filter_map(|c| match c {
            Call::Decode { len, end, max } => {
                assert_eq!(*max, 64 * 1024);
                Some((*len, *end))
            }
            _ => None,
        })
        .collect();
    assert!(calls.iter().all(|(len, _)| *len <= 1));
    let nones = calls.iter().filter(|c| c.1 == Boundary::None).count();
    let frames = calls.iter().filter(|c| c.1 == Boundary::Frame).count();
    let ends = calls.iter().filter(|c| c.1 == Boundary::Message).count();
    assert!(nones >= parts.concat().len() - 3, "{calls:?}");
    assert_eq!((frames, ends), (2, 2), "{calls:?}");
    // Each frame's events are in order: FrameStart, FrameData..., FrameEnd.
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::MessageStart { .. } => "MS",
            Event::FrameStart(_) => "FS",
            Event::FrameData(_) => "D",
            Event::FrameEnd => "FE",
            Event::MessageEnd => "ME",
            _ => "?",
        })
        .filter(|k| *k != "D")
        .collect();
    assert_eq!(
        kinds,
        ["MS", "FS", "FE", "FS", "FE", "FS", "FE", "ME", "MS", "FS", "FE", "ME"]
    );
}

#[test]
fn the_extension_encodes_each_send_style() {
    let (toy, log) = Toy::new();
    let mut c = Connection::with_extension(Role::Client, Config::default(), toy.boxed());
    let (server_toy, _) = Toy::new();
    let mut s = server_with(server_toy, RecvLevel::Message);
    let take_log = |log: &Log| std::mem::take(&mut *log.lock().unwrap());

    // send: the whole message at once.
    c.send(Message::from("whole message")).unwrap();
    assert_eq!(
        take_log(&log),
        vec![
            Call::StartEncode(MessageKind::Text, Some(13)),
            Call::Encode {
                len: 13,
                end: Boundary::Message
            }
        ]
    );
    let wire = take_out(&mut c);
    let frames = parse_frames(&wire);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0.rsv, RSV2, "bits outside rsv() are ignored");
    assert_eq!(frames[0].1, xor(b"whole message"));
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![Event::Message(Message::from("whole message"))]
    );

    // send with fragment_size: encoded whole, then cut; RSV2 on the first frame only.
    let mut cfg = Config::default();
    cfg.fragment_size = Some(4);
    let (toy, flog) = Toy::new();
    let mut fc = Connection::with_extension(Role::Client, cfg, toy.boxed());
    fc.send(Message::from(b"0123456789".to_vec())).unwrap();
    assert_eq!(
        take_log(&flog)[1],
        Call::Encode {
            len: 10,
            end: Boundary::Message
        }
    );
    let wire = take_out(&mut fc);
    let frames = parse_frames(&wire);
    assert_eq!(frames.len(), 3);
    assert_eq!(
        frames.iter().map(|f| f.0.rsv).collect::<Vec<_>>(),
        [RSV2, 0, 0]
    );
    assert_eq!(frames[1].0.opcode, OpCode::Continuation);
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.1.clone()).collect();
    assert_eq!(joined, xor(b"0123456789"));
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![Event::Message(Message::from(b"0123456789".to_vec()))]
    );

    // begin_message / send_frame / end_message: each frame encoded as it is sent.
    c.begin_message(MessageKind::Binary).unwrap();
    c.send_frame(&b"abc"[..], false).unwrap();
    c.send_frame(&b"defg"[..], false).unwrap();
    c.end_message().unwrap();
    assert_eq!(
        take_log(&log),
        vec![
            Call::StartEncode(MessageKind::Binary, None),
            Call::Encode {
                len: 3,
                end: Boundary::Frame
            },
            Call::Encode {
                len: 4,
                end: Boundary::Frame
            },
            Call::Encode {
                len: 0,
                end: Boundary::Message
            },
        ]
    );
    let wire = take_out(&mut c);
    let frames = parse_frames(&wire);
    assert_eq!(
        frames.iter().map(|f| f.0.rsv).collect::<Vec<_>>(),
        [RSV2, 0, 0]
    );
    assert_eq!(frames[1].1, xor(b"defg"));
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![Event::Message(Message::from(b"abcdefg".to_vec()))]
    );

    // A frame of declared length first: the message goes as it is, the extension unasked.
    c.begin_message(MessageKind::Binary).unwrap();
    c.begin_frame(3, true).unwrap();
    c.send_frame_data(&b"xyz"[..]).unwrap();
    assert!(take_log(&log).is_empty());
    let frames = parse_frames(&take_out(&mut c));
    assert_eq!((frames[0].0.rsv, &frames[0].1[..]), (0, &b"xyz"[..]));
    // ...and after an encoded frame, a frame of declared length is refused.
    c.begin_message(MessageKind::Binary).unwrap();
    c.send_frame(&b"a"[..], false).unwrap();
    assert!(matches!(
        c.begin_frame(3, true),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn start_encode_returning_zero_sends_the_message_as_it_is() {
    let (mut toy, log) = Toy::new();
    toy.encode_from = 10;
    let mut c = Connection::with_extension(Role::Server, Config::default(), toy.boxed());
    c.send(Message::from("short")).unwrap();
    c.send(Message::from("long enough")).unwrap();
    let frames = parse_frames(&take_out(&mut c));
    assert_eq!((frames[0].0.rsv, &frames[0].1[..]), (0, &b"short"[..]));
    assert_eq!(frames[1].0.rsv, RSV2);
    assert_eq!(frames[1].1, xor(b"long enough"));
    let encodes = log
        .lock()
        .unwrap()
        .iter()
        .filter(|c| matches!(c, Call::Encode { .. }))
        .count();
    assert_eq!(encodes, 1);
}

#[test]
fn the_output_bound_ends_in_1009_where_the_engine_buffers() {
    // 2 000 bytes that decode to 2 000 000.
    let frame = raw_frame(true, RSV2, BIN, &xor(&[7u8; 2000]), true);
    for (level, limit, ok) in [
        (RecvLevel::Message, 100_000, false),
        (RecvLevel::Frame, 100_000, false),
        (RecvLevel::Message, 1_999_999, false),
        (RecvLevel::Message, 2_000_000, true),
        (RecvLevel::Frame, 2_000_000, true),
    ] {
        let (mut toy, log) = Toy::new();
        toy.repeat = 1000;
        let mut cfg = config(level);
        cfg.max_message_size = Some(limit);
        cfg.max_frame_size = Some(limit);
        let mut s = Connection::with_extension(Role::Server, cfg, toy.boxed());
        s.receive(&frame);
        let result = drain(&mut s);
        // The extension was never allowed more than one byte past the limit.
        let most = decode_calls(&log)
            .iter()
            .filter_map(|c| match c {
                Call::Decode { max, .. } => Some(*max),
                _ => None,
            })
            .max()
            .unwrap();
        assert_eq!(most, limit as usize + 1, "{level:?} {limit}");
        if ok {
            let events = result.unwrap();
            let got = messages(&events, level);
            assert_eq!(got, vec![Message::from(vec![7u8; 2_000_000])]);
        } else {
            let err = result.unwrap_err();
            assert_eq!(
                err.close_code(),
                Some(CloseCode::MESSAGE_TOO_BIG),
                "{level:?} {limit}"
            );
            assert_eq!(close_code_in(&take_out(&mut s)), Some(1009));
        }
    }
    // A fragmented message is bounded as a whole at the message level.
    let mut wire = raw_frame(false, RSV2, BIN, &xor(&[1u8; 60]), true);
    wire.extend(raw_frame(true, 0, CONT, &xor(&[2u8; 60]), true));
    let (mut toy, _) = Toy::new();
    toy.repeat = 1000;
    let mut cfg = config(RecvLevel::Message);
    cfg.max_message_size = Some(100_000);
    let mut s = Connection::with_extension(Role::Server, cfg, toy.boxed());
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
    // The chunk level hands the output out in bounded pieces instead (no limit applies).
    let (mut toy, _) = Toy::new();
    toy.repeat = 1000;
    let mut cfg = config(RecvLevel::Chunk);
    cfg.max_message_size = Some(100_000);
    let mut s = Connection::with_extension(Role::Server, cfg, toy.boxed());
    s.receive(&frame);
    let mut total = 0;
    let mut pieces = 0;
    while let Some(e) = s.poll_event().unwrap() {
        if let Event::FrameData(d) = e {
            assert!(d.len() <= 64 * 1024);
            total += d.len();
            pieces += 1;
        }
    }
    assert_eq!(total, 2_000_000);
    assert!(pieces >= 2_000_000 / (64 * 1024));
}

#[test]
fn an_extension_error_closes_with_the_extension_code() {
    let wire = raw_frame(true, RSV2, BIN, &xor(b"ok, then \xee"), true);
    for level in LEVELS {
        let (mut toy, _) = Toy::new();
        toy.fail_on = Some((0xee, ExtensionError::new(CloseCode(4001), "toy refuses")));
        let mut s = server_with(toy, level);
        s.receive(&wire);
        let err = drain(&mut s).unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode(4001)), "{level:?}");
        let frames = parse_frames(&take_out(&mut s));
        let close = &frames.last().unwrap().1;
        assert_eq!(&close[..2], &4001u16.to_be_bytes());
        assert_eq!(&close[2..], b"toy refuses");
    }
    // The same bytes without RSV2 are not the extension's: no error.
    let (mut toy, _) = Toy::new();
    toy.fail_on = Some((0xee, ExtensionError::invalid_data("x")));
    let mut s = server_with(toy, RecvLevel::Message);
    s.receive(&raw_frame(true, 0, BIN, &xor(b"ok, then \xee"), true));
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    // A code that may not be sent becomes 1002; a long reason is cut to fit.
    let long: &'static str = Box::leak("é".repeat(100).into_boxed_str());
    let (mut toy, _) = Toy::new();
    toy.fail_on = Some((0xee, ExtensionError::new(CloseCode::ABNORMAL, long)));
    let mut s = server_with(toy, RecvLevel::Message);
    s.receive(&wire);
    assert_eq!(
        drain(&mut s).unwrap_err().close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    let frames = parse_frames(&take_out(&mut s));
    let close = &frames.last().unwrap().1;
    assert_eq!(&close[..2], &1002u16.to_be_bytes());
    assert!(close.len() <= 125);
    assert!(std::str::from_utf8(&close[2..]).is_ok());
    // start_decode may refuse a message too.
    let (mut toy, _) = Toy::new();
    toy.rsv = RSV2 | 0b001;
    toy.refuse_rsv = Some((0b001, ExtensionError::new(CloseCode(4002), "no RSV3")));
    let mut s = server_with(toy, RecvLevel::Frame);
    s.receive(&raw_frame(true, RSV2, BIN, &xor(b"fine"), true));
    s.receive(&raw_frame(true, 0b001, BIN, b"not fine", true));
    let mut events = Vec::new();
    let err = loop {
        match s.poll_event() {
            Ok(Some(e)) => events.push(e),
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        messages(&events, RecvLevel::Frame),
        vec![Message::from(b"fine".to_vec())]
    );
    assert_eq!(err.close_code(), Some(CloseCode(4002)));
}

#[test]
fn an_extension_that_makes_no_progress_fails_with_1011() {
    for level in LEVELS {
        let (mut toy, _) = Toy::new();
        toy.stall = true;
        let mut s = server_with(toy, level);
        s.receive(&raw_frame(true, RSV2, BIN, b"abc", true));
        assert_eq!(
            drain(&mut s).unwrap_err().close_code(),
            Some(CloseCode::INTERNAL_ERROR),
            "{level:?}"
        );
    }
}

#[test]
fn messages_without_the_rsv_bit_bypass_the_extension() {
    let mut wire = raw_frame(false, 0, BIN, b"plain ", true);
    wire.extend(raw_frame(true, 0, CONT, b"binary", true));
    wire.extend(raw_frame(true, 0, TEXT, "plain text ✓".as_bytes(), true));
    for level in LEVELS {
        let (toy, log) = Toy::new();
        let mut s = server_with(toy, level);
        s.receive(&wire);
        let events = drain(&mut s).unwrap();
        assert_eq!(
            messages(&events, level),
            vec![
                Message::from(b"plain binary".to_vec()),
                Message::from("plain text ✓")
            ],
            "{level:?}"
        );
        assert!(decode_calls(&log).is_empty(), "{level:?}");
        // Its text is still validated as it arrives.
        let (toy, _) = Toy::new();
        let mut s = server_with(toy, level);
        s.receive(&raw_frame(true, 0, TEXT, b"bad \xff", true));
        assert_eq!(
            drain(&mut s).unwrap_err().close_code(),
            Some(CloseCode::INVALID_PAYLOAD)
        );
    }
}

#[test]
fn text_is_validated_after_decoding() {
    // With key 0x80, ASCII is invalid UTF-8 on the wire and valid once decoded...
    let text = "plain ascii";
    let wire_bytes: Vec<u8> = text.bytes().map(|b| b ^ 0x80).collect();
    assert!(std::str::from_utf8(&wire_bytes).is_err());
    // ...and ASCII on the wire decodes to invalid UTF-8.
    for level in LEVELS {
        let (mut toy, _) = Toy::new();
        toy.key = 0x80;
        let mut s = server_with(toy, level);
        s.receive(&raw_frame(true, RSV2, TEXT, &wire_bytes, true));
        assert_eq!(
            messages(&drain(&mut s).unwrap(), level),
            vec![Message::from(text)],
            "{level:?}"
        );
        let (mut toy, _) = Toy::new();
        toy.key = 0x80;
        let mut s = server_with(toy, level);
        s.receive(&raw_frame(true, RSV2, TEXT, b"ascii", true));
        assert_eq!(
            drain(&mut s).unwrap_err().close_code(),
            Some(CloseCode::INVALID_PAYLOAD),
            "{level:?}"
        );
    }
}

#[test]
fn the_application_keeps_its_own_rsv_bits_beside_the_extension() {
    let mut cfg = config(RecvLevel::Frame);
    cfg.extension_rsv = 0b001;
    let (toy, log) = Toy::new();
    let mut s = Connection::with_extension(Role::Server, cfg, toy.boxed());
    s.receive(&raw_frame(true, 0b001, BIN, b"as is", true));
    s.receive(&raw_frame(true, RSV2, BIN, &xor(b"decoded"), true));
    let events = drain(&mut s).unwrap();
    assert_eq!(
        events,
        vec![
            Event::MessageStart {
                kind: MessageKind::Binary,
                rsv: 0b001
            },
            Event::Frame("as is".into()),
            Event::MessageEnd,
            Event::MessageStart {
                kind: MessageKind::Binary,
                rsv: RSV2
            },
            Event::Frame("decoded".into()),
            Event::MessageEnd,
        ]
    );
    assert_eq!(
        decode_calls(&log),
        vec![
            Call::StartDecode(MessageKind::Binary, RSV2),
            Call::Decode {
                len: 7,
                end: Boundary::Message,
                max: (16 << 20) + 1
            }
        ]
    );
}

#[test]
fn the_extension_changes_only_between_messages() {
    let (toy, _) = Toy::new();
    let mut s = server_with(toy, RecvLevel::Frame);
    s.receive(&raw_frame(false, RSV2, BIN, b"a", true));
    drain(&mut s).unwrap();
    assert!(matches!(
        s.set_extension(None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(s.extension().is_some());
    let (toy, _) = Toy::new();
    let mut c = Connection::with_extension(Role::Client, Config::default(), toy.boxed());
    c.begin_message(MessageKind::Text).unwrap();
    assert!(matches!(
        c.set_extension(None),
        Err(Error::InvalidArgument(_))
    ));
    c.end_message().unwrap();
    c.set_extension(None).unwrap();
    c.send(Message::from("now plain")).unwrap();
    let frames = parse_frames(&take_out(&mut c));
    assert_eq!(frames.last().unwrap().0.rsv, 0);
    assert_eq!(frames.last().unwrap().1, b"now plain");
}

#[test]
fn any_split_gives_the_same_messages_through_the_extension() {
    let (toy, _) = Toy::new();
    let mut c = Connection::with_extension(Role::Client, Config::default(), toy.boxed());
    let msgs = vec![
        Message::from("héllo wörld ✓ ".repeat(50)),
        Message::from(vec![3u8; 5000]),
        Message::from(""),
    ];
    for m in &msgs {
        c.send(m.clone()).unwrap();
    }
    c.begin_message(MessageKind::Text).unwrap();
    c.send_frame("split ✓".as_bytes()[..7].to_vec(), false)
        .unwrap();
    c.send_frame("split ✓".as_bytes()[7..].to_vec(), true)
        .unwrap();
    let wire = take_out(&mut c);
    let mut expect = msgs.clone();
    expect.push(Message::from("split ✓"));
    for level in LEVELS {
        for piece in [1usize, 3, 64, 1000] {
            let (toy, _) = Toy::new();
            let mut s = server_with(toy, level);
            let mut events = Vec::new();
            for chunk in wire.chunks(piece) {
                s.receive(chunk);
                events.extend(drain(&mut s).unwrap());
            }
            assert_eq!(messages(&events, level), expect, "{level:?} {piece}");
        }
    }
}
