//! Appending frames to a recording directory: segment switches, retention, flushing.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions, TryLockError},
    io,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    Error,
    format::{
        FLAG_DELTA, FLAG_ZSTD, FRAME_HEADER_LEN, FrameHeader, KeyRef, MAX_PAYLOAD,
        SEGMENT_HEADER_LEN, encode_segment_header, parse_segment_name, segment_name,
    },
};

/// How a writer bounds and flushes a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A segment is closed before a frame would take it past this size (a lone frame larger than
    /// this still gets a segment of its own).
    pub max_segment_bytes: u64,
    /// A segment is closed once a frame is this much newer than the segment's first frame.
    pub max_segment_duration: Duration,
    /// The whole directory stays within this size: at each segment switch the oldest segments
    /// are deleted until the closed ones plus a full new one fit. At least twice
    /// `max_segment_bytes`.
    pub max_total_bytes: u64,
    /// At each segment switch, segments whose frames are all older than this (measured from the
    /// frame that starts the new segment) are deleted. Data thus lives at most
    /// `max_age + max_segment_duration`.
    pub max_age: Option<Duration>,
    /// Written frames are flushed to the disk (fdatasync) at the first append this long after
    /// the last flush, and when a segment is closed. Power loss loses at most this much.
    pub fsync_interval: Duration,
    /// zstd level for payloads.
    pub compression_level: i32,
    /// Kinds whose frames are compressed against a key frame of the same kind (delta frames):
    /// for frames that repeat most of the previous one, such as periodic snapshots, this makes
    /// them several times smaller. Kinds not listed are compressed each on its own.
    pub delta_kinds: Vec<u16>,
    /// For a kind in `delta_kinds`: one frame in this many is a key frame, compressed on its
    /// own; the ones between are compressed against it. The first frame of a kind in each
    /// segment is a key frame too, so a segment never depends on another, and so is a frame
    /// whose delta would take more than two thirds of its key frame's bytes (the key no longer
    /// looks like the frames); after three such frames in a row, this many frames are
    /// compressed on their own before a key is tried again. Reading a delta frame
    /// reads its key frame as well; damage to a key frame loses the frames compressed against
    /// it (at most `key_frame_interval - 1`). At least 1 (1: no delta frames).
    pub key_frame_interval: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_segment_bytes: 16 << 20,
            max_segment_duration: Duration::from_mins(10),
            max_total_bytes: 256 << 20,
            max_age: None,
            fsync_interval: Duration::from_secs(5),
            compression_level: 3,
            delta_kinds: Vec::new(),
            key_frame_interval: 30,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        let fail = |why: String| Err(Error::Config(why));
        if self.max_segment_bytes < 1024 {
            return fail(format!(
                "segment size {} is below the minimum of 1024 bytes",
                self.max_segment_bytes
            ));
        }
        if self.max_total_bytes < 2 * self.max_segment_bytes {
            return fail(format!(
                "total size {} must be at least twice the segment size {}",
                self.max_total_bytes, self.max_segment_bytes
            ));
        }
        if self.max_segment_duration.is_zero() {
            return fail("segment duration must be above zero".into());
        }
        if self.key_frame_interval == 0 {
            return fail("key frame interval must be at least 1".into());
        }
        if !zstd::compression_level_range().contains(&self.compression_level) {
            return fail(format!(
                "compression level {} is outside {:?}",
                self.compression_level,
                zstd::compression_level_range()
            ));
        }
        Ok(())
    }
}

struct Active {
    file: File,
    path: PathBuf,
    created_ns: u64,
    /// Bytes written, so where the next frame goes.
    len: u64,
}

/// A delta frame whose compressed size exceeds this percentage of its key frame's stored size
/// is written as a new key frame instead. Windows of a steady host take 25–40 % of their key;
/// against a key that no longer resembles them, 85–95 %.
const REKEY_ABOVE_PERCENT: usize = 67;

/// Delta frames in a row that did not resemble their key, after which the frames of their kind
/// are compressed on their own, none of them a key, for `key_frame_interval` frames before a
/// new key is tried. Each such attempt costs a delta compression, then the frame's own, then
/// preparing it as the next key: three times a plain frame's work. Windows of a hundred similar
/// VMs are like that: each already repeats itself a hundred times, and at level 1 a delta
/// against the window before took 81 KB where the window alone took 72–83 KB, so every window of
/// a flight recorder was compressed twice and prepared as a dictionary for nothing. One miss
/// is a recording's small first window; a third in a row means the kind's frames do not repeat
/// their predecessors.
const MISSES_BEFORE_PAUSE: u32 = 3;

/// How delta compression is going for one kind in `delta_kinds`.
struct DeltaOutlook {
    kind: u16,
    /// Delta attempts in a row whose frame did not resemble its key.
    misses: u32,
    /// Frames still to compress on their own before deltas are tried again.
    paused_for: u32,
}

/// The latest key frame of a kind in `delta_kinds`, in the active segment.
struct KeyFrame {
    kind: u16,
    /// Where it is: offset in the active segment, payload checksum.
    at: KeyRef,
    /// Its payload as appended, as the dictionary of the delta frames that follow. Prepared once:
    /// handing zstd the raw payload for every delta frame indexed the whole key again each time
    /// (a window of 100 VMs, 1 MB of JSON, compressed in 2.2–4.8 ms that way, 1.7–3.1 prepared).
    dict: zstd::zstd_safe::CDict<'static>,
    /// Its stored payload's length: what a delta frame is weighed against.
    stored_len: usize,
    /// Frames of its kind written since, itself included.
    frames: u32,
}

/// What a frame is to the delta compression of its kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not of a kind in `delta_kinds`, or compressed against its key frame but stored as it is
    /// because that did not make it smaller.
    Plain,
    /// Compressed on its own, and the dictionary of the frames of its kind that follow.
    Key,
    /// Compressed against the current key frame of its kind.
    Delta,
}

struct Closed {
    path: PathBuf,
    created_ns: u64,
    len: u64,
}

/// Appends frames to a recording directory. One writer per directory (an exclusive lock on the
/// directory enforces it; the kernel releases it when the process dies, however it dies).
///
/// A writer never modifies a segment that exists when it opens: its first frame starts a new
/// segment. A torn or damaged tail left by a crash thus stays as it is, reported by readers as
/// the place the previous writer stopped, and damage of any kind never keeps a writer from
/// recording.
pub struct Writer {
    dir: PathBuf,
    /// The locked directory; also what is fsynced so new segment names survive power loss.
    dir_handle: File,
    config: Config,
    active: Option<Active>,
    /// Closed segments, oldest first, with the bytes they hold in total.
    closed: VecDeque<Closed>,
    closed_bytes: u64,
    /// Creation time of the newest segment: new names must sort after it.
    newest_created_ns: Option<u64>,
    compressor: zstd::bulk::Compressor<'static>,
    /// Key frames of the active segment, one per kind in `delta_kinds` that has one.
    keys: Vec<KeyFrame>,
    /// One per kind in `delta_kinds` that has had a frame.
    outlooks: Vec<DeltaOutlook>,
    /// Delta compressions tried since opening (tests check the pause with it).
    delta_attempts: u64,
    /// The stored payload of the frame being appended.
    stored: Vec<u8>,
    frame: Vec<u8>,
    last_sync: Instant,
    warnings: Vec<Error>,
    /// Bytes of frames written since opening (headers included), for cost reports.
    written: u64,
}

impl Writer {
    /// Opens (creating it if needed) a recording directory for appending.
    pub fn open(dir: &Path, config: Config) -> Result<Self, Error> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating", e))?;
        let dir_handle = File::open(dir).map_err(|e| Error::io(dir, "opening", e))?;
        match dir_handle.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { path: dir.into() }),
            Err(TryLockError::Error(e)) => return Err(Error::io(dir, "locking", e)),
        }
        let mut warnings = Vec::new();
        let mut closed = Vec::new();
        for dirent in fs::read_dir(dir).map_err(|e| Error::io(dir, "listing", e))? {
            let dirent = dirent.map_err(|e| Error::io(dir, "listing", e))?;
            let Some(created_ns) = dirent.file_name().to_str().and_then(parse_segment_name) else {
                continue;
            };
            match dirent.metadata() {
                Ok(meta) => closed.push(Closed {
                    path: dirent.path(),
                    created_ns,
                    len: meta.len(),
                }),
                Err(e) => warnings.push(Error::io(dirent.path(), "reading the size", e)),
            }
        }
        closed.sort_by_key(|c| c.created_ns);
        let compressor = zstd::bulk::Compressor::new(config.compression_level)
            .map_err(|e| Error::io(dir, "setting up compression", e))?;
        Ok(Self {
            dir: dir.into(),
            dir_handle,
            active: None,
            closed_bytes: closed.iter().map(|c| c.len).sum(),
            newest_created_ns: closed.last().map(|c| c.created_ns),
            closed: closed.into(),
            config,
            compressor,
            keys: Vec::new(),
            outlooks: Vec::new(),
            delta_attempts: 0,
            stored: Vec::new(),
            frame: Vec::new(),
            last_sync: Instant::now(),
            warnings,
            written: 0,
        })
    }

    /// Appends one frame: `time_ns` is its wall-clock time (unix ns), `kind` a tag the store
    /// keeps but does not interpret. The frame reaches the file in one write, so a writer killed
    /// at any instant leaves every earlier frame intact. If the write fails (disk full, I/O
    /// error), the frame is not recorded, the error names the file and offset, and the next
    /// frame starts a new segment. A failing periodic flush is returned as an error too; the
    /// frame was written then, but may not survive a power loss.
    pub fn append(&mut self, time_ns: u64, kind: u16, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let (mut flags, mut role) = self.encode(kind, payload)?;
        if let Some(active) = &self.active {
            let frame_len = (FRAME_HEADER_LEN + self.stored.len()) as u64;
            let full = active.len > SEGMENT_HEADER_LEN as u64
                && active.len + frame_len > self.config.max_segment_bytes;
            let age = Duration::from_nanos(time_ns.saturating_sub(active.created_ns));
            if full || age >= self.config.max_segment_duration {
                self.close_active();
                // A segment never depends on another: the key frame stayed behind.
                if role == Role::Delta {
                    (flags, role) = self.encode(kind, payload)?;
                }
            }
        }
        if self.active.is_none() {
            let first_frame = (FRAME_HEADER_LEN + self.stored.len()) as u64;
            self.start_segment(time_ns, first_frame)?;
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "both are at most MAX_PAYLOAD plus the key offset"
        )]
        let header = FrameHeader {
            time_ns,
            kind,
            flags,
            stored_len: self.stored.len() as u32,
            raw_len: payload.len() as u32,
            payload_crc: crc32fast::hash(&self.stored),
        };
        let active = self.active.as_mut().expect("a segment was just started");
        self.frame.clear();
        // The header goes out with the first frame, so a new segment is never left headerless.
        if active.len == 0 {
            self.frame
                .extend_from_slice(&encode_segment_header(active.created_ns));
        }
        self.frame.extend_from_slice(&header.encode());
        self.frame.extend_from_slice(&self.stored);
        if let Err(e) = active.file.write_all_at(&self.frame, active.len) {
            let offset = active.len;
            let error = Error::io_at(&active.path, offset, "writing a frame", e);
            // Cut off whatever part of the frame reached the file, and end the segment: the
            // next frame starts a new one, after retention has run (which may free space),
            // instead of failing again at the same place in a file that cannot grow.
            if active.file.set_len(offset).is_err() {
                // The part stays, a torn frame for readers to step over.
                active.len = active
                    .file
                    .metadata()
                    .map_or(offset + self.frame.len() as u64, |m| m.len());
            }
            self.close_active();
            return Err(error);
        }
        // Where the frame header went: after the segment header if the segment is new.
        let offset = active.len + self.frame.len() as u64 - header.frame_len();
        active.len += self.frame.len() as u64;
        self.written += self.frame.len() as u64;
        match role {
            Role::Key => {
                self.keys.retain(|k| k.kind != kind);
                self.keys.push(KeyFrame {
                    kind,
                    at: KeyRef {
                        offset,
                        payload_crc: header.payload_crc,
                    },
                    dict: zstd::zstd_safe::CDict::create(payload, self.config.compression_level),
                    stored_len: self.stored.len(),
                    frames: 1,
                });
            }
            Role::Delta | Role::Plain => {
                if let Some(key) = self.keys.iter_mut().find(|k| k.kind == kind) {
                    key.frames += 1;
                }
            }
        }
        if self.last_sync.elapsed() >= self.config.fsync_interval {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes every written frame to the disk now.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.last_sync = Instant::now();
        match &self.active {
            Some(active) => active
                .file
                .sync_data()
                .map_err(|e| Error::io(&active.path, "flushing to disk", e)),
            None => Ok(()),
        }
    }

    /// Flushes and closes the recording.
    pub fn close(mut self) -> Result<(), Error> {
        self.sync()
    }

    /// Problems that did not stop recording (a segment retention could not delete, a flush that
    /// failed at a segment switch), since the last call.
    pub fn take_warnings(&mut self) -> Vec<Error> {
        std::mem::take(&mut self.warnings)
    }

    /// The directory recorded into.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes written since opening: frames as stored, with their headers and segment headers.
    #[must_use]
    pub fn written_bytes(&self) -> u64 {
        self.written
    }

    /// Delta compressions tried since opening.
    #[cfg(test)]
    pub(super) fn delta_attempts(&self) -> u64 {
        self.delta_attempts
    }

    /// The delta outlook of `kind`, new on its first frame.
    fn outlook(&mut self, kind: u16) -> &mut DeltaOutlook {
        let at = self
            .outlooks
            .iter()
            .position(|o| o.kind == kind)
            .unwrap_or_else(|| {
                self.outlooks.push(DeltaOutlook {
                    kind,
                    misses: 0,
                    paused_for: 0,
                });
                self.outlooks.len() - 1
            });
        &mut self.outlooks[at]
    }

    /// Whether the frame of `kind` being encoded falls in a pause of its deltas
    /// ([`MISSES_BEFORE_PAUSE`]); counts it against the pause.
    fn delta_paused(&mut self, kind: u16) -> bool {
        let outlook = self.outlook(kind);
        let paused = outlook.paused_for > 0;
        outlook.paused_for = outlook.paused_for.saturating_sub(1);
        paused
    }

    /// Notes whether a delta of `kind` resembled its key; returns whether deltas of the kind
    /// pause from this frame on.
    fn note_delta(&mut self, kind: u16, resembled: bool) -> bool {
        let pause = self.config.key_frame_interval;
        let outlook = self.outlook(kind);
        if resembled {
            outlook.misses = 0;
            return false;
        }
        outlook.misses += 1;
        if outlook.misses < MISSES_BEFORE_PAUSE {
            return false;
        }
        outlook.misses = 0;
        // This frame is the first of the pause.
        outlook.paused_for = pause.saturating_sub(1);
        true
    }

    /// Compresses `payload` into `self.stored`: against the key frame of its kind when one is
    /// due, on its own otherwise. Returns the frame flags and what the frame is to its kind.
    fn encode(&mut self, kind: u16, payload: &[u8]) -> Result<(u16, Role), Error> {
        self.stored.clear();
        let delta_kind = self.config.delta_kinds.contains(&kind);
        let mut paused = delta_kind && self.delta_paused(kind);
        let key = self
            .keys
            .iter()
            .find(|k| k.kind == kind && k.frames < self.config.key_frame_interval);
        if let Some(key) = key.filter(|_| delta_kind && !paused) {
            self.delta_attempts += 1;
            let mut compressed = Vec::with_capacity(zstd::zstd_safe::compress_bound(payload.len()));
            // The key frame's payload is raw content to zstd unless it starts with the magic of
            // a zstd dictionary; the reader hands it to zstd the same way, so either way the
            // frame decompresses. Should zstd refuse it, the frame is compressed on its own.
            let delta = self.compressor.context_mut().compress_using_cdict(
                &mut compressed,
                payload,
                &key.dict,
            );
            // A delta frame that would take most of its key's bytes says the key no
            // longer looks like the frames (the first window of a recording, before advice or
            // a VM's histograms fill in, is often much smaller than the ones that follow). This
            // frame becomes the key instead, so the frames after it compress well again, unless
            // that keeps happening ([`MISSES_BEFORE_PAUSE`]).
            let resembles_key =
                delta.is_ok() && compressed.len() * 100 <= key.stored_len * REKEY_ABOVE_PERCENT;
            let key_ref = key.at.encode();
            paused = self.note_delta(kind, resembles_key);
            if resembles_key {
                self.stored.extend_from_slice(&key_ref);
                if self.stored.len() + compressed.len() < payload.len() {
                    self.stored.extend_from_slice(&compressed);
                    return Ok((FLAG_ZSTD | FLAG_DELTA, Role::Delta));
                }
                self.stored.clear();
                self.stored.extend_from_slice(payload);
                return Ok((0, Role::Plain));
            }
        }
        let compressed = self
            .compressor
            .compress(payload)
            .map_err(|e| Error::io(&self.dir, "compressing a frame", e))?;
        let role = if delta_kind && !paused {
            Role::Key
        } else {
            Role::Plain
        };
        // Tiny or incompressible payloads (events, marks) are stored as they are.
        if compressed.len() < payload.len() {
            self.stored.extend_from_slice(&compressed);
            Ok((FLAG_ZSTD, role))
        } else {
            self.stored.extend_from_slice(payload);
            Ok((0, role))
        }
    }

    fn close_active(&mut self) {
        // Key frames are per segment.
        self.keys.clear();
        let Some(active) = self.active.take() else {
            return;
        };
        // Only a failed first write leaves a segment empty: nothing to keep.
        if active.len == 0 {
            drop(active.file);
            if let Err(e) = fs::remove_file(&active.path) {
                self.warnings
                    .push(Error::io(active.path, "deleting an empty segment", e));
            }
            return;
        }
        if let Err(e) = active.file.sync_data() {
            self.warnings
                .push(Error::io(&active.path, "flushing to disk", e));
        }
        self.closed_bytes += active.len;
        self.closed.push_back(Closed {
            path: active.path,
            created_ns: active.created_ns,
            len: active.len,
        });
    }

    /// Starts a segment whose first frame takes `first_frame` bytes.
    fn start_segment(&mut self, time_ns: u64, first_frame: u64) -> Result<(), Error> {
        // Names must sort in creation order even if the clock was set back.
        let created_ns = match self.newest_created_ns {
            Some(newest) if time_ns <= newest => newest + 1,
            _ => time_ns,
        };
        // A segment ends at its first frame past the size bound, so it grows to the bound or,
        // when its first frame alone is larger, to that frame.
        let largest = self
            .config
            .max_segment_bytes
            .max(SEGMENT_HEADER_LEN as u64 + first_frame);
        self.enforce_retention(created_ns, largest);
        let path = self.dir.join(segment_name(created_ns));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "creating a segment", e))?;
        if let Err(e) = self.dir_handle.sync_all() {
            self.warnings
                .push(Error::io(&self.dir, "flushing the directory", e));
        }
        self.newest_created_ns = Some(created_ns);
        self.active = Some(Active {
            file,
            path,
            created_ns,
            len: 0,
        });
        Ok(())
    }

    /// Deletes the oldest segments until the new segment fits the size bound at its largest
    /// (`new_segment_bytes`) and none is past the age bound. `now_ns` is the creation time of
    /// the segment about to start.
    fn enforce_retention(&mut self, now_ns: u64, new_segment_bytes: u64) {
        let Config {
            max_total_bytes,
            max_age,
            ..
        } = self.config;
        while !self.closed.is_empty() && self.closed_bytes + new_segment_bytes > max_total_bytes {
            self.delete_oldest();
        }
        let Some(max_age) = max_age else { return };
        let cutoff = now_ns.saturating_sub(u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX));
        while !self.closed.is_empty() {
            // A segment's frames all precede the creation of the segment after it.
            let next_created = self.closed.get(1).map_or(now_ns, |next| next.created_ns);
            if next_created > cutoff {
                break;
            }
            self.delete_oldest();
        }
    }

    fn delete_oldest(&mut self) {
        let Some(oldest) = self.closed.pop_front() else {
            return;
        };
        self.closed_bytes -= oldest.len;
        match fs::remove_file(&oldest.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self
                .warnings
                .push(Error::io(oldest.path, "deleting an old segment", e)),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(active) = &self.active {
            // Best effort: `close` is the way to learn whether the flush worked.
            let _ = active.file.sync_data();
        }
    }
}
