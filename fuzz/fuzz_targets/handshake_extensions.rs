//! Fuzz target for the `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1):
//! `handshake::parse_extensions` on arbitrary bytes.
//!
//! Checked: no panic; an error points inside the input; what parses has token names and
//! token values (after unquoting), and writing it back with `to_header_value` gives a header
//! that parses to the same offers (so the handshake builders can always echo an offer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proto::handshake::{is_token, parse_extensions, to_header_value};

fuzz_target!(|data: &[u8]| {
    match parse_extensions(data) {
        Err(e) => {
            assert_eq!(e.line(), 0);
            assert!(e.position() <= data.len(), "{e:?} for {} bytes", data.len());
            assert!(!e.reason().is_empty());
        }
        Ok(offers) => {
            for o in &offers {
                assert!(is_token(&o.name), "extension name {:?}", o.name);
                for p in &o.params {
                    assert!(is_token(&p.name), "parameter name {:?}", p.name);
                    if let Some(v) = &p.value {
                        assert!(is_token(v), "parameter value {v:?}");
                    }
                }
            }
            let written = to_header_value(&offers);
            match parse_extensions(written.as_bytes()) {
                Ok(again) => assert_eq!(again, offers, "{written:?} reads back differently"),
                Err(e) => panic!("{written:?}, written from parsed offers, does not parse: {e}"),
            }
        }
    }
});
