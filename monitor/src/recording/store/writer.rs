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
        FLAG_ZSTD, FrameHeader, MAX_PAYLOAD, SEGMENT_HEADER_LEN, encode_segment_header,
        parse_segment_name, segment_name,
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
    frame: Vec<u8>,
    last_sync: Instant,
    warnings: Vec<Error>,
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
            frame: Vec::new(),
            last_sync: Instant::now(),
            warnings,
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
        let compressed = self
            .compressor
            .compress(payload)
            .map_err(|e| Error::io(&self.dir, "compressing a frame", e))?;
        // Tiny or incompressible payloads (events, marks) are stored as they are.
        let (flags, stored) = if compressed.len() < payload.len() {
            (FLAG_ZSTD, compressed.as_slice())
        } else {
            (0, payload)
        };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "both are at most MAX_PAYLOAD"
        )]
        let header = FrameHeader {
            time_ns,
            kind,
            flags,
            stored_len: stored.len() as u32,
            raw_len: payload.len() as u32,
            payload_crc: crc32fast::hash(stored),
        };
        if let Some(active) = &self.active {
            let full = active.len > SEGMENT_HEADER_LEN as u64
                && active.len + header.frame_len() > self.config.max_segment_bytes;
            let age = Duration::from_nanos(time_ns.saturating_sub(active.created_ns));
            if full || age >= self.config.max_segment_duration {
                self.close_active();
            }
        }
        if self.active.is_none() {
            self.start_segment(time_ns)?;
        }
        let active = self.active.as_mut().expect("a segment was just started");
        self.frame.clear();
        // The header goes out with the first frame, so a new segment is never left headerless.
        if active.len == 0 {
            self.frame
                .extend_from_slice(&encode_segment_header(active.created_ns));
        }
        self.frame.extend_from_slice(&header.encode());
        self.frame.extend_from_slice(stored);
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
        active.len += self.frame.len() as u64;
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

    fn close_active(&mut self) {
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

    fn start_segment(&mut self, time_ns: u64) -> Result<(), Error> {
        // Names must sort in creation order even if the clock was set back.
        let created_ns = match self.newest_created_ns {
            Some(newest) if time_ns <= newest => newest + 1,
            _ => time_ns,
        };
        self.enforce_retention(created_ns);
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

    /// Deletes the oldest segments until a full new segment fits the size bound and none is past
    /// the age bound. `now_ns` is the creation time of the segment about to start.
    fn enforce_retention(&mut self, now_ns: u64) {
        let Config {
            max_segment_bytes,
            max_total_bytes,
            max_age,
            ..
        } = self.config;
        while !self.closed.is_empty() && self.closed_bytes + max_segment_bytes > max_total_bytes {
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
