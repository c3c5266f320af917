//! Cutting a time range out of a recording into a new standalone recording file.
use std::{
    fs::{self, File},
    io::{self, BufWriter, Write as _},
    ops::RangeBounds,
    path::{Path, PathBuf},
};

use super::{Error, Reader, format::encode_segment_header};

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
    let file = File::create(&partial).map_err(|e| Error::io(&partial, "creating", e))?;
    let mut w = BufWriter::new(file);
    let write_err = |e| Error::io(&partial, "writing", e);
    w.write_all(&encode_segment_header(created_ns))
        .map_err(write_err)?;
    let mut summary = DumpSummary {
        frames: 0,
        bytes: 0,
        skipped: Vec::new(),
    };
    for p in positions {
        let entry = &entries[p];
        match reader.stored_payload(entry) {
            Ok(stored) => {
                w.write_all(&entry.header().encode()).map_err(write_err)?;
                w.write_all(&stored).map_err(write_err)?;
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
