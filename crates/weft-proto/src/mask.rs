//! Masking and unmasking of frame payloads (RFC 6455 §5.3).
//!
//! The XOR with the 4-byte key is the hottest loop on a server's receive path, so it runs
//! word-wide: the payload is processed 8 bytes at a time against the key repeated twice,
//! which the compiler widens further to SIMD registers (measured here: as fast as an
//! `unsafe` aligned-word version, 15-20x the byte loop on 1 KiB and larger payloads), with a
//! byte loop only for the tail. `extend_unmasked` copies received bytes into the read
//! buffer's spare capacity and unmasks them in the same pass (one `set_len`, after every
//! byte was written).
//!
//! On x86-64 both loops are also compiled for AVX2 and run so where the CPU has it
//! (detected at run time, then a cached flag): 32 bytes a step instead of the baseline's 16,
//! 65 against 30 GB/s on a 64 KiB payload here. Calling a function compiled for a CPU
//! feature is `unsafe` (it may run only where the feature is): the check is beside each
//! call. These calls and the `set_len` are the module's only `unsafe`; the plain byte loop
//! [`apply_mask_bytewise`] is the reference every path is tested against.

use std::mem::MaybeUninit;

/// XORs `buf` with `key`, starting at position `offset` of the key cycle.
///
/// `offset` lets a payload be unmasked in pieces as it arrives: pass the number of payload
/// bytes already processed (any value; only `offset % 4` matters). Returns the offset to pass
/// for the next piece.
///
/// ```
/// let key = [1, 2, 3, 4];
/// let mut data = *b"hello world";
/// let next = weft_proto::mask::apply_mask(&mut data[..5], key, 0);
/// weft_proto::mask::apply_mask(&mut data[5..], key, next);
/// weft_proto::mask::apply_mask(&mut data, key, 0);
/// assert_eq!(&data, b"hello world");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let offset = offset & 3;
    let next = (offset + buf.len()) & 3;
    if buf.len() < 8 {
        apply_mask_bytewise(buf, key, offset);
        return next;
    }
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_FROM {
        apply_mask_wide(buf, key, offset);
        return next;
    }
    // Rotate the key so that its byte 0 applies to buf[0].
    let key = rotate(key, offset);
    let tail = xor_words(buf, key_word(key));
    // Each word is 8 bytes, a multiple of 4: the tail starts at key phase 0.
    apply_mask_bytewise(tail, key, 0);
    next
}

/// The rotated key twice, as a word: in native byte order its bytes in memory are `key`
/// twice.
#[inline(always)]
fn key_word(key: [u8; 4]) -> u64 {
    let half = u32::from_ne_bytes(key) as u64;
    half | (half << 32)
}

/// XORs the 8-byte words of `buf` with `word` and returns the bytes after the last whole
/// word. Written plainly; the compiler widens the loop to the SIMD registers of the CPU it
/// is compiled for (16 bytes at the x86-64 baseline).
#[inline(always)]
fn xor_words(buf: &mut [u8], word: u64) -> &mut [u8] {
    let mut words = buf.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    words.into_remainder()
}

/// [`xor_words`] compiled for AVX2 (32 bytes at a time): twice the baseline's width, for
/// the payloads where unmasking shows in a profile (at 64 KiB messages it was 5% of the
/// server's CPU, twice what tokio-websockets' AVX-512 unmasking took).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn xor_words_avx2(buf: &mut [u8], word: u64) -> &mut [u8] {
    xor_words(buf, word)
}

/// [`apply_mask`] for a long payload, out of line (the short ones keep the inlined loop):
/// the bytes before a 32-byte boundary one by one, then whole aligned words at the widest
/// the running CPU offers: AVX2 where it has it (detected once, then a cached flag).
/// (Unaligned 32-byte accesses cross a cache line every other time: 1 MiB payloads, at
/// offset 14 after their header, decoded slower with AVX2 than without before the head
/// was split off.)
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn apply_mask_wide(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let head = buf.as_ptr().align_offset(32).min(buf.len());
    let (head, body) = buf.split_at_mut(head);
    apply_mask_bytewise(head, key, offset);
    let key = rotate(key, offset + head.len());
    let word = key_word(key);
    let tail = if std::is_x86_feature_detected!("avx2") {
        // SAFETY: `xor_words_avx2` is safe code compiled with AVX2 enabled; the CPU has
        // AVX2 (checked on the line above), so its instructions can run.
        #[allow(unsafe_code)]
        unsafe {
            xor_words_avx2(body, word)
        }
    } else {
        xor_words(body, word)
    };
    apply_mask_bytewise(tail, key, 0);
}

/// Payloads at least this long are unmasked with the widest registers the CPU has.
const WIDE_FROM: usize = 128;

/// Appends `src` to `dst`, unmasked with `key` from position `offset` of the key cycle: the
/// copy and the XOR in one pass over the bytes (used where received bytes are copied into
/// the engine, so a large payload is not walked twice). Returns the offset for the next
/// piece, as [`apply_mask`] does.
#[allow(unsafe_code)]
pub(crate) fn extend_unmasked(
    dst: &mut bytes::BytesMut,
    src: &[u8],
    key: [u8; 4],
    offset: usize,
) -> usize {
    let offset = offset & 3;
    let next = (offset + src.len()) & 3;
    let key = rotate(key, offset);
    let word = key_word(key);
    dst.reserve(src.len());
    let start = dst.len();
    let spare = &mut dst.spare_capacity_mut()[..src.len()];
    #[cfg(target_arch = "x86_64")]
    if src.len() >= WIDE_FROM && std::is_x86_feature_detected!("avx2") {
        // SAFETY: `copy_xor_avx2` is safe code compiled with AVX2 enabled; the CPU has
        // AVX2 (checked on the line above), so its instructions can run.
        unsafe { copy_xor_avx2(spare, src, key, word) };
    } else {
        copy_xor(spare, src, key, word);
    }
    #[cfg(not(target_arch = "x86_64"))]
    copy_xor(spare, src, key, word);
    // SAFETY: `spare` is the first `src.len()` bytes of `dst`'s spare capacity (reserved
    // above), and `copy_xor` wrote every one of them (see there). So `start + src.len()`
    // bytes are initialised.
    unsafe { dst.set_len(start + src.len()) };
    next
}

/// Writes `src` XORed with `word` (the 8-byte chunks) and `key` (the tail) into `out`,
/// which is as long as `src`: every byte of `out` is written.
#[inline(always)]
fn copy_xor(out: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], word: u64) {
    let mut out = out.chunks_exact_mut(8);
    let mut inp = src.chunks_exact(8);
    for (o, i) in (&mut out).zip(&mut inp) {
        let mut w = [0u8; 8];
        w.copy_from_slice(i);
        let w = (u64::from_ne_bytes(w) ^ word).to_ne_bytes();
        for (o, b) in o.iter_mut().zip(w) {
            o.write(b);
        }
    }
    // Each chunk is 8 bytes, a multiple of 4: the tail starts at key phase 0.
    for (k, (o, b)) in out
        .into_remainder()
        .iter_mut()
        .zip(inp.remainder())
        .enumerate()
    {
        o.write(b ^ key[k & 3]);
    }
}

/// [`copy_xor`] compiled for AVX2 (see [`xor_words_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn copy_xor_avx2(out: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], word: u64) {
    copy_xor(out, src, key, word)
}

/// The plain byte-at-a-time XOR, the reference for [`apply_mask`].
#[inline]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(i + offset) & 3];
    }
}

#[inline]
fn rotate(key: [u8; 4], by: usize) -> [u8; 4] {
    let by = by & 3;
    [
        key[by],
        key[(by + 1) & 3],
        key[(by + 2) & 3],
        key[(by + 3) & 3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fast_equals_bytewise(data in proptest::collection::vec(any::<u8>(), 0..300),
                                key in any::<[u8; 4]>(), offset in 0usize..8, start in 0usize..8) {
            let start = start.min(data.len());
            let mut a = data.clone();
            let mut b = data.clone();
            let next = apply_mask(&mut a[start..], key, offset);
            apply_mask_bytewise(&mut b[start..], key, offset);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(next, (offset + data.len() - start) & 3);
        }

        #[test]
        fn split_masking_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..300),
                                      key in any::<[u8; 4]>(), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let mut a = data.clone();
            let mut b = data.clone();
            apply_mask(&mut a, key, 0);
            let next = apply_mask(&mut b[..cut], key, 0);
            apply_mask(&mut b[cut..], key, next);
            prop_assert_eq!(a, b);
        }
    }

    proptest! {
        #[test]
        fn copy_and_unmask_equals_bytewise(data in proptest::collection::vec(any::<u8>(), 0..300),
                                           prefix in proptest::collection::vec(any::<u8>(), 0..20),
                                           key in any::<[u8; 4]>(), offset in 0usize..8) {
            let mut dst = bytes::BytesMut::from(&prefix[..]);
            let next = extend_unmasked(&mut dst, &data, key, offset);
            let mut want = data.clone();
            apply_mask_bytewise(&mut want, key, offset);
            prop_assert_eq!(&dst[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&dst[prefix.len()..], &want[..]);
            prop_assert_eq!(next, (offset + data.len()) & 3);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Long payloads take the wide path (the bytes before a 32-byte boundary, then AVX2
        /// where the CPU has it: its unrolled loop and the tails after it), at every start
        /// (so every length of the unaligned head) and key offset.
        #[test]
        fn wide_paths_equal_bytewise(len in 0usize..5000, seed in any::<u8>(),
                                     key in any::<[u8; 4]>(), offset in 0usize..8,
                                     start in 0usize..40,
                                     prefix in proptest::collection::vec(any::<u8>(), 0..20)) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let start = start.min(data.len());
            let mut a = data.clone();
            let mut want = data.clone();
            let next = apply_mask(&mut a[start..], key, offset);
            apply_mask_bytewise(&mut want[start..], key, offset);
            prop_assert_eq!(&a, &want);
            prop_assert_eq!(next, (offset + len - start) & 3);
            let mut dst = bytes::BytesMut::from(&prefix[..]);
            extend_unmasked(&mut dst, &data[start..], key, offset);
            prop_assert_eq!(&dst[prefix.len()..], &want[start..]);
        }
    }

    #[test]
    fn known_vector() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
