//! The on-disk store of recordings: time-stamped frames of opaque bytes, crash-safe, bounded in
//! size and age, seekable by time. It does not know what the frames contain.
//!
//! # Layout
//!
//! A recording is either a **directory of segment files** (what a [`Writer`] produces) or a
//! **standalone file** holding one segment (what [`dump`] produces). A segment in a directory is
//! named `segment-<T>.kvmrec`, `<T>` being the unix time in ns of its first frame written as 20
//! decimal digits, so name order is time order; other files in the directory are ignored.
//! [`Reader::open`] reads either form.
//!
//! # Segment file, byte by byte
//!
//! All integers are little-endian. CRC-32 is the common IEEE 802.3 polynomial (zlib's
//! `crc32`, initial value 0). A segment is a 32-byte header followed by frames back to back,
//! up to the end of the file; there is no trailer, so a segment is valid after every frame.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `89 4B 56 4D 52 45 43 0A` (`\x89KVMREC\n`) |
//! | 8 | 2 | format version: 1 |
//! | 10 | 2 | header length: 32 (frames start here) |
//! | 12 | 4 | flags: 0 (none defined; readers ignore them) |
//! | 16 | 8 | unix time in ns of the first frame |
//! | 24 | 4 | reserved: 0 |
//! | 28 | 4 | CRC-32 of bytes 0..28 |
//!
//! A reader skips segments of another version (a change a version 1 reader could misread bumps
//! it) and honours the header length, so fields may be added at the end of the header without
//! a new version. A header whose CRC fails is reported, and frames are searched for anyway.
//!
//! # Frame, byte by byte
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | sync marker `E2 6B 76 46` |
//! | 4 | 8 | wall-clock time, unix ns |
//! | 12 | 2 | kind: a tag chosen by the writer's caller, not interpreted here |
//! | 14 | 2 | flags: bit 0 set = payload is one zstd frame; other bits 0 |
//! | 16 | 4 | stored length S: bytes of payload that follow the header |
//! | 20 | 4 | raw length: bytes of the payload once decompressed (= S if bit 0 is clear) |
//! | 24 | 4 | CRC-32 of the S stored payload bytes |
//! | 28 | 4 | CRC-32 of bytes 0..28 of this header |
//! | 32 | S | stored payload |
//!
//! The next frame starts at offset 32 + S. Both lengths are at most 64 MiB; a header with a
//! larger length, unknown flags, or a raw length different from S while uncompressed is
//! damaged, whatever its CRC says.
//!
//! # Reading
//!
//! Walk the frames from the header length on: read 32 bytes; if the marker and header CRC hold,
//! the frame is intact if its S bytes are all in the file (otherwise the file ends in a **torn
//! tail**: a writer stopped mid-frame, or is writing it right now); skip S bytes to the next
//! frame. If the header does not hold, search byte by byte from the next offset for the marker
//! followed by a header whose CRC holds: the bytes in between are **corrupt** and the frame they
//! held is lost; if none is found the rest of the file is a torn tail. Headers alone give the
//! index (time, segment, offset, kind); the payload CRC is checked when a payload is read, or
//! by [`Reader::verify`] for all.
//!
//! # Writing, and why
//!
//! - Each frame goes to the file in one `pwrite` of header and payload, with nothing buffered
//!   across frames: a writer killed at any instant loses at most the frame it was writing, and
//!   a reader of a live recording sees a consistent prefix with at most a torn tail. atop also
//!   writes a sample in one `writev`, but without a checksum, and its reader stops for good at
//!   the first bad record (Atoptool/atop#34); below checksums every entry (as here) but keeps
//!   them in a separate index file it re-pads after a crash. Here the data is its own index:
//!   nothing to repair, and the marker in every frame lets a reader step over damage.
//! - Frames are flushed with fdatasync at most every [`Config::fsync_interval`] (and at every
//!   segment switch), bounding what power loss costs; neither below nor atop ever fsyncs.
//! - A new writer never touches existing segments: it starts a new one. A damaged file can thus
//!   never stop recording (as a corrupt file stopped atop 2.12 and ttop from starting), and the
//!   torn tail it left stays visible as the mark of where the previous writer died.
//! - Retention deletes whole oldest segments at every segment switch, before the new segment
//!   exists, so the directory never exceeds [`Config::max_total_bytes`]; below checks its limit
//!   only when a 24-hour shard closes, so it can overshoot by a whole shard.
//! - Payloads are compressed one by one with zstd (level 3 by default) so each frame stays
//!   independently readable; tiny or incompressible payloads are stored as they are.

mod dump;
mod error;
pub mod format;
mod reader;
mod scan;
mod writer;

pub use dump::{DumpSummary, dump};
pub use error::{Error, Problem};
pub use reader::{Entry, Frame, Reader, Segment};
pub use writer::{Config, Writer};

/// Unix time in ns of `time` (0 before 1970).
#[must_use]
pub fn unix_ns(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
