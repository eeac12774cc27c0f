//! Helpers shared by the fuzz targets: the split-pattern generator and the check that an
//! incremental parser (called again on a growing buffer, as a server reads a socket) agrees
//! with itself and with a parse of the whole input.

use std::fmt::Debug;

/// A small xorshift generator, deterministic from a seed taken from the input.
pub struct Rng(u32);

impl Rng {
    /// A generator for `seed` (any value).
    pub fn new(seed: u32) -> Self {
        Rng(0x9e37_79b9 ^ seed.wrapping_mul(0x0101_0101) | 1)
    }

    /// The next value.
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `1..=max` (`max` at least 1).
    pub fn size(&mut self, max: usize) -> usize {
        1 + (self.next_u32() as usize % max.max(1))
    }
}

/// What one call of an incremental parser said, reduced to what can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `Ok(None)`: the head is incomplete.
    Incomplete,
    /// `Ok(Some((_, consumed)))`.
    Complete(usize),
    /// `Err(e)`, as its `Debug` text.
    Failed(String),
}

impl Step {
    /// Reduces a parser's result, running `check` on a complete value first.
    pub fn of<T, E: Debug>(
        r: &Result<Option<(T, usize)>, E>,
        mut check: impl FnMut(&T, usize),
    ) -> Step {
        match r {
            Ok(None) => Step::Incomplete,
            Ok(Some((v, consumed))) => {
                check(v, *consumed);
                Step::Complete(*consumed)
            }
            Err(e) => Step::Failed(format!("{e:?}")),
        }
    }
}

/// Calls `parse` on growing prefixes of `data` (piece sizes from `rng`, at most `max_piece`)
/// and checks that the answers are consistent: incomplete until the head is complete, then
/// the same `consumed` for every longer buffer; once an error, the same error for every
/// longer buffer; and that the last answer is `whole`, the answer for all of `data`.
pub fn check_incremental(
    data: &[u8],
    whole: &Step,
    rng: &mut Rng,
    max_piece: usize,
    mut parse: impl FnMut(&[u8]) -> Step,
) {
    let mut end = 0;
    let mut prev = Step::Incomplete;
    // The end of the head, and one byte short of it, are the prefixes most worth trying.
    if let Step::Complete(consumed) = whole {
        assert_eq!(
            parse(&data[..*consumed]),
            *whole,
            "the head alone parses differently from the head with what follows it"
        );
        if *consumed > 0 {
            assert_eq!(
                parse(&data[..consumed - 1]),
                Step::Incomplete,
                "complete one byte before the end of the head"
            );
        }
    }
    while end < data.len() {
        end = (end + rng.size(max_piece)).min(data.len());
        let step = parse(&data[..end]);
        match &prev {
            Step::Incomplete => {}
            done => assert_eq!(
                &step,
                done,
                "a longer buffer changed a final answer (at {end} of {} bytes)",
                data.len()
            ),
        }
        prev = step;
    }
    if !data.is_empty() {
        assert_eq!(&prev, whole, "fed in pieces, the parser ends differently");
    }
}

/// The engine under the name `websockd`'s `framing.rs` uses for it (`crate::proto`).
pub use weft_proto as proto;

/// websockd's framing (lines, reads and length-prefixed frames as messages): the daemon's
/// own file, included by path (websockd is a binary crate).
#[path = "../../crates/websockd/src/framing.rs"]
#[allow(dead_code)]
pub mod websockd_framing;
