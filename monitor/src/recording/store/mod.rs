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
//! | 8 | 2 | format version: 2 (1 for segments written before delta frames) |
//! | 10 | 2 | header length: 32 (frames start here) |
//! | 12 | 4 | flags: 0 (none defined; readers ignore them) |
//! | 16 | 8 | unix time in ns of the first frame |
//! | 24 | 4 | reserved: 0 |
//! | 28 | 4 | CRC-32 of bytes 0..28 |
//!
//! A reader skips segments of a version it does not know (a change an older reader could misread
//! bumps it) and honours the header length, so fields may be added at the end of the header
//! without a new version. A header whose CRC fails is reported, and frames are searched for
//! anyway. Version 2 added delta frames (flag bit 1 below); a version 1 reader would count them
//! as damaged headers, so it is told the version instead and skips the segment. Version 1
//! segments are version 2 segments without delta frames and are read as such.
//!
//! # Frame, byte by byte
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | sync marker `E2 6B 76 46` |
//! | 4 | 8 | wall-clock time, unix ns |
//! | 12 | 2 | kind: a tag chosen by the writer's caller, not interpreted here |
//! | 14 | 2 | flags: bit 0 set = payload is one zstd frame; bit 1 set (with bit 0) = delta frame, see below; other bits 0 |
//! | 16 | 4 | stored length S: bytes of payload that follow the header |
//! | 20 | 4 | raw length: bytes of the payload once decompressed (= S if no flag is set) |
//! | 24 | 4 | CRC-32 of the S stored payload bytes |
//! | 28 | 4 | CRC-32 of bytes 0..28 of this header |
//! | 32 | S | stored payload |
//!
//! The next frame starts at offset 32 + S. Both lengths are at most 64 MiB; a header with a
//! larger length, unknown flags (bit 1 without bit 0 included), a raw length different from S
//! while uncompressed, or a delta frame with S below 12 is damaged, whatever its CRC says.
//!
//! # Delta frame: stored payload, byte by byte
//!
//! A **delta frame** (flags 3) is compressed against a **key frame**: an earlier frame of the
//! same kind in the same segment, compressed on its own (flags 1, or 0 if stored as it is).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | segment offset of the key frame's header |
//! | 8 | 4 | the key frame's payload CRC-32 (bytes 24..28 of its header) |
//! | 12 | S − 12 | one zstd frame, compressed with the key frame's raw payload as dictionary |
//!
//! The payload CRC of the delta frame covers all S bytes. The dictionary is the key frame's
//! payload as appended, handed to zstd as is (`ZSTD_compress_usingDict` /
//! `ZSTD_decompress_usingDict`: raw content, unless it starts with the zstd dictionary magic
//! `37 A4 30 EC`, in which case both sides load it as a zstd dictionary). The zstd frame
//! records its content size, which must equal the raw length. The key frame's checksum in the
//! reference means another frame that damage moved to the key frame's offset is never taken
//! for it, and the key frame is found even when damage before it moved it.
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
//! Reading a delta frame reads its key frame too: the indexed frame in the same segment, of the
//! same kind, earlier, not itself a delta frame, with the payload CRC the delta frame names, at
//! the offset it names (one binary search in the index) or, if bytes removed or inserted
//! before it moved it, the nearest such frame before the delta frame. Its payload must pass
//! that CRC. Otherwise the delta frame is lost ([`Error::KeyFrame`], naming both offsets;
//! [`Problem::MissingKeyFrame`] from [`Reader::verify`]), and only it. The index holds nothing
//! more than before.
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
//! - Payloads are compressed with zstd (level 3 unless the writer says otherwise: recordings use
//!   1, see `recording::recorder`); tiny or incompressible payloads are stored as they are.
//!   Most frames are compressed one by one, so each stays independently
//!   readable. Frames of the kinds in [`Config::delta_kinds`] (periodic snapshots, which repeat
//!   most of the one before) are delta frames except one in [`Config::key_frame_interval`]
//!   (default 30), the first of their kind in each segment, and a frame whose delta would take
//!   more than two thirds of its key frame's bytes (the key no longer resembles the frames, as when a
//!   recording's first window is smaller than the ones after it), which are key frames: a frame
//!   thus needs at most one other to be read, a segment needs no other segment (retention
//!   deletes whole segments and never orphans a frame), and damage to a key frame loses at most
//!   the interval's worth of frames. On the fixture snapshot's JSON with every measured number
//!   moving between windows, a delta frame takes 0.43 of a key frame; with a key frame every
//!   30 frames a frame takes 2401 bytes on average, against 2299 with a single key frame per
//!   600 and 5341 with none (`key_frame_interval_measurements` in the tests). A delta frame
//!   that would not be smaller than its payload is stored as it is. Compression against the
//!   previous frame rather than a key frame would be smaller still, but a frame would then
//!   need all the frames back to a key frame to be read. Frames that keep not resembling their
//!   key (three in a row) are compressed on their own for an interval's worth of frames before
//!   a new key is tried: windows of a hundred similar VMs already repeat themselves within each
//!   window, and their deltas were as large as the windows alone, so each was compressed twice
//!   and prepared as the next key for nothing.

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
