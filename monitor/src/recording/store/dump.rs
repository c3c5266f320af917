//! Cutting a time range out of a recording into a new standalone recording file.
use std::{
    fs::{self, File},
    io::{self, BufWriter, Write as _},
    ops::RangeBounds,
    path::{Path, PathBuf},
};

use super::{
    Error, Reader,
    format::{FLAG_ZSTD, FrameHeader, encode_segment_header},
};

/// What [`dump`] wrote.
#[derive(Debug)]
pub struct DumpSummary {
    pub frames: usize,
    /// Size of the new file.
    pub bytes: u64,
    /// Frames in the range that failed their checksum or could not be read, left out.
    pub skipped: Vec<Error>,
}

/// Copies the frames of `reader` whose time is in `times` into a new standalone recording at
/// `out` (one segment, readable by [`Reader::open`] on its own). Each payload is checked against
/// its checksum before it is copied; frames that fail are left out and listed. The file appears
/// under its name only once complete and flushed, so a crash leaves at most a `.partial` file
/// beside it. An existing `out` is never overwritten.
///
/// A delta frame whose key frame is in the range is copied as it is, pointing at the copy of
/// its key frame; one whose key frame is before the range is decompressed and stored
/// compressed on its own, so the new file depends on nothing else.
pub fn dump(
    reader: &Reader,
    times: impl RangeBounds<u64>,
    out: &Path,
) -> Result<DumpSummary, Error> {
    if out.exists() {
        return Err(Error::Exists { path: out.into() });
    }
    let partial = partial_path(out)?;
    let positions: Vec<usize> = reader.positions_between(times).collect();
    let entries = reader.entries();
    let created_ns = positions.first().map_or(0, |&p| entries[p].time_ns);
    // A new file, never one that is there (another dump of the same name under way, or a link
    // someone put in its place: O_EXCL refuses a link too): either is reported as the name being
    // taken.
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
    }
    .map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::Exists {
            path: partial.clone(),
        },
        _ => Error::io(&partial, "creating", e),
    })?;
    let mut w = BufWriter::new(file);
    let write_err = |e| Error::io(&partial, "writing", e);
    w.write_all(&encode_segment_header(created_ns))
        .map_err(write_err)?;
    let mut summary = DumpSummary {
        frames: 0,
        bytes: 0,
        skipped: Vec::new(),
    };
    // Where the frames copied so far went in the new file, by position in `reader`.
    let mut copied: Vec<(usize, u64)> = Vec::new();
    let mut at = encode_segment_header(created_ns).len() as u64;
    for p in positions {
        let entry = &entries[p];
        let frame = reader.stored_payload(entry).and_then(|stored| {
            let mut header = entry.header();
            if !entry.is_delta() {
                return Ok((header, stored));
            }
            let key = reader.key_frame(p)?.expect("a delta frame has a key frame");
            if let Ok(i) = copied.binary_search_by_key(&key, |&(p, _)| p) {
                let mut stored = stored;
                // The key frame is copied as it is: only its offset changes.
                stored[..8].copy_from_slice(&copied[i].1.to_le_bytes());
                header.payload_crc = crc32fast::hash(&stored);
                return Ok((header, stored));
            }
            standalone(reader, p)
        });
        match frame {
            Ok((header, stored)) => {
                w.write_all(&header.encode()).map_err(write_err)?;
                w.write_all(&stored).map_err(write_err)?;
                copied.push((p, at));
                at += header.frame_len();
                summary.frames += 1;
            }
            Err(e) => summary.skipped.push(e),
        }
    }
    let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io(&partial, "flushing to disk", e))?;
    summary.bytes = file
        .metadata()
        .map_err(|e| Error::io(&partial, "reading the size", e))?
        .len();
    // A hard link, unlike a rename, fails rather than replace a file that appeared meanwhile.
    let linked = fs::hard_link(&partial, out);
    let _ = fs::remove_file(&partial);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists { path: out.into() });
        }
        Err(e) => return Err(Error::io(out, "creating", e)),
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(parent.unwrap_or(Path::new(".")))
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(out, "flushing the directory entry", e))?;
    Ok(summary)
}

/// The frame at `position`, read whole and compressed on its own.
fn standalone(reader: &Reader, position: usize) -> Result<(FrameHeader, Vec<u8>), Error> {
    let entry = &reader.entries()[position];
    let frame = reader.read(position)?;
    let path = &reader.segments()[entry.segment].path;
    let compressed = zstd::bulk::compress(&frame.payload, zstd::DEFAULT_COMPRESSION_LEVEL)
        .map_err(|e| Error::io_at(path, entry.offset, "compressing a frame", e))?;
    let (flags, stored) = if compressed.len() < frame.payload.len() {
        (FLAG_ZSTD, compressed)
    } else {
        (0, frame.payload)
    };
    #[expect(clippy::cast_possible_truncation, reason = "at most MAX_PAYLOAD")]
    let header = FrameHeader {
        flags,
        stored_len: stored.len() as u32,
        payload_crc: crc32fast::hash(&stored),
        ..entry.header()
    };
    Ok((header, stored))
}

fn partial_path(out: &Path) -> Result<PathBuf, Error> {
    let Some(name) = out.file_name() else {
        return Err(Error::io(
            out,
            "creating",
            io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        ));
    };
    let mut name = name.to_os_string();
    name.push(".partial");
    Ok(out.with_file_name(name))
}
