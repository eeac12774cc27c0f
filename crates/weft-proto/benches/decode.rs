//! Codec benchmark: how fast a server `Connection` turns received wire bytes into messages,
//! and how fast it frames messages for sending, each beside a `memcpy` of the same bytes.
//!
//! Decode groups measure masked frames as a client sends them (encoded once, up front, by a
//! client `Connection`), fed to a fresh server `Connection` in 64 KiB pieces, as a transport
//! would deliver them, with `poll_event` drained after each piece:
//!
//! - `receive`: the bytes are handed over with `Connection::receive`;
//! - `read_buf`: they are appended to the buffer that `Connection::read_buf` lends;
//! - `memcpy`: the floor, copying the same pieces into one preallocated, reused 64 KiB buffer.
//!
//! Workloads: 10,000 1 KiB text frames (ASCII; multibyte UTF-8), 100 1 MiB binary frames,
//! 100,000 16 B binary frames. Throughput counts wire bytes (headers and mask keys included).
//! The `encode` group sends the same message sets from a server `Connection` and drains
//! `outgoing()` with `write_to` into a reused 64 KiB buffer, beside a `memcpy` of the same
//! payloads into the same buffer (its throughput is counted on the framed bytes too, so the
//! two compare directly).
//!
//! Run: `cargo bench -p weft-proto --bench decode` (a few minutes on 2 cores). Messages per
//! second = messages per iteration / time per iteration.

use bytes::{Buf, Bytes};
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::time::Duration;
use weft_proto::{Config, Connection, Event, Message, RecvLevel, Role};

/// The size of each piece fed to the decoder (one transport read).
const PIECE: usize = 64 * 1024;

/// The largest frame in any workload, with room to spare.
const LIMIT: u64 = 4 << 20;

/// One set of messages and its wire encoding as a client sends it.
struct Workload {
    name: &'static str,
    messages: Vec<Message>,
    /// The messages framed and masked by a client.
    masked: Bytes,
    /// The messages framed by a server (no mask), as the encode group produces them.
    unmasked_len: usize,
}

fn config() -> Config {
    let mut c = Config::default();
    c.max_frame_size = Some(LIMIT);
    c.max_message_size = Some(LIMIT);
    c.recv_level = RecvLevel::Message;
    c
}

/// 1 KiB of text made of 2-, 3- and 4-byte code points, padded to the byte with ASCII.
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

/// Encodes `messages` with a connection of `role` and returns the wire bytes.
fn encode(role: Role, messages: &[Message]) -> Bytes {
    let mut conn = Connection::new(role, config());
    let mut key = 0x1234_5678u32;
    conn.set_mask_source(move || {
        key = key.wrapping_mul(0x9e37_79b9).wrapping_add(1);
        key.to_le_bytes()
    });
    for m in messages {
        conn.send(m.clone()).unwrap();
    }
    let out = conn.outgoing();
    out.copy_to_bytes(out.remaining())
}

fn workload(name: &'static str, messages: Vec<Message>) -> Workload {
    let masked = encode(Role::Client, &messages);
    let unmasked_len = encode(Role::Server, &messages).len();
    // Check once that the decoder reads back exactly what was sent.
    let mut got = 0;
    decode(&masked, false, |m| {
        assert_eq!(m, &messages[got]);
        got += 1;
    });
    assert_eq!(got, messages.len(), "{name}: not every message decoded");
    Workload {
        name,
        messages,
        masked,
        unmasked_len,
    }
}

fn workloads() -> Vec<Workload> {
    let ascii: String = (0..1024).map(|i| (b' ' + (i % 95) as u8) as char).collect();
    let utf8 = multibyte_text(1024);
    assert_eq!(utf8.len(), 1024);
    let big = Bytes::from(
        (0..1 << 20)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let small = Bytes::from_static(b"0123456789abcdef");
    vec![
        workload("text_ascii_1KiB_x10k", vec![Message::from(ascii); 10_000]),
        workload("text_utf8_1KiB_x10k", vec![Message::from(utf8); 10_000]),
        workload("binary_1MiB_x100", vec![Message::Binary(big); 100]),
        workload("binary_16B_x100k", vec![Message::Binary(small); 100_000]),
    ]
}

/// Feeds `wire` to a fresh server connection in `PIECE`-sized pieces, calling `each` for every
/// message, and returns the number of messages.
fn decode(wire: &[u8], via_read_buf: bool, mut each: impl FnMut(&Message)) -> usize {
    let mut conn = Connection::new(Role::Server, config());
    let mut n = 0;
    for piece in wire.chunks(PIECE) {
        if via_read_buf {
            conn.read_buf().extend_from_slice(piece);
        } else {
            conn.receive(piece);
        }
        while let Some(event) = conn.poll_event().unwrap() {
            if let Event::Message(m) = event {
                each(&m);
                n += 1;
            }
        }
    }
    n
}

/// Decodes and touches every message: the sum of their lengths.
fn decode_sum(wire: &[u8], via_read_buf: bool) -> usize {
    let mut total = 0;
    decode(wire, via_read_buf, |m| total += m.len());
    total
}

/// The floor: the same bytes copied in the same pieces into one reused buffer.
fn memcpy(wire: &[u8], dst: &mut [u8]) -> usize {
    let mut sum = 0;
    for piece in wire.chunks(PIECE) {
        let d = &mut dst[..piece.len()];
        d.copy_from_slice(piece);
        sum += black_box(&*d)[0] as usize;
    }
    sum
}

/// The floor for encoding: every message's payload copied into one reused `PIECE`-sized
/// buffer, filled and wrapped around as a transport's write buffer would be. The payloads are
/// the sources the engine copies from (the same `Bytes` again and again, as cache-warm as for
/// the engine), which a copy of a pre-encoded wire would not be.
fn memcpy_payloads(messages: &[Message], dst: &mut [u8]) -> usize {
    let mut at = 0;
    let mut total = 0;
    for m in messages {
        let mut src = &m.payload()[..];
        while !src.is_empty() {
            if at == dst.len() {
                black_box(&*dst);
                at = 0;
            }
            let n = src.len().min(dst.len() - at);
            dst[at..at + n].copy_from_slice(&src[..n]);
            at += n;
            src = &src[n..];
        }
        total += m.len();
    }
    black_box(&*dst);
    total
}

/// Sends every message from a server connection, writing `outgoing()` out in `PIECE`-sized
/// writes whenever a piece's worth is queued, as a transport would.
fn encode_drain(messages: &[Message], dst: &mut [u8]) -> usize {
    let mut conn = Connection::new(Role::Server, config());
    let mut written = 0;
    for m in messages {
        conn.send(m.clone()).unwrap();
        while conn.queued_bytes() >= dst.len() {
            written += conn.outgoing().write_to(dst);
        }
    }
    while conn.want_write() {
        written += conn.outgoing().write_to(dst);
    }
    black_box(&dst[0]);
    written
}

fn bench_decode(c: &mut Criterion, w: &Workload) {
    let mut group = c.benchmark_group(format!("decode/{}", w.name));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(w.masked.len() as u64));
    let payload: usize = w.messages.iter().map(Message::len).sum();
    group.bench_function("receive", |b| {
        b.iter(|| assert_eq!(decode_sum(black_box(&w.masked), false), payload))
    });
    group.bench_function("read_buf", |b| {
        b.iter(|| assert_eq!(decode_sum(black_box(&w.masked), true), payload))
    });
    let mut dst = vec![0u8; PIECE];
    group.bench_function("memcpy", |b| {
        b.iter(|| memcpy(black_box(&w.masked), &mut dst))
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion, workloads: &[Workload]) {
    let mut group = c.benchmark_group("encode");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    let mut dst = vec![0u8; PIECE];
    for w in workloads {
        group.throughput(Throughput::Bytes(w.unmasked_len as u64));
        group.bench_with_input(BenchmarkId::new("send", w.name), w, |b, w| {
            b.iter(|| assert_eq!(encode_drain(&w.messages, &mut dst), w.unmasked_len))
        });
        group.bench_with_input(BenchmarkId::new("memcpy", w.name), w, |b, w| {
            b.iter(|| memcpy_payloads(black_box(&w.messages), &mut dst))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let workloads = workloads();
    for w in &workloads {
        bench_decode(c, w);
    }
    bench_encode(c, &workloads);
}

criterion_group!(decode_benches, benches);
criterion_main!(decode_benches);
