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


def handshake_request_seeds():
    yield "minimal", request()
    yield "protocols-extensions", request(
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo; a=\"b c\"\r\n"
        b"Cookie: a=b\r\n")
    yield "trailing-frame", request() + bytes([0x81, 0x85]) + KEY + b"hello"
    yield "wrong-version", request().replace(b"Version: 13", b"Version: 8")
    yield "post", request().replace(b"GET", b"POST")


def response(extra=b"", accept=b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="):
    return (b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n")


def handshake_response_seeds():
    yield "minimal", response()
    yield "protocol", response(b"Sec-WebSocket-Protocol: chat\r\n")
    yield "extension", response(b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n")
    yield "trailing-frame", response() + bytes([0x82, 0x03]) + b"abc"
    yield "wrong-accept", response(accept=b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    yield "not-101", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"


TARGETS = {
    "frame_decoder": frame_decoder_seeds,
    "handshake_request": handshake_request_seeds,
    "handshake_response": handshake_response_seeds,
}

if __name__ == "__main__":
    for target, seeds in TARGETS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
