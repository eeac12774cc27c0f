//! Frames (RFC 6455 §5.2): the opcode, the header codec, and the encoder of whole frames.
//!
//! - [`OpCode`]: the 4-bit frame type and what each value is allowed to do.
//! - [`FrameHeader`]: FIN, RSV1-3, opcode, mask and length; decoded from partial input and
//!   encoded into at most 14 bytes.

mod header;
mod opcode;

pub use header::{FrameHeader, HeaderError, MAX_HEADER_LEN};
pub use opcode::OpCode;
