//! Fuzz target for the server side of the opening handshake: `handshake::parse_request`.
//!
//! Input layout: 2 setup bytes, then the bytes a client sends.
//!
//! - byte 0: bits 0-2 `max_head_size` (8192, 0, 1, 32, 128, 512, 4096, unlimited); bits 3-5
//!   `max_headers` (64, 0, 1, 4, 8, 100, 10000, unlimited); bits 6-7 the largest piece size;
//! - byte 1: seed of the split pattern.
//!
//! Checked: no panic; a request it returns has `consumed <= len` and within the head limit,
//! a path resource, a valid key, no more header lines than the limit; every error is a 4xx
//! with a writable rejection; fed as growing prefixes (as a server reads a socket), the
//! answers are consistent and end where the one-shot parse does; and an accepted request can
//! be answered (with its first subprotocol and all its extensions) by a 101 that a client
//! offering the same accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::{check_incremental, Rng, Step};
use weft_proto::handshake::{
    is_valid_key, parse_request, parse_response, rejection_bytes, write_response, ClientRequest,
    Request, ServerLimits,
};

const HEAD_SIZES: [usize; 8] = [8192, 0, 1, 32, 128, 512, 4096, usize::MAX];
const HEADER_COUNTS: [usize; 8] = [64, 0, 1, 4, 8, 100, 10000, usize::MAX];
const PIECES: [usize; 4] = [1, 5, 40, 500];

/// Checks a request that `parse_request` accepted, `consumed` bytes long.
fn check_request(data: &[u8], limits: &ServerLimits, req: &Request, consumed: usize) {
    assert!(
        consumed <= data.len(),
        "consumed {consumed} of {} bytes",
        data.len()
    );
    assert!(
        consumed <= limits.max_head_size,
        "a head over max_head_size accepted"
    );
    assert!(
        data[..consumed].ends_with(b"\n"),
        "the head does not end with its blank line"
    );
    assert!(
        req.resource().starts_with('/'),
        "resource {:?}",
        req.resource()
    );
    assert!(is_valid_key(req.key().as_bytes()), "key {:?}", req.key());
    assert!(
        req.headers().len() <= limits.max_headers,
        "more header lines than allowed"
    );
    assert!(req.host().is_some(), "an accepted request without Host");

    // Answer it, taking the first subprotocol and every extension offered.
    let protocols = req.protocols();
    let chosen = protocols.first().copied();
    let mut answer = req.accept().extensions(req.extensions());
    if let Some(p) = chosen {
        answer = answer.protocol(p);
    }
    let response = match answer.build() {
        Ok(r) => r,
        Err(e) => panic!("cannot answer an accepted request with what it offered: {e:?}"),
    };
    let mut wire = Vec::new();
    write_response(&response, &mut wire);

    // A client that offered the same must accept the answer.
    let mut client = ClientRequest::builder("ws://example.com/").key(req.key());
    if !protocols.is_empty() {
        client = client.protocols(protocols.iter().copied());
    }
    if !req.extensions().is_empty() {
        client = client.extensions(req.extensions());
    }
    let Ok(client) = client.build() else {
        // The client builder is stricter about what it offers than the server about what
        // it accepts; nothing to compare then.
        return;
    };
    match parse_response(&wire, &client, usize::MAX) {
        Ok(Some((resp, n))) => {
            assert_eq!(n, wire.len());
            assert_eq!(resp.protocol(), chosen);
            assert_eq!(
                resp.extensions(),
                req.extensions(),
                "extensions changed on the way"
            );
        }
        other => panic!(
            "the client refuses the server's answer: {other:?}\n{}",
            String::from_utf8_lossy(&wire)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let [b0, seed, ref rest @ ..] = *data else {
        return;
    };
    let limits = ServerLimits {
        max_head_size: HEAD_SIZES[(b0 & 7) as usize],
        max_headers: HEADER_COUNTS[((b0 >> 3) & 7) as usize],
    };
    let max_piece = PIECES[(b0 >> 6) as usize];
    let data = rest;

    let parse = |buf: &[u8]| {
        let r = parse_request(buf, &limits);
        if let Err(e) = &r {
            assert!(e.status().is_client_error(), "{e:?} answers {}", e.status());
            let answer = rejection_bytes(e);
            assert!(answer.starts_with(b"HTTP/1.1 4"), "rejection {answer:?}");
            assert!(answer.windows(4).any(|w| w == b"\r\n\r\n"));
        }
        Step::of(&r, |req, consumed| {
            check_request(buf, &limits, req, consumed)
        })
    };
    let whole = parse(data);
    check_incremental(data, &whole, &mut Rng::new(seed as u32), max_piece, parse);
});
