//! The compressor and decompressor of one connection (flate2 on zlib-rs), with the
//! permessage-deflate framing rules: a sync flush at the end of each message with its
//! `00 00 ff ff` tail removed (RFC 7692 §7.2.1), the tail put back before inflating
//! (§7.2.2), and output bounded so a small frame cannot inflate past a limit (a deflate
//! bomb costs nothing). Each is one deflate stream across messages (context takeover);
//! without context takeover, `PerMessageDeflate` drops it after each message.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with, and what the receiver appends to each message.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses outgoing messages.
pub(crate) struct Deflater {
    c: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor with a window of `bits` (9-15; zlib cannot compress with 8, so a peer
    /// that asks for 8 simply gets uncompressed messages: see `Deflate::can_compress`).
    pub(crate) fn new(level: u32, bits: u8) -> Self {
        Deflater {
            c: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                bits.clamp(9, 15),
            ),
        }
    }

    /// Compresses `data` as part of the current message, appending to `out`. With `end`,
    /// the message ends here: sync flush, tail removed. Without,
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
        }
    }
}

/// The compressed input was not a valid deflate stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// Decompresses incoming messages.
pub(crate) struct Inflater {
    d: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor for a peer whose window is at most `bits`. A larger window decodes
    /// any stream a smaller one made, so 8 (which zlib cannot set) is served by 9.
    pub(crate) fn new(bits: u8) -> Self {
        Inflater {
            d: Decompress::new_with_window_bits(false, bits.clamp(9, 15)),
        }
    }

    /// Inflates from `input` into `out` until `input` is used up or `out` holds `max`
    /// bytes; returns how much of `input` was used. `out` never holds more than `max` bytes
    /// and its capacity never passes `max` by more than 64 KiB, whatever the input: a
    /// deflate bomb cannot make it allocate more. `input` used up with the last step not filled means all the output of
    /// `input` is in `out`.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, Corrupt> {
        let mut used = 0;
        loop {
            let room = max.saturating_sub(out.len());
            if room == 0 {
                return Ok(used);
            }
            // The step follows the input (4x its compressed size) and the output so far
            // (doubling as it fills), between 1 KiB and 64 KiB: the slice handed to zlib is
            // zero-filled first, so a step far larger than the output would cost a memset of
            // memory never used (a 64 KiB step per call cost 19% of the CPU of a 1 KiB
            // compressed echo).
            let pending = input.len() - used;
            let step = room
                .min(64 * 1024)
                .min(pending.saturating_mul(4).max(out.len()).max(1024));
            let before_in = self.d.total_in();
            let before_total_out = self.d.total_out();
            let before_out = out.len();
            if out.capacity() - before_out < step {
                // Doubling (so a large message is not copied over and over), but never
                // past `max`.
                out.reserve_exact(step.max(before_out.min(room)));
            }
            // A slice of exactly `step` bytes: zlib never writes past `max`, whatever spare
            // capacity `out` has.
            out.resize(before_out + step, 0);
            let status = self.d.decompress(
                &input[used..],
                &mut out[before_out..],
                FlushDecompress::Sync,
            );
            let produced = (self.d.total_out() - before_total_out) as usize;
            out.truncate(before_out + produced);
            let status = status.map_err(|_| Corrupt)?;
            let consumed = (self.d.total_in() - before_in) as usize;
            used += consumed;
            let out_full = produced == step;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why `inflate_all` failed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum InflateError {
        /// Invalid data.
        Corrupt,
        /// The output would pass the limit.
        TooBig,
    }

    impl From<Corrupt> for InflateError {
        fn from(_: Corrupt) -> Self {
            InflateError::Corrupt
        }
    }

    impl Inflater {
        /// Inflates all of `input` into `out`; more than `limit` bytes in `out` is
        /// [`InflateError::TooBig`].
        fn inflate_all(
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
    }

    /// Without context takeover, each message gets a fresh compressor and decompressor (as
    /// `PerMessageDeflate` does).
    fn roundtrip(messages: &[Vec<u8>], no_ctx: bool, bits: u8) {
        let mut d = Deflater::new(1, bits);
        let mut i = Inflater::new(bits);
        for m in messages {
            if no_ctx {
                d = Deflater::new(1, bits);
                i = Inflater::new(bits);
            }
            let mut wire = Vec::new();
            d.compress(m, true, &mut wire);
            assert!(!wire.ends_with(&TAIL));
            assert!(!wire.is_empty());
            wire.extend_from_slice(&TAIL);
            let mut out = Vec::new();
            i.inflate_all(&wire, &mut out, usize::MAX / 2)
                .unwrap_or_else(|e| panic!("{e:?}: {} bytes, {bits} bits", m.len()));
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
        let mut d = Deflater::new(6, 15);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.compress(&m, true, &mut a);
        d.compress(&m, true, &mut b);
        assert!(b.len() < a.len(), "{} vs {}", b.len(), a.len());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Deflater::new(6, 15).compress(&m, true, &mut a);
        Deflater::new(6, 15).compress(&m, true, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 16 MiB of zeros compress to ~16 KiB.
        let mut d = Deflater::new(1, 15);
        let mut wire = Vec::new();
        let zeros = vec![0u8; 16 << 20];
        d.compress(&zeros, true, &mut wire);
        drop(zeros);
        assert!(wire.len() < 200_000, "{}", wire.len());
        wire.extend_from_slice(&TAIL);
        let mut i = Inflater::new(15);
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
        let mut i = Inflater::new(15);
        let mut out = Vec::new();
        assert_eq!(
            i.inflate_all(&[0xff, 0xff, 0xff, 0xff, 0x00], &mut out, 1 << 20),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn inflate_never_writes_past_max_even_with_spare_capacity() {
        let mut wire = Vec::new();
        Deflater::new(1, 15).compress(&vec![7u8; 100_000], true, &mut wire);
        wire.extend_from_slice(&TAIL);
        let mut i = Inflater::new(15);
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(b"xyz");
        let used = i.inflate(&wire, &mut out, 1003).unwrap();
        assert_eq!(out.len(), 1003);
        assert!(used < wire.len());
        // The rest follows in later calls, all of it.
        let mut used = used;
        loop {
            let before = out.len();
            used += i.inflate(&wire[used..], &mut out, before + 1000).unwrap();
            assert!(out.len() - before <= 1000);
            if out.len() == before && used == wire.len() {
                break;
            }
        }
        assert_eq!(out.len(), 100_003);
        assert!(out[3..].iter().all(|&b| b == 7));
    }
}
