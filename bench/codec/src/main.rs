//! codec: each library's WebSocket codec in memory, no sockets, beside a memcpy of the same
//! bytes.
//!
//! Decode: masked client frames (built here, a fresh mask key per frame) are read by a
//! server-side endpoint of each library from an in-memory stream that hands out at most
//! 64 KiB per read, as a socket would; every message is received whole and its length
//! summed. Encode: the same messages are sent by a server-side endpoint into an in-memory
//! stream that copies whatever it is given into one reused 64 KiB buffer (the copy a socket
//! write makes); the bytes written must equal the framed size.
//!
//! - weft: `weft_proto::Connection`, `receive` + `poll_event`; `send` + `outgoing().write_to`
//!   whenever 64 KiB are queued.
//! - tungstenite: `WebSocket::from_raw_socket` over the stream, `read`; `write` (it buffers
//!   and writes past its `write_buffer_size`), `flush` at the end.
//! - fastwebsockets: `WebSocket::after_handshake` over the stream, `read_frame`;
//!   `write_frame` (it writes every frame at once, vectored above 1 KiB).
//! - tokio-websockets: `ServerBuilder::serve` over the stream, `next`; `feed` (it writes past
//!   its 8 KiB flush threshold), `flush` at the end.
//! - memcpy: decode copies the wire bytes in the same 64 KiB pieces into one reused buffer;
//!   encode copies the framed bytes' worth of payload into it. memcpy-msg (decode): copies
//!   each message's payload into one reused buffer of the message's size, as any decoder
//!   that hands out a contiguous message must.
//!
//! The async libraries are polled with a no-op waker: the stream is always ready, so every
//! call completes in one poll (no runtime in the way). Each case runs at least `--reps`
//! times and at least `--min-secs`; the best time is reported (the work is deterministic, so
//! other processes on the machine can only add to it). Throughput counts wire bytes
//! (headers and mask keys included). Output: a table, and with `--json` one JSON line per
//! case.

use bytes::{Buf, Bytes};
use std::future::Future;
use std::hint::black_box;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

const PIECE: usize = 64 * 1024;
const LIMIT: usize = 64 << 20;

#[derive(Clone)]
struct Workload {
    name: &'static str,
    text: bool,
    payload: Bytes,
    count: usize,
    /// The messages framed and masked by a client.
    masked: Vec<u8>,
    /// The size of the same messages framed by a server (no mask).
    unmasked_len: usize,
}

fn multibyte_text(len: usize) -> String {
    let chars = ['é', '€', '😀', 'ж', '中', '𝄞', 'ß', 'ऄ'];
    let mut s = String::with_capacity(len);
    for c in chars.iter().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(*c);
    }
    while s.len() < len {
        s.push('a');
    }
    s
}

fn header(out: &mut Vec<u8>, text: bool, len: usize, mask: Option<[u8; 4]>) {
    out.push(0x80 | if text { 1 } else { 2 });
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

fn workload(name: &'static str, text: bool, payload: Bytes, count: usize) -> Workload {
    let mut masked = Vec::new();
    let mut unmasked_len = 0;
    let mut seed = 0x1234_5678u32;
    let mut tmp = Vec::new();
    for _ in 0..count {
        seed = seed.wrapping_mul(0x9e37_79b9).wrapping_add(1);
        let key = seed.to_le_bytes();
        header(&mut masked, text, payload.len(), Some(key));
        masked.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        tmp.clear();
        header(&mut tmp, text, payload.len(), None);
        unmasked_len += tmp.len() + payload.len();
    }
    Workload {
        name,
        text,
        payload,
        count,
        masked,
        unmasked_len,
    }
}

fn workloads() -> Vec<Workload> {
    let ascii: String = (0..1024).map(|i| (b' ' + (i % 95) as u8) as char).collect();
    let utf8 = multibyte_text(1024);
    assert_eq!(utf8.len(), 1024);
    let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        workload(
            "text ascii 1 KiB x 10,000",
            true,
            Bytes::from(ascii),
            10_000,
        ),
        workload("text utf8 1 KiB x 10,000", true, Bytes::from(utf8), 10_000),
        workload("binary 1 MiB x 100", false, Bytes::from(big), 100),
        workload(
            "binary 16 B x 100,000",
            false,
            Bytes::from_static(b"0123456789abcdef"),
            100_000,
        ),
    ]
}

/// The in-memory transport: reads hand out the wire bytes at most 64 KiB at a time (then
/// end of file); writes copy into one reused 64 KiB buffer and count.
struct MemIo<'a> {
    input: &'a [u8],
    pos: usize,
    scratch: Box<[u8]>,
    written: usize,
}

impl<'a> MemIo<'a> {
    fn new(input: &'a [u8]) -> Self {
        MemIo {
            input,
            pos: 0,
            scratch: vec![0u8; PIECE].into_boxed_slice(),
            written: 0,
        }
    }
    fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(PIECE).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        n
    }
    fn write_from(&mut self, buf: &[u8]) -> usize {
        for c in buf.chunks(PIECE) {
            self.scratch[..c.len()].copy_from_slice(c);
        }
        black_box(&self.scratch);
        self.written += buf.len();
        buf.len()
    }
}

impl Read for MemIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_into(buf))
    }
}

impl Write for MemIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.write_from(buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(bufs.iter().map(|b| self.write_from(b)).sum())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for MemIo<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.read_into(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for MemIo<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(self.get_mut().write_from(buf)))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        Poll::Ready(Ok(bufs.iter().map(|b| this.write_from(b)).sum()))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Polls a future that never waits (the stream is always ready) to completion.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("an in-memory future kept waiting");
}

// ---- decode ------------------------------------------------------------------------------

/// Returns (messages, payload bytes).
type Decode = fn(&Workload) -> (usize, usize);

fn decode_memcpy(w: &Workload) -> (usize, usize) {
    let mut dst = vec![0u8; PIECE];
    let mut n = 0;
    for piece in w.masked.chunks(PIECE) {
        dst[..piece.len()].copy_from_slice(piece);
        black_box(&dst);
        n += piece.len();
    }
    (w.count, n - (w.masked.len() - w.count * w.payload.len()))
}

/// The least any decoder must do: copy each message's payload into one buffer of the
/// message's size (reused), from the wire in the same 64 KiB pieces. Beside `memcpy`,
/// whose destination stays one 64 KiB buffer (cache-resident whatever the message size),
/// this is the floor for large messages, which must end up contiguous somewhere.
fn decode_memcpy_msg(w: &Workload) -> (usize, usize) {
    let len = w.payload.len();
    let per = w.masked.len() / w.count;
    let mut dst = vec![0u8; len];
    let mut bytes = 0;
    for wire in w.masked.chunks(per) {
        let payload = &wire[per - len..];
        for (i, c) in payload.chunks(PIECE).enumerate() {
            dst[i * PIECE..i * PIECE + c.len()].copy_from_slice(c);
        }
        black_box(&dst);
        bytes += len;
    }
    (w.count, bytes)
}

fn weft_config() -> weft_proto::Config {
    let mut c = weft_proto::Config::default();
    c.max_frame_size = Some(LIMIT as u64);
    c.max_message_size = Some(LIMIT as u64);
    c
}

fn decode_weft(w: &Workload) -> (usize, usize) {
    use weft_proto::{Connection, Event, Role};
    let mut conn = Connection::new(Role::Server, weft_config());
    let (mut n, mut bytes) = (0, 0);
    for piece in w.masked.chunks(PIECE) {
        conn.receive(piece);
        while let Some(ev) = conn.poll_event().expect("weft decode") {
            if let Event::Message(m) = ev {
                n += 1;
                bytes += m.len();
                black_box(&m);
            }
        }
    }
    (n, bytes)
}

fn tungstenite_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(LIMIT))
        .max_frame_size(Some(LIMIT))
}

fn decode_tungstenite(w: &Workload) -> (usize, usize) {
    use tungstenite::protocol::{Role, WebSocket};
    let mut ws = WebSocket::from_raw_socket(
        MemIo::new(&w.masked),
        Role::Server,
        Some(tungstenite_config()),
    );
    let (mut n, mut bytes) = (0, 0);
    while n < w.count {
        let m = ws.read().expect("tungstenite decode");
        if m.is_text() || m.is_binary() {
            n += 1;
            bytes += m.len();
            black_box(&m);
        }
    }
    (n, bytes)
}

fn decode_fastwebsockets(w: &Workload) -> (usize, usize) {
    use fastwebsockets::{OpCode, Role, WebSocket};
    let mut ws = WebSocket::after_handshake(MemIo::new(&w.masked), Role::Server);
    ws.set_max_message_size(LIMIT);
    let (mut n, mut bytes) = (0, 0);
    while n < w.count {
        let f = now(ws.read_frame()).expect("fastwebsockets decode");
        if matches!(f.opcode, OpCode::Text | OpCode::Binary) {
            assert!(f.fin);
            n += 1;
            bytes += f.payload.len();
            black_box(&f);
        }
    }
    (n, bytes)
}

fn tws_builder() -> tokio_websockets::ServerBuilder {
    tokio_websockets::ServerBuilder::new()
        .config(tokio_websockets::Config::default().frame_size(usize::MAX))
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(LIMIT)))
}

fn decode_tokio_websockets(w: &Workload) -> (usize, usize) {
    use futures_util::StreamExt;
    let mut ws = tws_builder().serve(MemIo::new(&w.masked));
    let (mut n, mut bytes) = (0, 0);
    while n < w.count {
        let m = now(ws.next())
            .expect("tokio-websockets: end of stream")
            .expect("tokio-websockets decode");
        if m.is_text() || m.is_binary() {
            n += 1;
            bytes += m.as_payload().len();
            black_box(&m);
        }
    }
    (n, bytes)
}

// ---- encode ------------------------------------------------------------------------------

/// Returns the bytes written.
type Encode = fn(&Workload, &Prepared) -> usize;

/// Each library's messages, built before the clock starts (sending clones them: a
/// reference count).
struct Prepared {
    weft: weft_proto::Message,
    tungstenite: tungstenite::Message,
    tws: tokio_websockets::Message,
}

fn prepare(w: &Workload) -> Prepared {
    let s = || String::from_utf8(w.payload.to_vec()).unwrap();
    Prepared {
        weft: if w.text {
            weft_proto::Message::from(s())
        } else {
            weft_proto::Message::Binary(w.payload.clone())
        },
        tungstenite: if w.text {
            tungstenite::Message::text(s())
        } else {
            tungstenite::Message::Binary(w.payload.clone())
        },
        tws: if w.text {
            tokio_websockets::Message::text(s())
        } else {
            tokio_websockets::Message::binary(w.payload.clone())
        },
    }
}

fn encode_memcpy(w: &Workload, _: &Prepared) -> usize {
    // The framed bytes' worth, copied from the payload in the same 64 KiB pieces.
    let mut io = MemIo::new(&[]);
    let per = w.unmasked_len / w.count;
    let src = &w.payload[..];
    for _ in 0..w.count {
        io.write_from(src);
        io.written += per - src.len();
    }
    io.written
}

fn encode_weft(w: &Workload, p: &Prepared) -> usize {
    use weft_proto::{Connection, Role};
    let mut conn = Connection::new(Role::Server, weft_config());
    let mut io = MemIo::new(&[]);
    // Through the same `Write` as the peers (each write lands at the start of the scratch
    // buffer), in vectored writes of up to 64 pieces, as weft's drivers write.
    let drain = |conn: &mut Connection, io: &mut MemIo| {
        let out = conn.outgoing();
        let mut slices = [IoSlice::new(&[]); 64];
        while out.has_remaining() {
            let k = out.chunks_vectored(&mut slices);
            let n = io.write_vectored(&slices[..k]).expect("in-memory write");
            slices = [IoSlice::new(&[]); 64];
            out.advance(n);
        }
    };
    for _ in 0..w.count {
        conn.send(p.weft.clone()).expect("weft encode");
        if conn.queued_bytes() >= PIECE {
            drain(&mut conn, &mut io);
        }
    }
    drain(&mut conn, &mut io);
    io.written
}

fn encode_tungstenite(w: &Workload, p: &Prepared) -> usize {
    use tungstenite::protocol::{Role, WebSocket};
    let mut ws =
        WebSocket::from_raw_socket(MemIo::new(&[]), Role::Server, Some(tungstenite_config()));
    for _ in 0..w.count {
        ws.write(p.tungstenite.clone()).expect("tungstenite encode");
    }
    ws.flush().expect("tungstenite flush");
    ws.get_ref().written
}

fn encode_fastwebsockets(w: &Workload, _: &Prepared) -> usize {
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    let mut ws = WebSocket::after_handshake(MemIo::new(&[]), Role::Server);
    let op = if w.text { OpCode::Text } else { OpCode::Binary };
    for _ in 0..w.count {
        let f = Frame::new(true, op, None, Payload::Borrowed(&w.payload));
        now(ws.write_frame(f)).expect("fastwebsockets encode");
    }
    now(ws.flush()).expect("fastwebsockets flush");
    ws.into_inner().written
}

fn encode_tokio_websockets(w: &Workload, p: &Prepared) -> usize {
    use futures_util::SinkExt;
    let mut ws = tws_builder().serve(MemIo::new(&[]));
    for _ in 0..w.count {
        now(ws.feed(p.tws.clone())).expect("tokio-websockets encode");
    }
    now(ws.flush()).expect("tokio-websockets flush");
    ws.get_ref().written
}

// ---- driver ------------------------------------------------------------------------------

struct Opts {
    reps: usize,
    min: Duration,
    json: bool,
    only: Option<String>,
    workload: Option<String>,
    dir: Option<String>,
}

/// Runs `f` at least `reps` times and at least `min`; returns the best time.
fn best<F: FnMut()>(opts: &Opts, mut f: F) -> Duration {
    f(); // warm-up
    let mut best = Duration::MAX;
    let start = Instant::now();
    let mut i = 0;
    while i < opts.reps || start.elapsed() < opts.min {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        i += 1;
    }
    best
}

fn main() {
    let mut opts = Opts {
        reps: 5,
        min: Duration::from_millis(500),
        json: false,
        only: None,
        workload: None,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => opts.reps = it.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--min-secs" => {
                opts.min = Duration::from_secs_f64(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--min-secs S"),
                )
            }
            "--json" => opts.json = true,
            "--only" => opts.only = it.next(),
            "--workload" => opts.workload = it.next(),
            "--dir" => opts.dir = it.next(),
            _ => {
                eprintln!(
                    "flags: [--reps N] [--min-secs S] [--json] [--only LIBRARY] \
                     [--workload SUBSTRING] [--dir decode|encode]"
                );
                std::process::exit(2);
            }
        }
    }
    let decoders: [(&str, Decode); 6] = [
        ("memcpy", decode_memcpy),
        ("memcpy-msg", decode_memcpy_msg),
        ("weft", decode_weft),
        ("tungstenite", decode_tungstenite),
        ("fastwebsockets", decode_fastwebsockets),
        ("tokio-websockets", decode_tokio_websockets),
    ];
    let encoders: [(&str, Encode); 5] = [
        ("memcpy", encode_memcpy),
        ("weft", encode_weft),
        ("tungstenite", encode_tungstenite),
        ("fastwebsockets", encode_fastwebsockets),
        ("tokio-websockets", encode_tokio_websockets),
    ];
    if !opts.json {
        println!(
            "{:<7} {:<27} {:<17} {:>9} {:>14} {:>9}",
            "dir", "workload", "library", "GB/s", "msgs/s", "ms"
        );
    }
    for w in workloads() {
        if opts
            .workload
            .as_deref()
            .is_some_and(|x| !w.name.contains(x))
        {
            continue;
        }
        let prepared = prepare(&w);
        for dir in ["decode", "encode"] {
            if opts.dir.as_deref().is_some_and(|d| d != dir) {
                continue;
            }
            let wire = if dir == "decode" {
                w.masked.len()
            } else {
                w.unmasked_len
            };
            let count = if dir == "decode" {
                decoders.len()
            } else {
                encoders.len()
            };
            for i in 0..count {
                let (lib, t) = if dir == "decode" {
                    let (lib, f) = decoders[i];
                    if opts
                        .only
                        .as_deref()
                        .is_some_and(|o| o != lib && !lib.starts_with("memcpy"))
                    {
                        continue;
                    }
                    // Check once, then time.
                    let (n, bytes) = f(&w);
                    assert_eq!(n, w.count, "{lib} {}: messages", w.name);
                    assert_eq!(bytes, w.count * w.payload.len(), "{lib} {}: bytes", w.name);
                    (
                        lib,
                        best(&opts, || {
                            black_box(f(black_box(&w)));
                        }),
                    )
                } else {
                    let (lib, f) = encoders[i];
                    if opts
                        .only
                        .as_deref()
                        .is_some_and(|o| o != lib && !lib.starts_with("memcpy"))
                    {
                        continue;
                    }
                    let written = f(&w, &prepared);
                    assert_eq!(written, w.unmasked_len, "{lib} {}: bytes written", w.name);
                    (
                        lib,
                        best(&opts, || {
                            black_box(f(black_box(&w), &prepared));
                        }),
                    )
                };
                let secs = t.as_secs_f64();
                let gbps = wire as f64 / secs / 1e9;
                let mps = w.count as f64 / secs;
                if opts.json {
                    println!(
                        "{{\"dir\":\"{dir}\",\"workload\":\"{}\",\"library\":\"{lib}\",\"wire_bytes\":{wire},\"messages\":{},\"best_secs\":{secs:.6},\"gb_per_s\":{gbps:.3},\"msgs_per_s\":{mps:.0}}}",
                        w.name, w.count
                    );
                } else {
                    println!(
                        "{dir:<7} {:<27} {lib:<17} {gbps:>9.3} {mps:>14.0} {:>9.3}",
                        w.name,
                        secs * 1e3
                    );
                }
            }
        }
    }
}
