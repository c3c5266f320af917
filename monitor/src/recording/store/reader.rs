//! Opening a recording (directory or standalone file), its index of frames, and reading them.
use std::{
    fs::File,
    io,
    ops::{Bound, RangeBounds},
    path::{Path, PathBuf},
};

use super::{
    Error, Problem,
    format::{FLAG_ZSTD, FRAME_HEADER_LEN, FrameHeader, HeaderCheck, KeyRef, parse_segment_name},
    scan::{self, Scanned, Source},
};

/// A frame as it was appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Wall-clock time the writer was given, unix ns.
    pub time_ns: u64,
    /// The writer's tag; the store does not interpret it.
    pub kind: u16,
    pub payload: Vec<u8>,
}

/// One intact frame in the index: where it is and what its header says. Payloads are read on
/// demand with [`Reader::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub time_ns: u64,
    pub kind: u16,
    /// Position in [`Reader::segments`].
    pub segment: usize,
    /// Offset of the frame header in its segment file.
    pub offset: u64,
    /// Bytes the payload occupies on disk (after compression).
    pub stored_len: u32,
    /// Bytes of the payload as appended.
    pub raw_len: u32,
    flags: u16,
    payload_crc: u32,
}

impl Entry {
    fn new(segment: usize, offset: u64, h: &FrameHeader) -> Self {
        Self {
            time_ns: h.time_ns,
            kind: h.kind,
            segment,
            offset,
            stored_len: h.stored_len,
            raw_len: h.raw_len,
            flags: h.flags,
            payload_crc: h.payload_crc,
        }
    }

    /// Whether the frame is compressed against a key frame: reading it reads that one too.
    #[must_use]
    pub fn is_delta(&self) -> bool {
        self.header().is_delta()
    }

    /// The header this frame was written with.
    pub(super) fn header(&self) -> FrameHeader {
        FrameHeader {
            time_ns: self.time_ns,
            kind: self.kind,
            flags: self.flags,
            stored_len: self.stored_len,
            raw_len: self.raw_len,
            payload_crc: self.payload_crc,
        }
    }
}

/// One segment file of a recording.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    /// Creation time from the segment header, if it is intact.
    pub created_ns: Option<u64>,
    /// Bytes indexed: the file's length when the reader opened it.
    pub len: u64,
    data: Data,
}

#[derive(Debug)]
enum Data {
    /// On disk, opened again for each read: a reader holds no file open, however many segments
    /// a recording has. A segment retention deleted since is an error to read.
    File,
    Bytes(Vec<u8>),
}

impl Segment {
    /// Runs `f` on the segment's bytes, opening its file if it is on disk.
    fn with_source<T>(&self, f: impl FnOnce(&dyn Source) -> io::Result<T>) -> io::Result<T> {
        match &self.data {
            Data::File => f(&File::open(&self.path)?),
            Data::Bytes(bytes) => f(bytes),
        }
    }
}

/// A recording opened for reading: the index of every intact frame, built from frame headers
/// only, and the problems met on the way. Frames appended after opening are not seen; open again
/// to see them. Segment files are opened for each read, not held open; reading a frame of a
/// segment that retention has deleted since fails with its file name.
#[derive(Debug)]
pub struct Reader {
    segments: Vec<Segment>,
    entries: Vec<Entry>,
    problems: Vec<Problem>,
    time_ordered: bool,
}

impl Reader {
    /// Opens a recording directory (its segments in name order; other files are ignored) or a
    /// standalone recording file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "opening", e))?;
        if !meta.is_dir() {
            let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
            let len = file
                .metadata()
                .map_err(|e| Error::io(path, "reading the size", e))?
                .len();
            let scanned = scan::scan(&file, len, path);
            return Self::standalone(path, len, scanned, Data::File);
        }
        let mut names = Vec::new();
        for dirent in std::fs::read_dir(path).map_err(|e| Error::io(path, "listing", e))? {
            let dirent = dirent.map_err(|e| Error::io(path, "listing", e))?;
            if let Some(name) = dirent.file_name().to_str()
                && parse_segment_name(name).is_some()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        let mut reader = Self::empty();
        for name in names {
            let file_path = path.join(name);
            let opened = File::open(&file_path).and_then(|f| Ok((f.metadata()?.len(), f)));
            match opened {
                Ok((len, file)) => {
                    let scanned = scan::scan(&file, len, &file_path);
                    reader.add(file_path, len, scanned, Data::File);
                }
                // Retention deleted it between listing and opening. It deletes oldest first, so
                // the older segments indexed so far are going too: start again after the gap,
                // so the view stays contiguous.
                Err(e) if e.kind() == io::ErrorKind::NotFound => reader = Self::empty(),
                Err(e) => reader.problems.push(Problem::Unreadable {
                    file: file_path,
                    error: e.to_string(),
                }),
            }
        }
        reader.finish();
        Ok(reader)
    }

    /// Reads a standalone recording held in memory; `name` stands for its file in problems and
    /// errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, Error> {
        let (name, len) = (name.into(), bytes.len() as u64);
        let scanned = scan::scan(&bytes, len, &name);
        Self::standalone(&name, len, scanned, Data::Bytes(bytes))
    }

    fn standalone(path: &Path, len: u64, scanned: Scanned, data: Data) -> Result<Self, Error> {
        let mut reader = Self::empty();
        let header = reader.add(path.to_path_buf(), len, scanned, data);
        if header == HeaderCheck::NoMagic && reader.entries.is_empty() {
            return Err(Error::NotARecording {
                path: path.to_path_buf(),
            });
        }
        reader.finish();
        Ok(reader)
    }

    fn empty() -> Self {
        Self {
            segments: Vec::new(),
            entries: Vec::new(),
            problems: Vec::new(),
            time_ordered: true,
        }
    }

    fn add(&mut self, path: PathBuf, len: u64, scanned: Scanned, data: Data) -> HeaderCheck {
        let index = self.segments.len();
        self.entries.extend(
            scanned
                .frames
                .iter()
                .map(|(offset, h)| Entry::new(index, *offset, h)),
        );
        self.problems.extend(scanned.problems);
        let created_ns = match scanned.header {
            HeaderCheck::Valid(h) => Some(h.created_ns),
            _ => None,
        };
        self.segments.push(Segment {
            path,
            created_ns,
            len,
            data,
        });
        scanned.header
    }

    fn finish(&mut self) {
        self.time_ordered = self.entries.is_sorted_by_key(|e| e.time_ns);
    }

    /// Every intact frame, in recording order (segment by segment, in file order).
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Damage found while opening, in recording order, then any [`Self::verify`] found.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Whether frame times never decrease in recording order. When they do (the wall clock was
    /// set back while recording), [`Self::seek`] still returns the first frame in recording order
    /// at or after the time, but a binary search is no longer possible.
    #[must_use]
    pub fn time_ordered(&self) -> bool {
        self.time_ordered
    }

    /// Position of the first frame at or after `time_ns` (the number of frames if none is).
    #[must_use]
    pub fn seek(&self, time_ns: u64) -> usize {
        if self.time_ordered {
            self.entries.partition_point(|e| e.time_ns < time_ns)
        } else {
            self.entries
                .iter()
                .position(|e| e.time_ns >= time_ns)
                .unwrap_or(self.entries.len())
        }
    }

    /// Positions of the frames of one kind, in recording order.
    #[must_use]
    pub fn positions_of_kind(&self, kind: u16) -> impl DoubleEndedIterator<Item = usize> + '_ {
        (0..self.entries.len()).filter(move |&i| self.entries[i].kind == kind)
    }

    /// Positions of the frames whose time is in `times`, in recording order.
    pub fn positions_between(
        &self,
        times: impl RangeBounds<u64>,
    ) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let times = (times.start_bound().cloned(), times.end_bound().cloned());
        (0..self.entries.len()).filter(move |&i| times.contains(&self.entries[i].time_ns))
    }

    /// The frames at `positions`, read and checked one by one as the iterator advances; iterate
    /// backwards with `.rev()`. Positions past the end are left out.
    pub fn frames(
        &self,
        positions: impl RangeBounds<usize>,
    ) -> impl DoubleEndedIterator<Item = Result<Frame, Error>> + ExactSizeIterator + '_ {
        let len = self.entries.len();
        let start = match positions.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match positions.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        };
        (start.min(len)..end.min(len)).map(|i| self.read(i))
    }

    /// Reads the frame at `position`: its payload is checked against its checksum and
    /// decompressed. A delta frame reads its key frame too, checked the same way; if that fails
    /// the error is [`Error::KeyFrame`], naming both offsets.
    pub fn read(&self, position: usize) -> Result<Frame, Error> {
        let entry = self.entry(position)?;
        let stored = self.stored_payload(entry)?;
        let payload = if entry.is_delta() {
            let key = self.key_payload(entry, key_ref(&stored))?;
            decompress_delta(&stored[KeyRef::LEN..], &key, entry.raw_len as usize)
        } else if entry.flags & FLAG_ZSTD == 0 {
            Ok(stored)
        } else {
            decompress(&stored, entry.raw_len as usize)
        }
        .map_err(|reason| Error::Decompress {
            path: self.segments[entry.segment].path.clone(),
            offset: entry.offset,
            reason,
        })?;
        Ok(Frame {
            time_ns: entry.time_ns,
            kind: entry.kind,
            payload,
        })
    }

    /// The position of the key frame the frame at `position` is compressed against, or `None`
    /// if it is compressed on its own. Reads the frame's first bytes (checking its whole payload
    /// against its checksum); fails with [`Error::KeyFrame`] if the key frame is not in the
    /// index.
    pub fn key_frame(&self, position: usize) -> Result<Option<usize>, Error> {
        let entry = self.entry(position)?;
        if !entry.is_delta() {
            return Ok(None);
        }
        let key = key_ref(&self.stored_payload(entry)?);
        Self::key_position(&self.entries, entry, key)
            .map(Some)
            .ok_or_else(|| self.key_error(entry, key.offset, NO_KEY.into()))
    }

    fn entry(&self, position: usize) -> Result<&Entry, Error> {
        self.entries.get(position).ok_or(Error::NoFrame {
            position,
            frames: self.entries.len(),
        })
    }

    /// Where in `entries` (ordered by segment, then offset) the key frame `key` of `delta` is:
    /// an indexed frame of the same kind and segment, before it, compressed on its own, with
    /// the payload checksum `key` names; at the offset `key` names, or, if bytes removed or
    /// inserted before it moved it, the nearest such frame before `delta` (the checksum tells
    /// it apart from other frames).
    fn key_position(entries: &[Entry], delta: &Entry, key: KeyRef) -> Option<usize> {
        let is_key = |e: &Entry| {
            e.segment == delta.segment
                && e.kind == delta.kind
                && e.offset < delta.offset
                && !e.is_delta()
                && e.payload_crc == key.payload_crc
        };
        let by_offset = |e: &Entry| (e.segment, e.offset);
        if let Ok(at) = entries.binary_search_by_key(&(delta.segment, key.offset), by_offset)
            && is_key(&entries[at])
        {
            return Some(at);
        }
        let end = entries.partition_point(|e| by_offset(e) < by_offset(delta));
        entries[..end]
            .iter()
            .rev()
            .take_while(|e| e.segment == delta.segment)
            .position(is_key)
            .map(|back| end - 1 - back)
    }

    /// The raw payload of the key frame of `delta`.
    fn key_payload(&self, delta: &Entry, key: KeyRef) -> Result<Vec<u8>, Error> {
        let key_offset = key.offset;
        let Some(at) = Self::key_position(&self.entries, delta, key) else {
            return Err(self.key_error(delta, key_offset, NO_KEY.into()));
        };
        let key = &self.entries[at];
        // A key frame that fails its checksum is damage, which loses this frame; failing to
        // read the file (retention deleted it since the index was built) is no damage, and is
        // reported as what it is.
        let stored = self.stored_payload(key).map_err(|e| match e {
            Error::Checksum { .. } => {
                self.key_error(delta, key_offset, "fails its checksum".into())
            }
            other => other,
        })?;
        if key.flags & FLAG_ZSTD == 0 {
            return Ok(stored);
        }
        decompress(&stored, key.raw_len as usize).map_err(|reason| {
            self.key_error(delta, key_offset, format!("does not decompress: {reason}"))
        })
    }

    fn key_error(&self, delta: &Entry, key_offset: u64, reason: String) -> Error {
        Error::KeyFrame {
            path: self.segments[delta.segment].path.clone(),
            offset: delta.offset,
            key_offset,
            reason,
        }
    }

    /// The payload bytes as stored on disk, checked against their checksum.
    pub(super) fn stored_payload(&self, entry: &Entry) -> Result<Vec<u8>, Error> {
        let segment = &self.segments[entry.segment];
        let mut stored = vec![0; entry.stored_len as usize];
        segment
            .with_source(|src| src.read_at(&mut stored, entry.offset + FRAME_HEADER_LEN as u64))
            .map_err(|e| Error::io_at(&segment.path, entry.offset, "reading a frame", e))?;
        if crc32fast::hash(&stored) != entry.payload_crc {
            return Err(Error::Checksum {
                path: segment.path.clone(),
                offset: entry.offset,
            });
        }
        Ok(stored)
    }

    /// Checks every payload against its checksum (reading all of the recording, not
    /// decompressing): frames that fail leave the index and become [`Problem::BadPayload`].
    /// Then delta frames whose key frame is no longer in the index leave it too, as
    /// [`Problem::MissingKeyFrame`]. Returns how many frames left the index.
    ///
    /// Frames whose headers were hidden inside a failing frame (bytes removed from its payload
    /// make its length reach over them) are found and indexed.
    pub fn verify(&mut self) -> usize {
        let entries = std::mem::take(&mut self.entries);
        let mut kept = Vec::with_capacity(entries.len());
        let mut failed = 0;
        let mut key_refs = Vec::new();
        for entry in entries {
            let e = match self.stored_payload(&entry) {
                Ok(stored) => {
                    if entry.is_delta() {
                        key_refs.push((entry.segment, entry.offset, key_ref(&stored)));
                    }
                    kept.push(entry);
                    continue;
                }
                Err(e) => e,
            };
            failed += 1;
            let file = self.segments[entry.segment].path.clone();
            self.problems.push(match e {
                Error::Checksum { offset, .. } => {
                    for hidden in self.hidden_in(&entry) {
                        if hidden.is_delta()
                            && let Ok(stored) = self.stored_payload(&hidden)
                        {
                            key_refs.push((hidden.segment, hidden.offset, key_ref(&stored)));
                        }
                        kept.push(hidden);
                    }
                    Problem::BadPayload { file, offset }
                }
                other => Problem::Unreadable {
                    file,
                    error: other.to_string(),
                },
            });
        }
        failed += self.drop_orphans(&mut kept, &key_refs);
        self.entries = kept;
        self.finish();
        failed
    }

    /// Removes from `kept` the delta frames whose key frame is not in it, reporting each.
    fn drop_orphans(&mut self, kept: &mut Vec<Entry>, key_refs: &[(usize, u64, KeyRef)]) -> usize {
        let mut orphans = Vec::new();
        for &(segment, offset, key) in key_refs {
            let Ok(at) = kept.binary_search_by_key(&(segment, offset), |e| (e.segment, e.offset))
            else {
                continue;
            };
            if Self::key_position(kept, &kept[at], key).is_none() {
                orphans.push(at);
                self.problems.push(Problem::MissingKeyFrame {
                    file: self.segments[segment].path.clone(),
                    offset,
                    key_offset: key.offset,
                });
            }
        }
        orphans.sort_unstable();
        for &at in orphans.iter().rev() {
            kept.remove(at);
        }
        orphans.len()
    }

    /// Intact frames inside the stored payload of a frame that failed its checksum.
    fn hidden_in(&self, entry: &Entry) -> Vec<Entry> {
        let segment = &self.segments[entry.segment];
        let start = entry.offset + FRAME_HEADER_LEN as u64;
        let end = (start + u64::from(entry.stored_len)).min(segment.len);
        let (mut frames, mut damage) = (Vec::new(), Vec::new());
        let walked = segment.with_source(|src| {
            scan::walk(src, start, end, &segment.path, &mut frames, &mut damage);
            Ok(())
        });
        if walked.is_err() {
            return Vec::new();
        }
        frames
            .iter()
            .map(|(offset, h)| Entry::new(entry.segment, *offset, h))
            .filter(|e| self.stored_payload(e).is_ok())
            .collect()
    }
}

/// Why a delta frame's key frame was not found.
const NO_KEY: &str = "is not an intact key frame of its kind in the segment";

/// The key frame reference opening the stored payload of a delta frame, which its header
/// guarantees is long enough (a shorter one would name no frame: offset 0 is the segment
/// header).
fn key_ref(stored: &[u8]) -> KeyRef {
    KeyRef::decode(stored).unwrap_or(KeyRef {
        offset: 0,
        payload_crc: 0,
    })
}

/// Decompresses one zstd frame compressed with `key` as its dictionary, which must yield exactly
/// `raw_len` bytes.
fn decompress_delta(stored: &[u8], key: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    thread_local! {
        // Reused for the reason `decompress` gives.
        static CONTEXT: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    // The writer records the size in the zstd frame: checking it first bounds the allocation
    // by what the frame claims, not by a damaged header.
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) if size == raw_len as u64 => {}
        Ok(Some(size)) => {
            return Err(format!(
                "{size} bytes instead of the {raw_len} in the frame header"
            ));
        }
        Ok(None) | Err(_) => return Err("no zstd frame with its size".into()),
    }
    CONTEXT.with_borrow_mut(|context| {
        let context = match context {
            Some(context) => context,
            None => context.insert(
                zstd::zstd_safe::DCtx::try_create()
                    .ok_or("cannot set up decompression (out of memory)")?,
            ),
        };
        let mut payload = Vec::with_capacity(raw_len);
        context
            .decompress_using_dict(&mut payload, stored, key)
            .map_err(|code| zstd::zstd_safe::get_error_name(code).to_owned())?;
        if payload.len() == raw_len {
            Ok(payload)
        } else {
            Err(format!(
                "{} bytes instead of the {raw_len} in the frame header",
                payload.len()
            ))
        }
    })
}

/// Decompresses one zstd frame that must yield exactly `raw_len` bytes.
fn decompress(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    thread_local! {
        // One context per thread, reused: setting one up probes the CPU (cpuid), which costs
        // tens of microseconds in a virtual machine.
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let payload = CONTEXT.with_borrow_mut(|context| {
        let context = match context {
            Some(context) => context,
            None => context.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
        };
        context
            .decompress(stored, raw_len)
            .map_err(|e| e.to_string())
    })?;
    if payload.len() == raw_len {
        Ok(payload)
    } else {
        Err(format!(
            "{} bytes instead of the {raw_len} in the frame header",
            payload.len()
        ))
    }
}
