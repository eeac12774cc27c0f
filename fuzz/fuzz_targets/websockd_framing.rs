//! websockd's framing of a program's output, in each mode: whatever the program writes, and
//! however the pipe splits it, decoding never panics, gives the same messages (and the same
//! error) as decoding it all at once, keeps every message within the limit (a text piece of
//! valid UTF-8: the limit, or one character wider than it), and in framed mode re-encodes
//! to exactly the bytes it consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_fuzz::proto::Message;
use weft_fuzz::websockd_framing::{decode_from_program, encode_for_program, FramingError, Mode};
use weft_fuzz::Rng;

type Decoded = (Vec<Message>, Option<FramingError>, usize);

/// Decodes `input` fed in chunks (one chunk if `rng` is `None`), then the end of output.
fn decode(mode: Mode, input: &[u8], limit: usize, mut rng: Option<&mut Rng>) -> Decoded {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let n = match rng.as_mut() {
            Some(r) => r.size(64).min(input.len() - at),
            None => input.len() - at,
        };
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        if let Err(e) = decode_from_program(mode, &mut buf, false, limit, &mut out) {
            return (out, Some(e), buf.len());
        }
    }
    let err = decode_from_program(mode, &mut buf, true, limit, &mut out).err();
    (out, err, buf.len())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let mode = match data[0] % 3 {
        0 => Mode::Text,
        1 => Mode::Binary,
        _ => Mode::Framed,
    };
    let limit = [0, 1, 2, 3, 5, 64, 300][usize::from(data[1]) % 7];
    let input = &data[3..];
    let mut rng = Rng::new(u32::from(data[2]));
    let whole = decode(mode, input, limit, None);
    let split = decode(mode, input, limit, Some(&mut rng));
    for m in whole.0.iter().chain(&split.0) {
        // A text piece is at most the limit, or one character wider than it; bytes that are
        // not UTF-8 become U+FFFD (3 bytes each); framed and binary pieces exactly the limit.
        let bound = match mode {
            Mode::Text => 3 * limit.max(4),
            _ => limit,
        };
        assert!(
            limit == 0 || m.payload().len() <= bound,
            "a message over the limit"
        );
        if mode == Mode::Text {
            if let Ok(text) = std::str::from_utf8(m.payload()) {
                if !text.contains('\u{FFFD}') {
                    assert!(
                        limit == 0
                            || text.len()
                                <= limit.max(text.chars().next().map_or(0, char::len_utf8))
                    );
                }
            }
        }
    }
    match mode {
        // A read is a message: chunking moves the boundaries, never the bytes.
        Mode::Binary => {
            let join = |d: &Decoded| {
                d.0.iter()
                    .flat_map(|m| m.payload().to_vec())
                    .collect::<Vec<u8>>()
            };
            assert_eq!(join(&whole), input);
            assert_eq!(join(&split), input);
        }
        Mode::Text | Mode::Framed => {
            assert_eq!(
                whole.0, split.0,
                "messages depend on how the output was split"
            );
            assert_eq!(
                whole.1, split.1,
                "errors depend on how the output was split"
            );
        }
    }
    if mode == Mode::Framed {
        // The messages re-encode to the prefix of the input they came from.
        let mut again = BytesMut::new();
        for m in &whole.0 {
            encode_for_program(Mode::Framed, m, &mut again);
        }
        assert_eq!(&again[..], &input[..again.len()]);
        if whole.1.is_none() {
            assert_eq!(again.len(), input.len());
        }
    }
});
