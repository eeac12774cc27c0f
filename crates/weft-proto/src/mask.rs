//! Masking and unmasking of frame payloads (RFC 6455 §5.3).
//!
//! The XOR with the 4-byte key is the hottest loop on a server's receive path, so it runs
//! word-wide: the buffer is processed as aligned `u64` words (which the compiler widens further
//! to SIMD registers), with a byte loop only for the unaligned head and the tail. This is the
//! one place in the crate that uses `unsafe` (for the aligned reinterpretation); the plain byte
//! loop [`apply_mask_bytewise`] is kept as the reference the fast path is tested against.
#![allow(unsafe_code)]

/// XORs `buf` with `key`, starting at position `offset` of the key cycle (0..4).
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
    if buf.len() < 16 {
        apply_mask_bytewise(buf, key, offset);
        return (offset + buf.len()) & 3;
    }
    // Rotate the key so that index 0 of the rotated key applies to buf[0].
    let key = rotate(key, offset);
    // SAFETY: `align_to_mut::<u64>` is sound for u8 -> u64 because every bit pattern is a valid
    // u64 and u8 has no alignment requirement; it hands out the aligned middle as `&mut [u64]`
    // that borrows the same memory exclusively, and the prefix/suffix as `&mut [u8]`.
    let (head, words, tail) = unsafe { buf.align_to_mut::<u64>() };
    apply_mask_bytewise(head, key, 0);
    // The key phase at the first word is head.len() % 4.
    let word_key = rotate(key, head.len());
    let k = u32::from_ne_bytes(word_key) as u64;
    let k = k | (k << 32);
    // In native byte order the bytes of the doubled key appear in memory in the same order as
    // in `word_key` repeated twice, so an XOR of the word is an XOR of each byte with its key.
    for w in words.iter_mut() {
        *w ^= k;
    }
    let tail_phase = (head.len() + words.len() * 8) & 3;
    apply_mask_bytewise(tail, key, tail_phase);
    (offset + buf.len()) & 3
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

    #[test]
    fn known_vector() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
