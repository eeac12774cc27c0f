#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/seed-*.

Each seed is a small valid (or deliberately near-valid) input, so the fuzzer starts from
inputs that reach deep into the parsers instead of discovering the framing from nothing.
Run from anywhere: python3 fuzz/make-seeds.py. The output is deterministic.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = b"\x37\xfa\x21\x3d"


def frame(opcode, payload, fin=True, mask=None, rsv=0):
    """One WebSocket frame (RFC 6455 section 5.2)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + payload


def setup(server, level, feed=0, drain=0, auto_pong=True, max_frame=0, max_msg=0,
          auto_close=True, ext_rsv=0, rbuf=0, piece=1, seed=0):
    """The 5 setup bytes of the frame_decoder target (see its header comment)."""
    b0 = (1 if server else 0) | (level << 1) | (feed << 3) | (drain << 5) | (0x80 if auto_pong else 0)
    b3 = (1 if auto_close else 0) | (ext_rsv << 1) | (rbuf << 4) | (piece << 6)
    return bytes([b0, max_frame, max_msg, b3, seed])


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def frame_decoder_seeds():
    m = KEY  # the client's frames (received by a server) are masked
    text = "h\u00e9llo \u20ac \U0001f600".encode()
    yield "text-message", setup(True, 0) + frame(1, b"Hello", mask=m)
    yield "fragmented-text-ping-close", setup(True, 1, drain=1, seed=3) + (
        frame(1, text[:8], fin=False, mask=m)
        + frame(9, b"ping!", mask=m)
        + frame(0, text[8:], mask=m)
        + frame(8, close_payload(1000, b"bye"), mask=m))
    yield "client-chunks-binary", setup(False, 2, feed=2, piece=2, seed=7) + (
        frame(2, bytes(range(256)) + bytes(44), fin=False)
        + frame(10, b"pong")
        + frame(0, b"tail")
        + frame(8, b""))
    yield "invalid-utf8", setup(True, 2, feed=1, piece=1, seed=1) + frame(1, b"abc\xc3\x28def", mask=m)
    yield "long-length-truncated", setup(False, 0, piece=3) + frame(2, bytes(70000))[:600]
    yield "frame-too-big", setup(True, 0, max_frame=3, max_msg=2) + frame(2, bytes(40), mask=m)
    yield "bad-close-code", setup(True, 1, drain=2) + frame(9, b"x" * 125, mask=m) + frame(8, close_payload(1005), mask=m)
    yield "rsv-extension", setup(False, 2, ext_rsv=4) + frame(1, b"compressed?", rsv=4) + frame(2, b"no", rsv=2)
    yield "transformed-text", setup(False, 2, ext_rsv=4) + frame(1, b"\x8d\xff", rsv=4) + frame(1, b"ok")
    yield "unmasked-to-server", setup(True, 0, auto_close=False) + frame(1, b"plain")
    yield "many-small", setup(True, 0, drain=1, piece=1, seed=9) + b"".join(
        frame(2 if i % 3 else 1, bytes([0x41 + i]) * i, mask=m) for i in range(20))


def request(extra=b""):
    return (b"GET /chat?x=1 HTTP/1.1\r\n"
            b"Host: example.com:8080\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: keep-alive, Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


def request_setup(max_head=0, max_headers=0, piece=2, seed=0):
    """The 2 setup bytes of the handshake_request target (see its header comment)."""
    return bytes([max_head | (max_headers << 3) | (piece << 6), seed])


def handshake_request_seeds():
    yield "minimal", request_setup() + request()
    yield "protocols-extensions", request_setup(piece=1, seed=5) + request(
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo; a=\"b c\"\r\n"
        b"Cookie: a=b\r\n")
    yield "trailing-frame", request_setup(piece=3) + request() + bytes([0x81, 0x85]) + KEY + b"hello"
    yield "wrong-version", request_setup(max_headers=3) + request().replace(b"Version: 13", b"Version: 8")
    yield "post", request_setup() + request().replace(b"GET", b"POST")
    yield "head-too-large", request_setup(max_head=4) + request()


def response(extra=b"", accept=b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="):
    return (b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n")


def response_setup(max_head=0, protocols=False, extensions=False, piece=2, seed=0):
    """The 2 setup bytes of the handshake_response target (see its header comment)."""
    return bytes([max_head | (8 if protocols else 0) | (16 if extensions else 0) | (piece << 6), seed])


def handshake_response_seeds():
    yield "minimal", response_setup() + response()
    yield "protocol", response_setup(protocols=True, piece=1) + response(b"Sec-WebSocket-Protocol: chat\r\n")
    yield "extension", response_setup(extensions=True, seed=9) + response(
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n")
    yield "trailing-frame", response_setup(piece=3) + response() + bytes([0x82, 0x03]) + b"abc"
    yield "wrong-accept", response_setup() + response(accept=b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    yield "not-101", response_setup() + b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"


def handshake_extensions_seeds():
    yield "deflate", b"permessage-deflate; client_max_window_bits; server_max_window_bits=10"
    yield "two-offers", b"x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover"
    yield "quoted", b'foo; a="15"; b, bar ; c = d'
    yield "bad-quoted", b'foo; a="b c"'
    yield "empty-element", b"foo,, bar;"


def send_setup(server=False, fragment=0, coalesce=0, drain=7, key=0x1234):
    """The 3 setup bytes of the send_roundtrip target (see its header comment)."""
    return bytes([(1 if server else 0) | (fragment << 1) | (coalesce << 3) | (drain << 5),
                  key >> 8, key & 0xff])


def op(code, arg=0):
    return bytes([code | (arg << 4)])


def pl(data):
    """A payload: its length byte, then the bytes (short payloads only)."""
    assert len(data) < 200
    return bytes([len(data)]) + data


def send_roundtrip_seeds():
    text = "h\u00e9llo \u20ac \U0001f600".encode()
    yield "messages", send_setup() + op(0) + pl(b"hello") + op(0, 1) + pl(bytes(range(40))) + op(10)
    yield "fragments", send_setup(server=True, fragment=2, drain=2) + (
        op(1) + op(2) + pl(text[:8]) + op(6) + pl(b"ping") + op(2, 1) + pl(text[8:]) + op(10)
        + op(0) + pl(b"x" * 30) + op(10) + op(8, 0) + pl(b"bye") + op(10))
    yield "streamed", send_setup(coalesce=2, drain=1) + (
        op(1, 1) + op(4, 1) + bytes([30]) + op(5) + pl(bytes(10)) + op(10) + op(7) + pl(b"hb")
        + op(10) + op(5) + pl(bytes(20)) + op(10) + op(0) + pl(b"after"))
    yield "vectored", send_setup(server=True, fragment=1) + op(9, 2) + pl(b"ab") + pl(b"c") + op(9, 1) + pl(b"x")
    yield "out-of-order", send_setup() + op(2) + pl(b"no") + op(5) + pl(b"no") + op(3) + op(1) + op(1) + op(8, 4) + pl(b"")
    yield "large", send_setup(coalesce=1) + op(0, 1) + bytes([230]) + bytes(range(256)) * 3 + op(10)


def nib(bits):
    """Window bits in a setup nibble of the deflate target: None, or 8-15."""
    return 0 if bits is None else bits


def deflate_setup(round_trip=False, receiver_client=False, level=0, piece=3, offer=0,
                  client=(False, False, None, None), server=(False, False, None, None),
                  comp=1, threshold=1, max_msg=0, max_frame=0, fragment=0, seed=0x2a17):
    """The 7 setup bytes of the deflate target (see its header comment). `client`: the
    offer's (server_no_context_takeover, client_no_context_takeover, server_max_window_bits,
    client_max_window_bits); `server`: the server's own DeflateConfig, the same way."""
    b0 = (1 if round_trip else 0) | (2 if receiver_client else 0) | (level << 2) | (piece << 4) | (offer << 6)
    b1 = (int(client[0]) | int(client[1]) << 1 | int(server[0]) << 2 | int(server[1]) << 3
          | nib(client[2]) << 4)
    b2 = nib(server[2]) | nib(server[3]) << 4
    b3 = nib(client[3]) | comp << 4 | threshold << 6
    b4 = max_msg | max_frame << 3 | fragment << 6
    return bytes([b0, b1, b2, b3, b4, seed >> 8, seed & 0xff])


def dop(code, arg=0):
    return bytes([code | arg << 3])


def deflate_seeds():
    text = "h\u00e9llo w\u00f6rld \u2713 \U0001d11e ".encode()
    fox = b"the quick brown fox jumps over the lazy dog. " * 4
    noise = bytes((i * 2654435761 >> 13) & 0xff for i in range(180))
    messages = (dop(0) + pl(b"tiny") + dop(0) + pl(b"") + dop(0) + pl(fox[:180])
                + dop(0, 1) + pl(noise) + dop(0) + pl(text * 3) + dop(0) + pl(fox[:180]))
    # Every parameter combination of the tests, round trip at each level.
    for i, (sb, cb) in enumerate([(15, 15), (9, 12), (12, 9), (8, 8), (10, 15)]):
        yield f"params-{sb}-{cb}", deflate_setup(
            round_trip=True, level=i % 3, piece=i % 4, client=(i % 2 == 1, i % 3 == 1, sb, cb),
            server=(False, i == 4, None, None), comp=i % 4, threshold=i % 2, seed=i) + messages
    yield "streamed", deflate_setup(round_trip=True, receiver_client=True, level=1, fragment=2) + (
        dop(1, 0b110) + pl(text) + pl(b"") + pl(fox[:100]) + pl(text) + dop(3, 0) + pl(b"hb")
        + dop(1, 0b011) + pl(noise[:50]) + pl(fox[:150]) + dop(3, 2) + pl(b""))
    yield "bomb-message-limit", deflate_setup(max_msg=6, max_frame=7) + dop(2, 10) + b"\x00" + dop(0) + pl(b"after")
    yield "bomb-frame-limit", deflate_setup(level=1, max_frame=5, piece=2) + dop(2, 8) + b"\xff"
    yield "bomb-chunks", deflate_setup(level=2, piece=3) + dop(2, 10) + b"a"
    yield "bomb-round-trip", deflate_setup(round_trip=True, max_msg=7, max_frame=0, comp=3) + dop(2, 9) + b"z" + dop(0) + pl(fox[:100])
    # Not a deflate stream (1007); RSV1 on a continuation and on a ping (1002).
    yield "garbage", deflate_setup() + dop(4) + b"\xc2" + pl(b"\xff\xff\xff\xff\x00")
    yield "rsv1-continuation", deflate_setup(level=1) + dop(4) + b"\x02" + pl(b"a") + dop(4) + b"\xc0" + pl(b"b")
    yield "rsv1-ping", deflate_setup(receiver_client=True) + dop(4) + b"\xc9" + pl(b"")
    # Invalid UTF-8 compressed inside a text message: a binary message relabelled as text.
    bad = b"valid text, then " * 4 + b"\xff\xfe"
    yield "invalid-utf8", deflate_setup(threshold=0) + dop(0, 1) + pl(bad) + dop(5) + b"\x00\x00\x03"
    yield "flipped", deflate_setup(level=2, piece=1) + messages + dop(5) + b"\x00\x30\x40"
    offer = b"permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate"
    yield "fuzzed-offer", deflate_setup(round_trip=True, offer=2, server=(True, False, 12, 9)) + pl(offer) + messages


TARGETS = {
    "frame_decoder": frame_decoder_seeds,
    "handshake_request": handshake_request_seeds,
    "handshake_response": handshake_response_seeds,
    "handshake_extensions": handshake_extensions_seeds,
    "send_roundtrip": send_roundtrip_seeds,
    "deflate": deflate_seeds,
}

if __name__ == "__main__":
    for target, seeds in TARGETS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
