//! Integration tests of the opening handshake (`weft_proto::handshake`),
//! through the public API only: every server-side rule with the status it
//! answers, incremental parsing, leftover bytes, both round trips between
//! client and server, every client-side refusal, the same checks on
//! requests an HTTP library parsed (`Request::from_http`), the HTTP/2
//! extended CONNECT of RFC 8441 on both sides, and property tests that no
//! input makes either parser panic.

use http::{Method, StatusCode, Version};
use proptest::prelude::*;
use weft_proto::handshake::{
    accept_key, check_extended_connect_response, header_contains_token, parse_extensions,
    parse_request, parse_response, rejection_bytes, rejection_for, to_header_value, write_response,
    ClientRequest, ExtensionOffer, ExtensionParam, HandshakeError, Request, ServerLimits,
    DEFAULT_MAX_HEAD_SIZE,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The header lines of a valid request, one per entry, without CRLF.
fn valid_lines() -> Vec<String> {
    vec![
        "GET /chat HTTP/1.1".into(),
        "Host: server.example.com".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Origin: http://example.com".into(),
        "Sec-WebSocket-Version: 13".into(),
    ]
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A valid request with the line starting with `prefix` replaced by
/// `replacement` (or removed when it is `None`).
fn request_replacing(prefix: &str, replacement: Option<&str>) -> Vec<u8> {
    let mut lines = valid_lines();
    let index = lines
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix}"));
    match replacement {
        Some(line) => lines[index] = line.to_owned(),
        None => {
            lines.remove(index);
        }
    }
    join(&lines)
}

fn request_adding(extra: &[&str]) -> Vec<u8> {
    let mut lines = valid_lines();
    lines.extend(extra.iter().map(|s| s.to_string()));
    join(&lines)
}

fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
    parse_request(buf, &ServerLimits::default())
}

fn parse_ok(buf: &[u8]) -> Request {
    match parse(buf) {
        Ok(Some((request, consumed))) => {
            assert_eq!(consumed, buf.len(), "the head is the whole buffer");
            request
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

fn refusal(buf: &[u8]) -> HandshakeError {
    match parse(buf) {
        Err(err) => err,
        Ok(other) => panic!(
            "expected a refusal of {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

// ----- Server: each rule and its status -----

#[test]
fn rfc_example_request_is_accepted() {
    let request = parse_ok(&join(&valid_lines()));
    assert_eq!(request.resource(), "/chat");
    assert_eq!(request.host(), Some("server.example.com"));
    assert_eq!(request.origin(), Some("http://example.com"));
    assert_eq!(request.key(), KEY);
    assert!(request.protocols().is_empty());
    assert!(request.extensions().is_empty());
}

#[test]
fn each_rule_answers_its_status() {
    use HandshakeError as E;
    let key_of = |bytes: &[u8]| {
        format!(
            "Sec-WebSocket-Key: {}",
            base64_encode(bytes) // 15 and 17 bytes are not keys
        )
    };
    let key15 = key_of(&[1; 15]);
    let key17 = key_of(&[1; 17]);
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<u8>, fn(&E) -> bool, u16)> = vec![
        (
            "POST",
            request_replacing("GET", Some("POST /chat HTTP/1.1")),
            |e| matches!(e, E::MethodNotAllowed { method } if method == "POST"),
            405,
        ),
        (
            "lower-case get",
            request_replacing("GET", Some("get /chat HTTP/1.1")),
            |e| matches!(e, E::MethodNotAllowed { .. }),
            405,
        ),
        (
            "HTTP/1.0",
            request_replacing("GET", Some("GET /chat HTTP/1.0")),
            |e| matches!(e, E::UnsupportedHttpVersion),
            400,
        ),
        (
            "no Upgrade",
            request_replacing("Upgrade", None),
            |e| matches!(e, E::MissingUpgrade),
            400,
        ),
        (
            "Upgrade: h2c",
            request_replacing("Upgrade", Some("Upgrade: h2c")),
            |e| matches!(e, E::InvalidUpgrade),
            400,
        ),
        (
            "no Connection",
            request_replacing("Connection", None),
            |e| matches!(e, E::MissingConnection),
            400,
        ),
        (
            "Connection: keep-alive",
            request_replacing("Connection", Some("Connection: keep-alive")),
            |e| matches!(e, E::InvalidConnection),
            400,
        ),
        (
            "no Host",
            request_replacing("Host", None),
            |e| matches!(e, E::MissingHost),
            400,
        ),
        (
            "no version",
            request_replacing("Sec-WebSocket-Version", None),
            |e| matches!(e, E::MissingVersion),
            426,
        ),
        (
            "version 8",
            request_replacing("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
            |e| matches!(e, E::UnsupportedVersion),
            426,
        ),
        (
            "version 13, 8",
            request_replacing(
                "Sec-WebSocket-Version",
                Some("Sec-WebSocket-Version: 13, 8"),
            ),
            |e| matches!(e, E::UnsupportedVersion),
            426,
        ),
        (
            "no key",
            request_replacing("Sec-WebSocket-Key", None),
            |e| matches!(e, E::MissingKey),
            400,
        ),
        (
            "15-byte key",
            request_replacing("Sec-WebSocket-Key", Some(&key15)),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "17-byte key",
            request_replacing("Sec-WebSocket-Key", Some(&key17)),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "non-base64 key",
            request_replacing(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: ########################"),
            ),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "empty key",
            request_replacing("Sec-WebSocket-Key", Some("Sec-WebSocket-Key:")),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "malformed extensions",
            request_adding(&["Sec-WebSocket-Extensions: permessage-deflate; x=\"1"]),
            |e| matches!(e, E::MalformedExtensions(_)),
            400,
        ),
        (
            "space in a header name",
            request_adding(&["Bad Header: 1"]),
            |e| matches!(e, E::MalformedRequest { .. }),
            400,
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            |e| matches!(e, E::MalformedRequest { .. }),
            400,
        ),
    ];
    for (what, buf, is_expected, status) in cases {
        let err = refusal(&buf);
        assert!(is_expected(&err), "{what}: unexpected {err:?}");
        assert_eq!(err.status().as_u16(), status, "{what}: {err}");
        let answer = text(&rejection_bytes(&err));
        let status_line = format!("HTTP/1.1 {status} ");
        assert!(answer.starts_with(&status_line), "{what}: {answer}");
        assert!(
            answer.ends_with(&format!("\r\n\r\n{err}")),
            "{what}: {answer}"
        );
        assert_eq!(
            answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            status == 426,
            "{what}: the version header goes with 426 only: {answer}"
        );
    }
}

/// Standard base64 with padding, written out here so the test does not
/// trust the code under test to encode its own bad keys.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_helper_matches_rfc_example() {
    assert_eq!(base64_encode(b"the sample nonce"), KEY);
    assert_eq!(base64_encode(&[1; 15]).len(), 20);
    assert_eq!(base64_encode(&[1; 17]).len(), 24);
}

#[test]
fn rejection_426_carries_the_version_header() {
    let err = refusal(&request_replacing(
        "Sec-WebSocket-Version",
        Some("Sec-WebSocket-Version: 7"),
    ));
    let answer = text(&rejection_bytes(&err));
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    let body = err.to_string();
    assert!(answer.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
}

#[test]
fn head_over_the_limit_is_431_even_when_incomplete() {
    let limits = ServerLimits::default();
    // A head that never ends: one long header line.
    let mut buf = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    buf.resize(limits.max_head_size, b'a');
    assert!(matches!(parse_request(&buf, &limits), Ok(None)));
    buf.push(b'a');
    let err = parse_request(&buf, &limits).unwrap_err();
    assert!(
        matches!(err, HandshakeError::HeadTooLarge { limit: 8192 }),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(text(&rejection_bytes(&err))
        .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));

    // A complete head that is too long.
    let filler = format!("X-Filler: {}", "a".repeat(8192));
    let err = refusal(&request_adding(&[&filler]));
    assert!(
        matches!(err, HandshakeError::HeadTooLarge { .. }),
        "{err:?}"
    );
}

#[test]
fn too_many_headers_is_431() {
    let extra: Vec<String> = (0..64).map(|i| format!("X-{i}: 1")).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let err = refusal(&request_adding(&extra));
    assert!(
        matches!(err, HandshakeError::TooManyHeaders { limit: 64 }),
        "{err:?}"
    );
    assert_eq!(err.status().as_u16(), 431);
    // The same request passes with a higher limit.
    let limits = ServerLimits {
        max_headers: 100,
        ..ServerLimits::default()
    };
    assert!(matches!(
        parse_request(&request_adding(&extra), &limits),
        Ok(Some(_))
    ));
}

// ----- Incremental parsing and leftover bytes -----

fn same_request(a: &Request, b: &Request) {
    assert_eq!(a.resource(), b.resource());
    assert_eq!(a.key(), b.key());
    assert_eq!(a.headers(), b.headers());
    assert_eq!(a.as_http().uri(), b.as_http().uri());
    assert_eq!(a.extensions(), b.extensions());
}

#[test]
fn one_byte_at_a_time() {
    let buf = request_adding(&[
        "Sec-WebSocket-Protocol: chat",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ]);
    let whole = parse_ok(&buf);
    for end in 0..buf.len() {
        match parse(&buf[..end]) {
            Ok(None) => {}
            other => panic!("prefix of {end} bytes: {other:?}"),
        }
    }
    let (request, consumed) = parse(&buf).unwrap().unwrap();
    assert_eq!(consumed, buf.len());
    same_request(&request, &whole);
}

#[test]
fn bytes_after_the_head_belong_to_the_framing_layer() {
    let head = join(&valid_lines());
    let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"; // masked "Hello"
    let mut buf = head.clone();
    buf.extend_from_slice(frame);
    let (_, consumed) = parse(&buf).unwrap().unwrap();
    assert_eq!(consumed, head.len());
    assert_eq!(&buf[consumed..], frame);

    // Even bytes that look like another request are left alone.
    let mut two = head.clone();
    two.extend_from_slice(&head);
    let (_, consumed) = parse(&two).unwrap().unwrap();
    assert_eq!(consumed, head.len());
}

#[test]
fn leftover_bytes_do_not_count_against_the_head_limit() {
    let head = join(&valid_lines());
    let limits = ServerLimits {
        max_head_size: head.len(),
        ..ServerLimits::default()
    };
    let mut buf = head.clone();
    buf.extend_from_slice(&[0x82; 100_000]);
    let (_, consumed) = parse_request(&buf, &limits).unwrap().unwrap();
    assert_eq!(consumed, head.len());
}

// ----- Header token lists and subprotocols -----

#[test]
fn token_lists_in_requests() {
    for (upgrade, connection) in [
        ("websocket", "keep-alive, Upgrade"),
        ("WebSocket", "UpGrAdE"),
        ("h2c, WEBSOCKET", "Upgrade , keep-alive"),
        ("websocket", "keep-alive,upgrade"),
    ] {
        let mut lines = valid_lines();
        lines[2] = format!("Upgrade: {upgrade}");
        lines[3] = format!("Connection: {connection}");
        parse_ok(&join(&lines));
    }
    // Connection on two lines.
    let mut lines = valid_lines();
    lines[3] = "Connection: keep-alive".into();
    lines.push("Connection: Upgrade".into());
    parse_ok(&join(&lines));

    assert!(header_contains_token(b"keep-alive, Upgrade", "upgrade"));
    assert!(!header_contains_token(b"keep-alive, Upgraded", "upgrade"));
}

#[test]
fn several_protocol_lines_keep_the_client_order() {
    let request = parse_ok(&request_adding(&[
        "Sec-WebSocket-Protocol: chat, superchat",
        "Sec-WebSocket-Protocol: mqtt",
    ]));
    assert_eq!(request.protocols(), ["chat", "superchat", "mqtt"]);
    let response = request.accept().protocol("mqtt").build().unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "mqtt");
}

// ----- Extension header grammar -----

fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
    ExtensionOffer {
        name: name.into(),
        params: params
            .iter()
            .map(|(n, v)| ExtensionParam {
                name: (*n).into(),
                value: v.map(Into::into),
            })
            .collect(),
    }
}

#[test]
fn extension_offers_in_requests() {
    let request = parse_ok(&request_adding(&[
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\"",
        "Sec-WebSocket-Extensions: permessage-deflate ;client_max_window_bits , x-webkit-deflate-frame",
    ]));
    assert_eq!(
        request.extensions(),
        [
            offer(
                "permessage-deflate",
                &[
                    ("client_max_window_bits", None),
                    ("server_max_window_bits", Some("10"))
                ]
            ),
            offer("permessage-deflate", &[("client_max_window_bits", None)]),
            offer("x-webkit-deflate-frame", &[]),
        ]
    );
}

#[test]
fn extension_grammar() {
    assert_eq!(
        parse_extensions(b"a; b=\"c\"; d=e, f").unwrap(),
        [
            offer("a", &[("b", Some("c")), ("d", Some("e"))]),
            offer("f", &[])
        ]
    );
    assert_eq!(
        parse_extensions(br#"a; b="\1\0""#).unwrap(),
        [offer("a", &[("b", Some("10"))])]
    );
    for malformed in [
        &b"a;"[..],
        b";a",
        b"a b",
        b"a; b=",
        b"a; b=\"c",
        b"a; b=\"c d\"",
        b"a; b==c",
        b"a; b=c d",
        b"a,, ;",
        b"a; b=\"c\"d",
        b"\"a\"",
        b"a; b=\xc3\xa9",
    ] {
        let err = parse_extensions(malformed).expect_err(&text(malformed).to_string());
        assert!(
            err.to_string()
                .starts_with("malformed Sec-WebSocket-Extensions header"),
            "{err}"
        );
    }
    let offers = [
        offer(
            "permessage-deflate",
            &[("client_max_window_bits", Some("15"))],
        ),
        offer("x", &[("y", None)]),
    ];
    assert_eq!(
        to_header_value(&offers),
        "permessage-deflate; client_max_window_bits=15, x; y"
    );
}

// ----- Round trips -----

#[test]
fn client_request_round_trips_through_the_server() {
    let client = ClientRequest::builder("ws://example.com:9001/echo?x=1&y=%20")
        .origin("http://example.com")
        .protocols(["v2", "v1"])
        .extensions(&[offer(
            "permessage-deflate",
            &[("client_max_window_bits", None)],
        )])
        .header("Authorization", "Bearer t0ken")
        .build()
        .unwrap();
    let mut bytes = Vec::new();
    client.write(&mut bytes);
    let server = parse_ok(&bytes);
    assert_eq!(server.resource(), "/echo?x=1&y=%20");
    assert_eq!(server.host(), Some("example.com:9001"));
    assert_eq!(server.origin(), Some("http://example.com"));
    assert_eq!(server.key(), client.key());
    assert_eq!(server.protocols(), ["v2", "v1"]);
    assert_eq!(server.extensions(), client.extensions());
    assert_eq!(server.headers()["authorization"], "Bearer t0ken");
}

#[test]
fn tls_client_request_leaves_out_the_default_port() {
    let client = ClientRequest::new("wss://example.com:443/").unwrap();
    let mut bytes = Vec::new();
    client.write(&mut bytes);
    assert_eq!(parse_ok(&bytes).host(), Some("example.com"));
    assert!(client.is_tls());
}

#[test]
fn server_response_round_trips_through_the_client() {
    let client = ClientRequest::builder("ws://example.com/")
        .protocols(["a", "b"])
        .extensions(&[offer("permessage-deflate", &[]), offer("x-other", &[])])
        .build()
        .unwrap();
    let mut to_server = Vec::new();
    client.write(&mut to_server);
    let request = parse_ok(&to_server);
    let response = request
        .accept()
        .protocol("b")
        .extensions(&[offer(
            "permessage-deflate",
            &[("server_no_context_takeover", None)],
        )])
        .header("Server", "weft-test")
        .build()
        .unwrap();
    let mut to_client = Vec::new();
    write_response(&response, &mut to_client);
    let head_len = to_client.len();
    to_client.extend_from_slice(b"\x81\x02hi");

    // One byte at a time: nothing until the head is complete.
    for end in 0..head_len {
        match parse_response(&to_client[..end], &client, DEFAULT_MAX_HEAD_SIZE) {
            Ok(None) => {}
            other => panic!("prefix of {end} bytes: {other:?}"),
        }
    }
    let (accepted, consumed) = parse_response(&to_client, &client, DEFAULT_MAX_HEAD_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(consumed, head_len);
    assert_eq!(&to_client[consumed..], b"\x81\x02hi");
    assert_eq!(accepted.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(accepted.protocol(), Some("b"));
    assert_eq!(
        accepted.extensions(),
        [offer(
            "permessage-deflate",
            &[("server_no_context_takeover", None)]
        )]
    );
    assert_eq!(accepted.headers()["server"], "weft-test");
    assert_eq!(
        accepted.headers()["sec-websocket-accept"],
        accept_key(client.key().as_bytes()).as_str()
    );
}

// ----- Client-side refusals -----

fn client() -> ClientRequest {
    ClientRequest::builder("ws://example.com/chat")
        .key(KEY)
        .protocols(["chat"])
        .build()
        .unwrap()
}

fn response_lines() -> Vec<String> {
    vec![
        "HTTP/1.1 101 Switching Protocols".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Accept: {ACCEPT}"),
    ]
}

fn client_refusal(lines: &[String], request: &ClientRequest) -> HandshakeError {
    match parse_response(&join(lines), request, DEFAULT_MAX_HEAD_SIZE) {
        Err(err) => err,
        Ok(other) => panic!("expected a refusal of {lines:?}, got {other:?}"),
    }
}

#[test]
fn the_rfc_example_response_is_accepted() {
    let (response, _) = parse_response(&join(&response_lines()), &client(), 8192)
        .unwrap()
        .unwrap();
    assert_eq!(response.protocol(), None);
}

#[test]
fn wrong_accept_is_refused() {
    let mut lines = response_lines();
    lines[3] = format!("Sec-WebSocket-Accept: {}", accept_key(b"another key"));
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::AcceptMismatch
    ));
    lines.remove(3);
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::MissingAccept
    ));
}

#[test]
fn missing_upgrade_or_connection_is_refused() {
    let mut lines = response_lines();
    lines.remove(1);
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::InvalidResponseUpgrade
    ));
    let mut lines = response_lines();
    lines[1] = "Upgrade: h2c".into();
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::InvalidResponseUpgrade
    ));
    let mut lines = response_lines();
    lines[2] = "Connection: keep-alive".into();
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::InvalidResponseConnection
    ));
}

#[test]
fn other_statuses_are_kept_with_their_headers() {
    for (status, header) in [(200, "Content-Type: text/html"), (403, "X-Reason: origin")] {
        let reason = StatusCode::from_u16(status)
            .unwrap()
            .canonical_reason()
            .unwrap();
        let lines = vec![format!("HTTP/1.1 {status} {reason}"), header.to_owned()];
        match client_refusal(&lines, &client()) {
            HandshakeError::UnexpectedStatus { response, head_len } => {
                assert_eq!(response.status().as_u16(), status);
                let (name, value) = header.split_once(": ").unwrap();
                assert_eq!(response.headers()[name], value);
                assert_eq!(head_len, join(&lines).len());
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[test]
fn a_protocol_not_offered_is_refused() {
    let mut lines = response_lines();
    lines.push("Sec-WebSocket-Protocol: superchat".into());
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::UnrequestedProtocol { protocol } if protocol == "superchat"
    ));
    // Offering none means the server may select none.
    let none = ClientRequest::builder("ws://h/").key(KEY).build().unwrap();
    lines.pop();
    lines.push("Sec-WebSocket-Protocol: chat".into());
    assert!(matches!(
        client_refusal(&lines, &none),
        HandshakeError::UnrequestedProtocol { protocol } if protocol == "chat"
    ));
    // And the offered one is fine.
    let (response, _) = parse_response(&join(&lines), &client(), 8192)
        .unwrap()
        .unwrap();
    assert_eq!(response.protocol(), Some("chat"));
}

#[test]
fn an_extension_not_offered_is_refused() {
    let mut lines = response_lines();
    lines.push("Sec-WebSocket-Extensions: permessage-deflate".into());
    assert!(matches!(
        client_refusal(&lines, &client()),
        HandshakeError::UnrequestedExtension { name } if name == "permessage-deflate"
    ));
}

#[test]
fn an_oversized_response_is_refused() {
    let mut buf = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
    buf.resize(100, b'a');
    assert!(matches!(parse_response(&buf, &client(), 100), Ok(None)));
    buf.push(b'a');
    assert!(matches!(
        parse_response(&buf, &client(), 100),
        Err(HandshakeError::ResponseTooLarge { limit: 100 })
    ));
}

// ----- Requests parsed by an HTTP library: Request::from_http -----

/// The `http::Request` an HTTP library would make of `head`: the request
/// line and `Name: value` lines, parsed here by hand so that the test does
/// not trust the code under test.
fn library_request(head: &[u8]) -> http::Request<()> {
    let head = text(head);
    let mut lines = head.split("\r\n").take_while(|line| !line.is_empty());
    let request_line = lines.next().expect("a request line");
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().expect("a method"),
        parts.next().expect("a target"),
        parts.next().expect("a version"),
    );
    let version = match version {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/1.1" => Version::HTTP_11,
        other => panic!("version {other}"),
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(target)
        .version(version);
    for line in lines {
        let (name, value) = line.split_once(':').expect("name: value");
        builder = builder.header(name, value.trim_matches([' ', '\t']));
    }
    builder.body(()).expect("a request the http crate takes")
}

/// Bad HTTP/1.1 requests, each with the refusal both parse_request and
/// from_http must give.
#[allow(clippy::type_complexity)]
fn bad_upgrade_requests() -> Vec<(&'static str, Vec<u8>, fn(&HandshakeError) -> bool, u16)> {
    use HandshakeError as E;
    let key15 = format!("Sec-WebSocket-Key: {}", base64_encode(&[7; 15]));
    vec![
        (
            "no key",
            request_replacing("Sec-WebSocket-Key", None),
            |e| matches!(e, E::MissingKey),
            400,
        ),
        (
            "15-byte key",
            request_replacing("Sec-WebSocket-Key", Some(&key15)),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "non-base64 key",
            request_replacing(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: ########################"),
            ),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "two keys",
            request_adding(&[&format!("Sec-WebSocket-Key: {KEY}")]),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            "version 8",
            request_replacing("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
            |e| matches!(e, E::UnsupportedVersion),
            426,
        ),
        (
            "no version",
            request_replacing("Sec-WebSocket-Version", None),
            |e| matches!(e, E::MissingVersion),
            426,
        ),
        (
            "POST",
            request_replacing("GET", Some("POST /chat HTTP/1.1")),
            |e| matches!(e, E::MethodNotAllowed { method } if method == "POST"),
            405,
        ),
        (
            "HTTP/1.0",
            request_replacing("GET", Some("GET /chat HTTP/1.0")),
            |e| matches!(e, E::UnsupportedHttpVersion),
            400,
        ),
        (
            "asterisk target",
            request_replacing("GET", Some("GET * HTTP/1.1")),
            |e| matches!(e, E::InvalidRequestTarget),
            400,
        ),
        (
            "no Host",
            request_replacing("Host", None),
            |e| matches!(e, E::MissingHost),
            400,
        ),
        (
            "bad Host",
            request_replacing("Host", Some("Host: user@server.example.com")),
            |e| matches!(e, E::InvalidHost),
            400,
        ),
        (
            "no Upgrade",
            request_replacing("Upgrade", None),
            |e| matches!(e, E::MissingUpgrade),
            400,
        ),
        (
            "Upgrade without websocket",
            request_replacing("Upgrade", Some("Upgrade: h2c")),
            |e| matches!(e, E::InvalidUpgrade),
            400,
        ),
        (
            "no Connection",
            request_replacing("Connection", None),
            |e| matches!(e, E::MissingConnection),
            400,
        ),
        (
            "Connection without upgrade",
            request_replacing("Connection", Some("Connection: keep-alive")),
            |e| matches!(e, E::InvalidConnection),
            400,
        ),
        (
            "bad protocols",
            request_adding(&["Sec-WebSocket-Protocol: chat, \"super chat\""]),
            |e| matches!(e, E::InvalidProtocols),
            400,
        ),
        (
            "malformed extensions",
            request_adding(&["Sec-WebSocket-Extensions: permessage-deflate;"]),
            |e| matches!(e, E::MalformedExtensions(_)),
            400,
        ),
    ]
}

#[test]
fn from_http_refuses_what_parse_request_refuses() {
    for (what, head, is_expected, status) in bad_upgrade_requests() {
        let parsed = refusal(&head);
        let library = match Request::from_http(&library_request(&head)) {
            Err(err) => err,
            Ok(request) => panic!("{what}: from_http accepted {request:?}"),
        };
        assert!(
            is_expected(&parsed),
            "{what}: parse_request gave {parsed:?}"
        );
        assert!(is_expected(&library), "{what}: from_http gave {library:?}");
        assert_eq!(format!("{parsed:?}"), format!("{library:?}"), "{what}");
        assert_eq!(parsed.status().as_u16(), status, "{what}");
        assert_eq!(library.status().as_u16(), status, "{what}");
    }
}

#[test]
fn from_http_accepts_what_parse_request_accepts() {
    let head = request_adding(&[
        "Sec-WebSocket-Protocol: chat, superchat",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "X-Custom: 1",
    ]);
    let parsed = parse_ok(&head);
    let library = Request::from_http(&library_request(&head)).unwrap();
    same_request(&parsed, &library);
    assert_eq!(library.host(), Some("server.example.com"));
    assert_eq!(library.origin(), Some("http://example.com"));
    assert_eq!(library.protocols(), ["chat", "superchat"]);
    assert!(!library.is_extended_connect());
    // Its answer is the HTTP/1.1 101, exactly as for parse_request.
    let from_library = library.accept().protocol("chat").build().unwrap();
    let from_parser = parsed.accept().protocol("chat").build().unwrap();
    assert_eq!(from_library.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(from_library.version(), Version::HTTP_11);
    assert_eq!(from_library.headers(), from_parser.headers());
    assert_eq!(from_library.headers()["sec-websocket-accept"], ACCEPT);
}

// ----- The server's side of RFC 8441: Request::from_extended_connect -----

/// A valid extended CONNECT, as an HTTP/2 library gives it: the
/// pseudo-headers in the URI, `:protocol` beside it.
fn connect_builder(uri: &str) -> http::request::Builder {
    http::Request::builder()
        .method(Method::CONNECT)
        .uri(uri)
        .version(Version::HTTP_2)
        .header("sec-websocket-version", "13")
}

fn connect(builder: http::request::Builder) -> http::Request<()> {
    builder.body(()).expect("a valid http::Request")
}

fn valid_connect() -> http::Request<()> {
    connect(
        connect_builder("https://example.com:8443/chat?room=1")
            .header("origin", "https://example.com")
            .header("sec-websocket-protocol", "chat, superchat")
            .header(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
    )
}

fn connect_refusal(request: &http::Request<()>, protocol: Option<&str>) -> HandshakeError {
    match Request::from_extended_connect(request, protocol) {
        Err(err) => err,
        Ok(other) => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_extended_connect_is_accepted() {
    let request = Request::from_extended_connect(&valid_connect(), Some("websocket")).unwrap();
    assert!(request.is_extended_connect());
    assert_eq!(request.resource(), "/chat?room=1");
    assert_eq!(request.host(), Some("example.com:8443"));
    assert_eq!(request.origin(), Some("https://example.com"));
    assert_eq!(request.protocols(), ["chat", "superchat"]);
    assert_eq!(
        request.extensions(),
        [offer(
            "permessage-deflate",
            &[("client_max_window_bits", None)]
        )]
    );
    assert_eq!(request.key(), "");
    assert_eq!(request.version(), Version::HTTP_2);
    assert_eq!(request.as_http().method(), Method::CONNECT);

    // `:protocol` in another case; HTTP/3 too (RFC 9220).
    let mut h3 = valid_connect();
    *h3.version_mut() = Version::HTTP_3;
    assert!(Request::from_extended_connect(&h3, Some("WebSocket")).is_ok());
}

#[test]
fn extended_connect_host_is_the_host_header_or_the_authority() {
    // A Host header wins over the authority.
    let with_host = connect(connect_builder("https://example.com/").header("host", "other:81"));
    let request = Request::from_extended_connect(&with_host, Some("websocket")).unwrap();
    assert_eq!(request.host(), Some("other:81"));
    // A Host header and no authority.
    let path_only = connect(connect_builder("/chat").header("host", "example.com"));
    let request = Request::from_extended_connect(&path_only, Some("websocket")).unwrap();
    assert_eq!(
        (request.host(), request.resource()),
        (Some("example.com"), "/chat")
    );
}

#[test]
fn extended_connect_refusals() {
    use HandshakeError as E;
    let websocket = Some("websocket");
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, http::Request<()>, Option<&str>, fn(&E) -> bool, u16)> = vec![
        (
            "GET",
            connect(connect_builder("https://example.com/").method(Method::GET)),
            websocket,
            |e| matches!(e, E::MethodNotConnect { method } if method == Method::GET),
            405,
        ),
        (
            "HTTP/1.1",
            connect(connect_builder("https://example.com/").version(Version::HTTP_11)),
            websocket,
            |e| matches!(e, E::ExtendedConnectVersion { version } if *version == Version::HTTP_11),
            400,
        ),
        (
            "no :protocol",
            valid_connect(),
            None,
            |e| matches!(e, E::MissingConnectProtocol),
            400,
        ),
        (
            "another :protocol",
            valid_connect(),
            Some("connect-udp"),
            |e| matches!(e, E::InvalidConnectProtocol { protocol } if protocol == "connect-udp"),
            400,
        ),
        (
            "no authority and no Host",
            connect(connect_builder("/chat")),
            websocket,
            |e| matches!(e, E::MissingAuthority),
            400,
        ),
        (
            "user information in the authority",
            connect(connect_builder("https://user@example.com/")),
            websocket,
            |e| matches!(e, E::InvalidAuthority),
            400,
        ),
        (
            "a bad Host header",
            connect(connect_builder("https://example.com/").header("host", "a b")),
            websocket,
            |e| matches!(e, E::InvalidHost),
            400,
        ),
        (
            "no path",
            connect(connect_builder("example.com:443")),
            websocket,
            |e| matches!(e, E::InvalidRequestTarget),
            400,
        ),
        (
            "version 8",
            connect(
                connect_builder("https://example.com/")
                    .header("sec-websocket-version", "8")
                    .version(Version::HTTP_2),
            ),
            websocket,
            |e| matches!(e, E::UnsupportedVersion),
            426,
        ),
        (
            "no version",
            {
                let mut request = valid_connect();
                request.headers_mut().remove("sec-websocket-version");
                request
            },
            websocket,
            |e| matches!(e, E::MissingVersion),
            426,
        ),
        (
            "bad protocols",
            connect(
                connect_builder("https://example.com/").header("sec-websocket-protocol", "a b"),
            ),
            websocket,
            |e| matches!(e, E::InvalidProtocols),
            400,
        ),
        (
            "malformed extensions",
            connect(
                connect_builder("https://example.com/").header("sec-websocket-extensions", "x; y="),
            ),
            websocket,
            |e| matches!(e, E::MalformedExtensions(_)),
            400,
        ),
    ];
    for (what, request, protocol, is_expected, status) in cases {
        let err = connect_refusal(&request, protocol);
        assert!(is_expected(&err), "{what}: unexpected {err:?}");
        assert_eq!(err.status().as_u16(), status, "{what}: {err}");

        // The refusal through the library: no Connection in HTTP/2.
        let answer = rejection_for(&err, Version::HTTP_2);
        assert_eq!(answer.status().as_u16(), status, "{what}");
        assert_eq!(answer.version(), Version::HTTP_2, "{what}");
        assert!(!answer.headers().contains_key("connection"), "{what}");
        assert_eq!(answer.body(), &err.to_string(), "{what}");
        assert_eq!(
            answer.headers().get("sec-websocket-version").is_some(),
            status == 426,
            "{what}: the version header goes with 426 only"
        );
        assert_eq!(
            answer.headers().get("allow").map(|v| v.as_bytes()),
            (status == 405).then_some(&b"CONNECT"[..]),
            "{what}"
        );
    }
}

#[test]
fn a_key_upgrade_or_connection_in_an_extended_connect_is_not_needed() {
    // They are not checked, present or not; the answer has no Accept anyway.
    let with_key = connect(
        connect_builder("https://example.com/")
            .header("sec-websocket-key", "not a key")
            .header("upgrade", "h2c"),
    );
    let request = Request::from_extended_connect(&with_key, Some("websocket")).unwrap();
    let response = request.accept().build().unwrap();
    assert!(!response.headers().contains_key("sec-websocket-accept"));
}

#[test]
fn the_answer_to_an_extended_connect_is_a_200() {
    let request = Request::from_extended_connect(&valid_connect(), Some("websocket")).unwrap();
    let response = request
        .accept()
        .protocol("superchat")
        .extensions(&[offer(
            "permessage-deflate",
            &[("server_no_context_takeover", None)],
        )])
        .header("Server", "weft-test")
        .build()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let headers = response.headers();
    for absent in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(!headers.contains_key(absent), "{absent}: {headers:?}");
    }
    assert_eq!(headers["sec-websocket-protocol"], "superchat");
    assert_eq!(
        headers["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    assert_eq!(headers["server"], "weft-test");
    assert_eq!(headers.len(), 3);

    // The same mistakes as for HTTP/1.1.
    let err = request.accept().protocol("mqtt").build().unwrap_err();
    assert!(
        matches!(err, HandshakeError::ProtocolNotOffered { .. }),
        "{err:?}"
    );
    let err = request
        .accept()
        .header("Connection", "close")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::InvalidHeader { .. }),
        "{err:?}"
    );
}

#[test]
fn rejection_for_http1_is_the_http1_refusal() {
    let err = refusal(&request_replacing("GET", Some("POST /chat HTTP/1.1")));
    for version in [Version::HTTP_10, Version::HTTP_11] {
        let answer = rejection_for(&err, version);
        assert_eq!(answer.version(), Version::HTTP_11);
        assert_eq!(answer.headers()["connection"], "close");
        assert_eq!(answer.headers()["allow"], "GET");
    }
}

// ----- The client's side of RFC 8441 -----

#[test]
fn to_extended_connect_is_the_rfc_8441_request() {
    let client = ClientRequest::builder("wss://example.com:8443/chat?room=1")
        .key(KEY)
        .origin("https://example.com")
        .protocols(["v2", "v1"])
        .extensions(&[offer(
            "permessage-deflate",
            &[("client_max_window_bits", None)],
        )])
        .header("Authorization", "Bearer t0ken")
        .build()
        .unwrap();
    let request = client.to_extended_connect();
    assert_eq!(request.method(), Method::CONNECT);
    assert_eq!(request.version(), Version::HTTP_2);
    assert_eq!(request.uri(), "https://example.com:8443/chat?room=1");
    let headers = request.headers();
    assert_eq!(headers["sec-websocket-version"], "13");
    assert_eq!(headers["origin"], "https://example.com");
    assert_eq!(headers["sec-websocket-protocol"], "v2, v1");
    assert_eq!(
        headers["sec-websocket-extensions"],
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(headers["authorization"], "Bearer t0ken");
    for absent in ["sec-websocket-key", "upgrade", "connection", "host"] {
        assert!(!headers.contains_key(absent), "{absent}: {headers:?}");
    }
    assert_eq!(headers.len(), 5);

    // ws:// is http://, the default port left out; nothing optional sent.
    let plain = ClientRequest::new("ws://[::1]:80")
        .unwrap()
        .to_extended_connect();
    assert_eq!(plain.uri(), "http://[::1]/");
    assert_eq!(plain.headers().len(), 1);
}

#[test]
fn extended_connect_round_trips() {
    let client = ClientRequest::builder("wss://example.com/echo?x=1")
        .protocols(["a", "b"])
        .extensions(&[offer("permessage-deflate", &[])])
        .build()
        .unwrap();
    let request = client.to_extended_connect();
    let server = Request::from_extended_connect(&request, Some("websocket")).unwrap();
    assert_eq!(server.resource(), "/echo?x=1");
    assert_eq!(server.host(), Some("example.com"));
    assert_eq!(server.protocols(), ["a", "b"]);
    assert_eq!(server.extensions(), client.extensions());
    let answer = server
        .accept()
        .protocol("b")
        .extensions(&[offer(
            "permessage-deflate",
            &[("server_no_context_takeover", None)],
        )])
        .build()
        .unwrap();
    let accepted = check_extended_connect_response(&answer, &client).unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.protocol(), Some("b"));
    assert_eq!(
        accepted.extensions(),
        [offer(
            "permessage-deflate",
            &[("server_no_context_takeover", None)]
        )]
    );
}

fn h2_response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
    let mut builder = http::Response::builder()
        .status(status)
        .version(Version::HTTP_2);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("a valid response")
}

#[test]
fn check_extended_connect_response_accepts_a_200() {
    let response = check_extended_connect_response(&h2_response(200, &[]), &client()).unwrap();
    assert_eq!(response.protocol(), None);
    assert!(response.extensions().is_empty());
    // The body type does not matter.
    let with_body = h2_response(200, &[("sec-websocket-protocol", "chat")]).map(|()| "body");
    let response = check_extended_connect_response(&with_body, &client()).unwrap();
    assert_eq!(response.protocol(), Some("chat"));
}

#[test]
fn check_extended_connect_response_refusals() {
    for status in [400, 101, 403, 302] {
        match check_extended_connect_response(&h2_response(status, &[("x-why", "no")]), &client()) {
            Err(HandshakeError::UnexpectedStatus { response, head_len }) => {
                assert_eq!(response.status().as_u16(), status);
                assert_eq!(response.headers()["x-why"], "no");
                assert_eq!(head_len, 0);
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    let err = check_extended_connect_response(&h2_response(400, &[]), &client()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the server answered 400 Bad Request instead of 200 OK to its extended CONNECT"
    );
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);

    let err = check_extended_connect_response(
        &h2_response(200, &[("sec-websocket-protocol", "superchat")]),
        &client(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HandshakeError::UnrequestedProtocol { protocol } if protocol == "superchat"),
        "{err:?}"
    );
    let err = check_extended_connect_response(
        &h2_response(200, &[("sec-websocket-protocol", "chat, chat")]),
        &client(),
    )
    .unwrap_err();
    assert!(
        matches!(err, HandshakeError::MalformedResponse { .. }),
        "{err:?}"
    );
    let err = check_extended_connect_response(
        &h2_response(200, &[("sec-websocket-extensions", "permessage-deflate")]),
        &client(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HandshakeError::UnrequestedExtension { name } if name == "permessage-deflate"),
        "{err:?}"
    );
    let err = check_extended_connect_response(
        &h2_response(200, &[("sec-websocket-extensions", "x;")]),
        &client(),
    )
    .unwrap_err();
    assert!(
        matches!(err, HandshakeError::MalformedResponseExtensions(_)),
        "{err:?}"
    );
}

// ----- Properties -----

/// A valid request, and its head length.
fn sample_request() -> Vec<u8> {
    request_adding(&[
        "Sec-WebSocket-Protocol: a, b",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ])
}

fn token() -> impl Strategy<Value = String> {
    "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}"
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_server(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
        let tiny = ServerLimits { max_head_size: 16, max_headers: 2 };
        let _ = parse_request(&bytes, &tiny);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_client(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let request = client();
        let _ = parse_response(&bytes, &request, DEFAULT_MAX_HEAD_SIZE);
        let _ = parse_response(&bytes, &request, 8);
    }

    #[test]
    fn http_looking_input_never_panics(
        head in "(GET|HTTP/1\\.1) [ -~]{0,40}\r\n([ -~\t]{0,40}\r\n){0,8}\r\n",
    ) {
        let _ = parse(head.as_bytes());
        let _ = parse_response(head.as_bytes(), &client(), DEFAULT_MAX_HEAD_SIZE);
        let _ = parse_extensions(head.as_bytes());
    }

    #[test]
    fn corrupted_requests_never_panic(index in 0usize..4096, byte in any::<u8>()) {
        let mut buf = sample_request();
        let len = buf.len();
        buf[index % len] = byte;
        if let Ok(Some((request, consumed))) = parse(&buf) {
            prop_assert!(consumed <= buf.len());
            let _ = request.accept().build();
        } else if let Err(err) = parse(&buf) {
            let answer = rejection_bytes(&err);
            prop_assert!(answer.starts_with(b"HTTP/1.1 4"));
        }
    }

    #[test]
    fn any_split_point_gives_none_then_the_request(split in 0usize..4096, tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let head = sample_request();
        let split = split % head.len();
        prop_assert!(matches!(parse(&head[..split]), Ok(None)));
        let mut buf = head.clone();
        buf.extend_from_slice(&tail);
        let (request, consumed) = parse(&buf).unwrap().unwrap();
        prop_assert_eq!(consumed, head.len());
        prop_assert_eq!(request.protocols(), vec!["a", "b"]);
    }

    #[test]
    fn arbitrary_extension_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_extensions(&value);
    }

    #[test]
    fn extension_offers_round_trip(
        offers in proptest::collection::vec(
            (token(), proptest::collection::vec((token(), proptest::option::of(token())), 0..4)),
            1..4,
        )
    ) {
        let offers: Vec<ExtensionOffer> = offers
            .into_iter()
            .map(|(name, params)| ExtensionOffer {
                name,
                params: params
                    .into_iter()
                    .map(|(name, value)| ExtensionParam { name, value })
                    .collect(),
            })
            .collect();
        let value = to_header_value(&offers);
        prop_assert_eq!(parse_extensions(value.as_bytes()).unwrap(), offers);
    }

    #[test]
    fn quoted_token_values_read_as_the_token(name in token(), value in token()) {
        let header = format!("{name}; p=\"{value}\"");
        let offers = parse_extensions(header.as_bytes()).unwrap();
        prop_assert_eq!(offers[0].params[0].value.as_deref(), Some(value.as_str()));
    }
}
