//! The compressor and decompressor of one connection (flate2 on zlib-rs), with the
//! permessage-deflate framing rules: a sync flush at the end of each message with its
//! `00 00 ff ff` tail removed (RFC 7692 §7.2.1), the tail put back before inflating
//! (§7.2.2), contexts reset per message when no context takeover was negotiated, and output
//! bounded so a small frame cannot inflate past a limit (a deflate bomb costs nothing).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with, and what the receiver appends to each message.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses outgoing messages.
pub(crate) struct Deflater {
    c: Compress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor with a window of `bits` (9-15; zlib cannot compress with 8, so a peer
    /// that asks for 8 simply gets uncompressed messages: see `Deflate::can_compress`).
    pub(crate) fn new(level: u32, bits: u8, no_context_takeover: bool) -> Self {
        Deflater {
            c: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                bits.clamp(9, 15),
            ),
            reset_each_message: no_context_takeover,
        }
    }

    /// Compresses `data` as part of the current message, appending to `out`. With `end`,
    /// the message ends here: sync flush, tail removed, context reset if asked. Without,
    /// a sync flush still makes all of `data` decodable by the peer now (streaming).
    pub(crate) fn compress(&mut self, data: &[u8], end: bool, out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(input.len() / 2 + 1024);
            }
            let before_in = self.c.total_in();
            let before_out = out.len();
            // An error means a misuse of zlib's state machine, which this never does.
            if self
                .c
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            let consumed = (self.c.total_in() - before_in) as usize;
            input = &input[consumed..];
            // The sync flush is complete once all input is taken and zlib left room.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if consumed == 0 && out.len() == before_out && out.len() < out.capacity() {
                break;
            }
        }
        if end {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if out.len() == start {
                // Nothing new to flush (an empty message, or an empty last frame after a
                // flushed one): one 0x00 makes the receiver's appended tail an empty stored
                // block (RFC 7692 §7.2.3.6).
                out.push(0);
            }
            if self.reset_each_message {
                self.c.reset();
            }
        }
    }
}

/// The compressed input was not a valid deflate stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// Invalid data.
    Corrupt,
    /// The output would pass the limit.
    TooBig,
}

/// Decompresses incoming messages.
pub(crate) struct Inflater {
    d: Decompress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor for a peer whose window is at most `bits`. A larger window decodes
    /// any stream a smaller one made, so 8 (which zlib cannot set) is served by 9.
    pub(crate) fn new(bits: u8, no_context_takeover: bool) -> Self {
        Inflater {
            d: Decompress::new_with_window_bits(false, bits.clamp(9, 15)),
            reset_each_message: no_context_takeover,
        }
    }

    /// Inflates from `input` into `out` until `input` is used up or `out` holds `max`
    /// bytes; returns how much of `input` was used. `out` grows by at most `max` plus one
    /// step (64 KiB), whatever the input: a deflate bomb cannot make it allocate more.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, InflateError> {
        let mut used = 0;
        loop {
            let room = max.saturating_sub(out.len());
            if room == 0 {
                return Ok(used);
            }
            let step = room.min(64 * 1024);
            if out.capacity() - out.len() < step {
                out.reserve_exact(step);
            }
            let before_in = self.d.total_in();
            let before_out = out.len();
            let status = self
                .d
                .decompress_vec(&input[used..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (self.d.total_in() - before_in) as usize;
            used += consumed;
            let produced = out.len() - before_out;
            let out_full = out.len() == out.capacity();
            if status == Status::StreamEnd {
                // A final block ends the deflate stream; a new one starts for what follows.
                self.d.reset(false);
                if used == input.len() {
                    return Ok(used);
                }
                continue;
            }
            // Done with this input, or no progress possible (the caller sees `used` short).
            if (used == input.len() && !out_full) || (consumed == 0 && produced == 0) {
                return Ok(used);
            }
        }
    }

    /// Inflates all of `input` into `out`; more than `limit` bytes in `out` is
    /// [`InflateError::TooBig`].
    pub(crate) fn inflate_all(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let mut used = 0;
        loop {
            let before = (used, out.len());
            used += self.inflate(&input[used..], out, limit.saturating_add(1))?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if (used, out.len()) == before && used < input.len() {
                // zlib takes no more of this input: it is not a deflate stream.
                return Err(InflateError::Corrupt);
            }
            if used == input.len() {
                // Drain what zlib still holds for this input.
                let before = out.len();
                self.inflate(&[], out, limit.saturating_add(1))?;
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                if out.len() == before {
                    return Ok(());
                }
            }
        }
    }

    /// The message ended: resets the context if no context takeover was negotiated.
    pub(crate) fn end_message(&mut self) {
        if self.reset_each_message {
            self.d.reset(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(messages: &[Vec<u8>], no_ctx: bool, bits: u8) {
        let mut d = Deflater::new(1, bits, no_ctx);
        let mut i = Inflater::new(bits, no_ctx);
        for m in messages {
            let mut wire = Vec::new();
            d.compress(m, true, &mut wire);
            assert!(!wire.ends_with(&TAIL));
            assert!(!wire.is_empty());
            wire.extend_from_slice(&TAIL);
            let mut out = Vec::new();
            i.inflate_all(&wire, &mut out, usize::MAX / 2)
                .unwrap_or_else(|e| panic!("{e:?}: {} bytes, {bits} bits", m.len()));
            i.end_message();
            assert_eq!(&out, m);
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        let msgs: Vec<Vec<u8>> = vec![
            b"hello hello hello hello".to_vec(),
            Vec::new(),
            (0..100_000u32).map(|i| (i % 7) as u8).collect(),
            b"hello hello hello hello".to_vec(),
        ];
        for bits in [9, 12, 15] {
            roundtrip(&msgs, false, bits);
            roundtrip(&msgs, true, bits);
        }
    }

    #[test]
    fn context_takeover_makes_repeats_smaller() {
        let m = b"a sentence that repeats, a sentence that repeats, once more".to_vec();
        let mut d = Deflater::new(6, 15, false);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.compress(&m, true, &mut a);
        d.compress(&m, true, &mut b);
        assert!(b.len() < a.len(), "{} vs {}", b.len(), a.len());
        let mut d = Deflater::new(6, 15, true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.compress(&m, true, &mut a);
        d.compress(&m, true, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 16 MiB of zeros compress to ~16 KiB.
        let mut d = Deflater::new(1, 15, false);
        let mut wire = Vec::new();
        let zeros = vec![0u8; 16 << 20];
        d.compress(&zeros, true, &mut wire);
        drop(zeros);
        assert!(wire.len() < 200_000, "{}", wire.len());
        wire.extend_from_slice(&TAIL);
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            i.inflate_all(&wire, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        // It never held much more than the limit.
        assert!(
            out.capacity() <= (1 << 20) + 128 * 1024,
            "{}",
            out.capacity()
        );
    }

    #[test]
    fn garbage_is_refused() {
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            i.inflate_all(&[0xff, 0xff, 0xff, 0xff, 0x00], &mut out, 1 << 20),
            Err(InflateError::Corrupt)
        );
    }
}
