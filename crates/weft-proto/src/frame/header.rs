//! The frame header codec: decode from partial input, encode into a small array.

use super::OpCode;

/// The longest header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
///
/// ```
/// use weft_proto::frame::{FrameHeader, OpCode};
/// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Text, mask: Some([1, 2, 3, 4]), payload_len: 300 };
/// let mut buf = [0u8; 14];
/// let n = h.encode(&mut buf);
/// assert_eq!(n, 8); // 2 + 2 (16-bit length) + 4 (mask)
/// assert_eq!(FrameHeader::decode(&buf[..n]).unwrap(), Some((h, n)));
/// assert_eq!(FrameHeader::decode(&buf[..n - 1]).unwrap(), None); // needs more input
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final frame of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as bits 2, 1, 0 (so RSV1 is `0b100`).
    pub rsv: u8,
    /// The frame type.
    pub opcode: OpCode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// The payload length (at most 2^63 - 1).
    pub payload_len: u64,
}

/// A header that breaks the framing rules of RFC 6455 §5.2 (each one is close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Opcode 0x3-0x7 or 0xB-0xF.
    ReservedOpcode(u8),
    /// A length encoded in more bytes than it needs (126 for < 126, 127 for < 65536).
    NonMinimalLength,
    /// A 64-bit length with its most significant bit set.
    LengthTooLarge,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            HeaderError::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            HeaderError::LengthTooLarge => f.write_str("64-bit payload length has its top bit set"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// The length of the header that starts with these two bytes.
    #[inline]
    pub fn len_from_first_two(b0: u8, b1: u8) -> usize {
        let _ = b0;
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    /// Decodes a header from the start of `buf`.
    ///
    /// `Ok(None)`: `buf` does not hold a whole header yet. `Ok(Some((header, len)))`: the
    /// header and the number of bytes it took.
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let len = Self::len_from_first_two(b0, b1);
        let Some(buf) = buf.get(..len) else {
            return Ok(None);
        };
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(HeaderError::ReservedOpcode(b0 & 0x0f))?;
        let short = (b1 & 0x7f) as u64;
        let (payload_len, rest) = match short {
            126 => {
                let n = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                if n < 126 {
                    return Err(HeaderError::NonMinimalLength);
                }
                (n, &buf[4..])
            }
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(HeaderError::LengthTooLarge);
                }
                if n <= 0xffff {
                    return Err(HeaderError::NonMinimalLength);
                }
                (n, &buf[10..])
            }
            n => (n, &buf[2..]),
        };
        let mask = if b1 & 0x80 != 0 {
            Some([rest[0], rest[1], rest[2], rest[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv: (b0 >> 4) & 0x07,
                opcode,
                mask,
                payload_len,
            },
            len,
        )))
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// The header as [`encode`](Self::encode) writes it, as the bytes of a little-endian
    /// integer (built in registers: the sender stores it whole, so no narrow stores are read
    /// back wide), and its length.
    #[inline]
    pub(crate) fn encode_word(&self) -> (u128, usize) {
        let b0 = u128::from((self.fin as u8) << 7 | (self.rsv & 7) << 4 | self.opcode.as_u8());
        let mask_bit: u128 = if self.mask.is_some() { 0x80 } else { 0 };
        let (mut w, mut n) = match self.payload_len {
            len @ 0..=125 => (b0 | (mask_bit | u128::from(len)) << 8, 2),
            len @ 126..=0xffff => (
                b0 | (mask_bit | 126) << 8 | u128::from((len as u16).swap_bytes()) << 16,
                4,
            ),
            len => (
                b0 | (mask_bit | 127) << 8 | u128::from((len & (u64::MAX >> 1)).swap_bytes()) << 16,
                10,
            ),
        };
        if let Some(key) = self.mask {
            w |= u128::from(u32::from_le_bytes(key)) << (8 * n);
            n += 4;
        }
        (w, n)
    }

    /// Encodes the header into `out` with minimal length encoding; returns the bytes written.
    ///
    /// A `payload_len` above 2^63 - 1 is clamped by the caller's contract: the senders in
    /// this crate never build one.
    #[inline]
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (self.fin as u8) << 7 | (self.rsv & 7) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&(len & (u64::MAX >> 1)).to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_word_matches_encode() {
        for len in [
            0u64,
            1,
            125,
            126,
            127,
            1024,
            0xffff,
            0x1_0000,
            1 << 40,
            (1 << 63) - 1,
        ] {
            for mask in [None, Some([1, 2, 3, 0xfe])] {
                for (fin, rsv, opcode) in [(true, 0, OpCode::Text), (false, 5, OpCode::Binary)] {
                    let h = FrameHeader {
                        fin,
                        rsv,
                        opcode,
                        mask,
                        payload_len: len,
                    };
                    let mut buf = [0u8; MAX_HEADER_LEN];
                    let n = h.encode(&mut buf);
                    let (w, m) = h.encode_word();
                    assert_eq!(m, n);
                    assert_eq!(&w.to_le_bytes()[..n], &buf[..n]);
                    assert!(w.to_le_bytes()[n..].iter().all(|&b| b == 0));
                }
            }
        }
    }

    fn roundtrip(len: u64, mask: Option<[u8; 4]>) {
        let h = FrameHeader {
            fin: len % 2 == 0,
            rsv: (len % 8) as u8,
            opcode: OpCode::Binary,
            mask,
            payload_len: len,
        };
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut buf);
        assert_eq!(n, h.encoded_len());
        for cut in 0..n {
            assert_eq!(
                FrameHeader::decode(&buf[..cut]),
                Ok(None),
                "len {len} cut {cut}"
            );
        }
        assert_eq!(FrameHeader::decode(&buf[..n]), Ok(Some((h, n))));
    }

    #[test]
    fn lengths_around_the_boundaries() {
        for len in [
            0,
            1,
            124,
            125,
            126,
            127,
            65534,
            65535,
            65536,
            65537,
            u32::MAX as u64,
            (1u64 << 63) - 1,
        ] {
            roundtrip(len, None);
            roundtrip(len, Some([9, 8, 7, 6]));
        }
    }

    #[test]
    fn non_minimal_lengths_rejected() {
        assert_eq!(
            FrameHeader::decode(&[0x82, 126, 0, 125]),
            Err(HeaderError::NonMinimalLength)
        );
        assert!(FrameHeader::decode(&[0x82, 126, 0, 126]).is_ok());
        let mut b = [0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(FrameHeader::decode(&b), Err(HeaderError::NonMinimalLength));
        b[7] = 1;
        assert!(FrameHeader::decode(&b).unwrap().is_some());
    }

    #[test]
    fn top_bit_rejected() {
        let b = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::decode(&b), Err(HeaderError::LengthTooLarge));
    }

    #[test]
    fn reserved_opcodes_rejected() {
        for op in (3..=7).chain(0xb..=0xf) {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(HeaderError::ReservedOpcode(op))
            );
        }
    }
}
