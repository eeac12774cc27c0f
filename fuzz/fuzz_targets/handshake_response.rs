//! Fuzz target for the client side of the opening handshake: `handshake::parse_response`,
//! checking a server's answer to a fixed request (fixed key, so the right
//! `Sec-WebSocket-Accept` is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`).
//!
//! Input layout: 2 setup bytes, then the bytes a server sends.
//!
//! - byte 0: bits 0-2 `max_head` (8192, 0, 1, 32, 128, 512, 4096, unlimited); bit 3 whether
//!   the request offers subprotocols (`chat`, `superchat`); bit 4 whether it offers
//!   extensions (`permessage-deflate`, `x-foo`); bits 6-7 the largest piece size;
//! - byte 1: seed of the split pattern.
//!
//! Checked: no panic; a response it accepts has `consumed <= len` and within `max_head`,
//! status 101, the right accept key, and only a subprotocol and extensions that were
//! offered; every error is a 502, and a non-101 keeps a head length within the input; fed as
//! growing prefixes, the answers are consistent and end where the one-shot parse does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::{check_incremental, Rng, Step};
use weft_proto::handshake::{
    accept_key, parse_response, ClientRequest, ExtensionOffer, HandshakeError, Response,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const HEAD_SIZES: [usize; 8] = [8192, 0, 1, 32, 128, 512, 4096, usize::MAX];
const PIECES: [usize; 4] = [1, 5, 40, 500];

fn request(protocols: bool, extensions: bool) -> ClientRequest {
    let mut b = ClientRequest::builder("ws://example.com:8080/chat?room=1").key(KEY);
    if protocols {
        b = b.protocols(["chat", "superchat"]);
    }
    if extensions {
        b = b.extensions(&[
            ExtensionOffer::new("permessage-deflate").with_param("client_max_window_bits", None),
            ExtensionOffer::new("x-foo").with_param("a", Some("15")),
        ]);
    }
    b.build().expect("the fixed request builds")
}

fn check_response(data: &[u8], req: &ClientRequest, max_head: usize, r: &Response, n: usize) {
    assert!(n <= data.len(), "consumed {n} of {} bytes", data.len());
    assert!(n <= max_head, "a head over max_head accepted");
    assert!(
        data[..n].ends_with(b"\n"),
        "the head does not end with its blank line"
    );
    assert_eq!(r.status().as_u16(), 101);
    let accept = r
        .headers()
        .get("sec-websocket-accept")
        .expect("accepted without Sec-WebSocket-Accept");
    assert_eq!(
        accept.as_bytes().trim_ascii(),
        accept_key(KEY.as_bytes()).as_bytes()
    );
    if let Some(p) = r.protocol() {
        assert!(
            req.protocols().iter().any(|o| o == p),
            "protocol {p:?} not offered"
        );
    }
    for e in r.extensions() {
        assert!(
            req.extensions()
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&e.name)),
            "extension {:?} not offered",
            e.name
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [b0, seed, ref rest @ ..] = *data else {
        return;
    };
    let max_head = HEAD_SIZES[(b0 & 7) as usize];
    let req = request(b0 & 8 != 0, b0 & 16 != 0);
    let max_piece = PIECES[(b0 >> 6) as usize];
    let data = rest;

    let parse = |buf: &[u8]| {
        let r = parse_response(buf, &req, max_head);
        if let Err(e) = &r {
            assert_eq!(e.status().as_u16(), 502, "{e:?}");
            if let HandshakeError::UnexpectedStatus { response, head_len } = e {
                assert_ne!(response.status().as_u16(), 101);
                assert!(*head_len <= buf.len() && *head_len <= max_head);
            }
        }
        Step::of(&r, |resp, n| check_response(buf, &req, max_head, resp, n))
    };
    let whole = parse(data);
    check_incremental(data, &whole, &mut Rng::new(seed as u32), max_piece, parse);
});
