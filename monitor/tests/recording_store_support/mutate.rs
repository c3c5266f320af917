//! Seeded damage to a recording's bytes, each with the frames it must leave readable.
use std::{iter::once, ops::Range};

/// Damaged bytes and what stays of the original.
pub struct Mutation {
    pub what: &'static str,
    pub bytes: Vec<u8>,
    /// Original byte ranges changed; an empty range marks an insertion point.
    pub touched: Vec<Range<usize>>,
    /// Where original bytes after the last touched range now are, relative to before; `None`
    /// when nothing about the original can be promised (random bytes, splices).
    pub shift: Option<isize>,
}

impl Mutation {
    /// Where an original frame occupying `frame` is after the damage, if the damage spared it.
    pub fn survivor(&self, frame: &Range<usize>) -> Option<usize> {
        let shift = self.shift?;
        let hit = self.touched.iter().any(|t| {
            if t.is_empty() {
                frame.start < t.start && t.start < frame.end
            } else {
                frame.start < t.end && t.start < frame.end
            }
        });
        let after = self.touched.iter().map(|t| t.start).max().unwrap_or(0);
        let new_start = if frame.start >= after {
            frame.start.checked_add_signed(shift)?
        } else {
            frame.start
        };
        (!hit && new_start + frame.len() <= self.bytes.len()).then_some(new_start)
    }
}

/// One of several kinds of damage to `original`, chosen and placed by `rng`; `other` is a
/// second recording for splices.
pub fn mutate(rng: &mut fastrand::Rng, original: &[u8], other: &[u8]) -> Mutation {
    let len = original.len();
    let mut bytes = original.to_vec();
    let pos = |rng: &mut fastrand::Rng| rng.usize(..len.max(1));
    match rng.u8(..9) {
        0 => {
            let mut touched = Vec::new();
            for _ in 0..rng.usize(1..=8) {
                let at = pos(rng);
                bytes[at] ^= 1 << rng.u8(..8);
                touched.push(at..at + 1);
            }
            in_place("bit flips", bytes, touched)
        }
        1 | 2 => {
            let at = pos(rng);
            let end = (at + rng.usize(1..=300)).min(len);
            let zeros = rng.bool();
            for b in &mut bytes[at..end] {
                *b = if zeros { 0 } else { rng.u8(..) };
            }
            in_place("overwritten range", bytes, once(at..end))
        }
        3 => {
            let at = rng.usize(..=len);
            bytes.truncate(at);
            in_place("truncated", bytes, once(at..len))
        }
        4 => {
            let at = rng.usize(..=len);
            let n = rng.usize(1..=100);
            let inserted: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            bytes.splice(at..at, inserted);
            shifted("inserted bytes", bytes, at..at, n.cast_signed())
        }
        5 => {
            let at = pos(rng);
            let end = (at + rng.usize(1..=500)).min(len);
            bytes.drain(at..end);
            shifted("deleted range", bytes, at..end, -(end - at).cast_signed())
        }
        6 => {
            // A copy of one part of the recording over another: whole frames may appear twice.
            let from = pos(rng);
            let n = rng.usize(1..=4000).min(len - from);
            let to = rng.usize(..=len - n);
            let chunk = original[from..from + n].to_vec();
            bytes[to..to + n].copy_from_slice(&chunk);
            in_place("copied range", bytes, once(to..to + n))
        }
        7 => {
            let cut = rng.usize(..=len);
            let other_cut = rng.usize(..=other.len());
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[other_cut..]);
            unknown("splice of two recordings", bytes)
        }
        _ => {
            let n = rng.usize(..4096);
            let mut noise: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            // Half of the time behind an intact segment header, so the frame walk runs on noise.
            if rng.bool() {
                noise.splice(0..0, original[..32.min(len)].iter().copied());
            }
            unknown("random bytes", noise)
        }
    }
}

fn in_place(
    what: &'static str,
    bytes: Vec<u8>,
    touched: impl IntoIterator<Item = Range<usize>>,
) -> Mutation {
    Mutation {
        what,
        bytes,
        touched: touched.into_iter().collect(),
        shift: Some(0),
    }
}

fn shifted(what: &'static str, bytes: Vec<u8>, touched: Range<usize>, by: isize) -> Mutation {
    Mutation {
        what,
        bytes,
        touched: once(touched).collect(),
        shift: Some(by),
    }
}

fn unknown(what: &'static str, bytes: Vec<u8>) -> Mutation {
    Mutation {
        what,
        bytes,
        touched: vec![],
        shift: None,
    }
}
