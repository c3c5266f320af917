//! The flight recorder: `kvmtop serve` and the live view keep the last minutes of windows in a
//! bounded ring of segments on disk, and cut it into a standalone recording on demand (SIGUSR1,
//! a key, `kvmtop dump-flight`), so the onset of a problem is still there when someone looks.
//!
//! The ring is an ordinary recording directory ([`super::store`]) whose retention is the window
//! length: segments last a twentieth of the window each, and retention runs at every segment
//! switch, so the ring reaches back at most two segments (a tenth of the window) beyond the
//! window: the segment the cut falls in, and one segment's time until the next switch. It never
//! takes more than its size bound.
//!
//! Disk writes never hold up the sampler: every window is handed to a thread of its own, which
//! encodes, compresses and writes it. The sampler only clones the snapshot and queues it; when
//! [`MAX_QUEUED`] windows wait already (a slow or full disk), the window is left out of the ring
//! and counted, and the live view and the metrics carry on as if nothing were recorded.

use std::{
    fs,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, SystemTime},
};

use super::{
    recorder::Recorder,
    store::{self, Reader, unix_ns},
};
use crate::model::{Snapshot, Untrusted};

/// Where `kvmtop serve` keeps its ring unless told otherwise (systemd's `StateDirectory=kvmtop`).
pub const SERVE_DIR: &str = "/var/lib/kvmtop/flight";
/// Where the live view keeps its own. Not under the service's state directory: under systemd
/// that belongs to the service's unprivileged user, and a live view run as root must not write
/// where that user can put links. Its dumps go to `/var/lib/kvmtop-live/dumps`.
pub const LIVE_DIR: &str = "/var/lib/kvmtop-live/flight";
/// How much the ring keeps unless told otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_mins(15);
/// The ring's size bound unless told otherwise: 15 minutes of 100 VMs at 1 s take about 73 MB
/// (about 810 bytes per VM-second, measured on windows of 100 small VMMs).
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
/// Segments per window: the ring overshoots the window by at most two of them.
const SEGMENTS_PER_WINDOW: u32 = 20;
/// Windows waiting for the disk beyond which new ones are left out of the ring.
pub const MAX_QUEUED: usize = 8;
/// Dumps kept in [`Config::dumps_dir`]: each new one deletes the oldest beyond this count, so
/// dumps asked for again and again (a signal in a loop, a held key) take at most this many times
/// the ring's size bound. `kvmtop dump-flight` moves its dump out, so it does not count.
pub const KEPT_DUMPS: usize = 8;
/// How long a dump asked for over the control socket may take.
pub const DUMP_TIMEOUT: Duration = Duration::from_mins(1);

/// What the ring keeps and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub dir: PathBuf,
    /// How far back the ring reaches, and what a dump covers.
    pub window: Duration,
    /// Bound on the whole ring directory.
    pub max_size: u64,
}

impl Config {
    /// The store settings of the ring: segments of a twentieth of the window and a sixteenth of
    /// the size bound, deleted once older than the window.
    #[must_use]
    pub fn store(&self) -> store::Config {
        store::Config {
            max_segment_bytes: (self.max_size / 16).max(1024),
            max_segment_duration: (self.window / SEGMENTS_PER_WINDOW).max(Duration::from_secs(1)),
            max_total_bytes: self.max_size,
            max_age: Some(self.window),
            ..store::Config::default()
        }
    }

    /// Where dumps go: `dumps/` beside the ring directory.
    #[must_use]
    pub fn dumps_dir(&self) -> PathBuf {
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        parent.join("dumps")
    }
}

/// Where the recorder thread says that the disk started or stopped failing: stderr for `serve`,
/// the bottom line of the live view (never over its table).
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

/// What the recorder thread is asked to do.
enum Message {
    Window(Arc<Snapshot>),
    Mark(Untrusted),
    Dump(mpsc::Sender<Result<PathBuf, String>>),
    /// Write what is queued, sync it to disk, answer and stop.
    Finish(mpsc::Sender<Result<(), String>>),
}

/// A running flight recorder. Cheap to clone: every clone feeds the same thread, which stops
/// once the last clone is dropped.
#[derive(Clone)]
pub struct Flight {
    tx: mpsc::Sender<Message>,
    queued: Arc<AtomicUsize>,
    /// Windows left out because the disk was behind.
    dropped: Arc<AtomicU64>,
    config: Arc<Config>,
}

impl Flight {
    /// Opens the ring and starts its thread. Fails, before anything is written, when the
    /// directory cannot be created or written, or another kvmtop records into it.
    pub fn start(config: Config, say: Say) -> Result<Self, store::Error> {
        let store_config = config.store();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)
            .map_err(|e| io_error(&config.dir, "creating", e))?;
        // The store creates segments only when the first window comes; a directory that cannot
        // take them is refused now, while there is someone to tell.
        writable(&config.dir).map_err(|e| io_error(&config.dir, "writing into", e))?;
        let recorder = Recorder::open(&config.dir, store_config)?;
        let (tx, rx) = mpsc::channel();
        let flight = Self {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            config: Arc::new(config),
        };
        let (queued, config) = (Arc::clone(&flight.queued), Arc::clone(&flight.config));
        thread::Builder::new()
            .name("flight".into())
            .spawn(move || run(recorder, &rx, &queued, &config, &*say))
            .map_err(|e| io_error(&flight.config.dir, "starting the recorder", e))?;
        Ok(flight)
    }

    /// The ring's settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Queues a window for the ring; never waits. The window is left out, and counted in
    /// [`Self::dropped`], when [`MAX_QUEUED`] windows still wait for the disk.
    pub fn record(&self, snapshot: Arc<Snapshot>) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let window = Message::Window(snapshot);
        if self.tx.send(window).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Windows left out of the ring so far because the disk was behind.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Puts a mark on the ring's timeline.
    pub fn mark(&self, text: Untrusted) -> Result<(), String> {
        self.tx
            .send(Message::Mark(text))
            .map_err(|_| "the flight recorder has stopped".to_owned())
    }

    /// Asks for a dump of the last window length; the answer comes on the returned channel
    /// once the file is written.
    #[must_use]
    pub fn dump(&self) -> mpsc::Receiver<Result<PathBuf, String>> {
        let (reply, answer) = mpsc::channel();
        if let Err(mpsc::SendError(Message::Dump(reply))) = self.tx.send(Message::Dump(reply)) {
            let _ = reply.send(Err("the flight recorder has stopped".to_owned()));
        }
        answer
    }

    /// Writes the windows still queued, syncs the ring to disk and stops its thread, waiting at
    /// most [`DUMP_TIMEOUT`]: what a kvmtop that exits had recorded is then on disk, not only in
    /// the page cache. Windows queued after this are left out.
    pub fn finish(&self) -> Result<(), String> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(Message::Finish(reply))
            .map_err(|_| "the flight recorder had stopped".to_owned())?;
        wait_for(
            &answer,
            "the disk did not take the flight recorder's last windows in time",
        )
    }

    /// [`Self::dump`], waiting for the answer at most [`DUMP_TIMEOUT`].
    pub fn dump_and_wait(&self) -> Result<PathBuf, String> {
        wait_for(&self.dump(), "the dump did not finish in time")
    }
}

/// The recorder thread's answer, at most [`DUMP_TIMEOUT`] away. An answer that can never come
/// (the thread stopped with the request still queued, dropping it) is told apart from a slow
/// disk.
fn wait_for<T>(answer: &mpsc::Receiver<Result<T, String>>, late: &str) -> Result<T, String> {
    match answer.recv_timeout(DUMP_TIMEOUT) {
        Ok(answer) => answer,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err("the flight recorder had stopped".to_owned())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(late.to_owned()),
    }
}

/// The recorder thread: writes windows and marks in the order they came, and starts dumps.
fn run(
    mut recorder: Recorder,
    rx: &mpsc::Receiver<Message>,
    queued: &AtomicUsize,
    config: &Arc<Config>,
    say: &(dyn Fn(String) + Send + Sync),
) {
    // A failing disk is said once when it starts failing, and once when it recovers.
    let mut failing: Option<u64> = None;
    for message in rx {
        let result = match message {
            Message::Window(snapshot) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                recorder.record(&snapshot).map(drop)
            }
            Message::Mark(text) => recorder.mark(text),
            Message::Dump(reply) => {
                // Frames written so far are in the page cache, where the reader sees them; the
                // dump runs beside the ring so that windows keep being recorded meanwhile.
                let config = Arc::clone(config);
                let spawned = thread::Builder::new()
                    .name("flight-dump".into())
                    .spawn(move || {
                        let _ = reply.send(dump(&config, SystemTime::now()));
                    });
                if let Err(e) = spawned {
                    log::warn!("flight recorder: cannot start a dump: {e}");
                }
                Ok(())
            }
            Message::Finish(reply) => {
                let closed = recorder
                    .close()
                    .map_err(|e| format!("closing the flight recorder: {e}"));
                let _ = reply.send(closed);
                return;
            }
        };
        match (result, failing) {
            (Ok(()), Some(lost)) => {
                say(format!(
                    "flight recorder: writing again ({lost} records lost)"
                ));
                failing = None;
            }
            (Ok(()), None) => {}
            (Err(e), None) => {
                say(format!("flight recorder: {e} (retrying at every window)"));
                failing = Some(1);
            }
            (Err(_), Some(lost)) => failing = Some(lost + 1),
        }
        for warning in recorder.take_warnings() {
            log::warn!("flight recorder: {warning}");
        }
    }
    let _ = recorder.close();
}

/// Writes the ring's last `config.window` before `now` as a standalone recording in
/// [`Config::dumps_dir`]; returns its path.
pub fn dump(config: &Config, now: SystemTime) -> Result<PathBuf, String> {
    let dumps = config.dumps_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dumps)
        .map_err(|e| format!("creating {}: {e}", dumps.display()))?;
    let reader = Reader::open(&config.dir).map_err(|e| e.to_string())?;
    let now_ns = unix_ns(now);
    let from = now_ns.saturating_sub(u64::try_from(config.window.as_nanos()).unwrap_or(u64::MAX));
    let stamp = dump_stamp(now_ns);
    for attempt in 1..100 {
        let name = if attempt == 1 {
            format!("flight-{stamp}.kvmrec")
        } else {
            format!("flight-{stamp}-{attempt}.kvmrec")
        };
        let out = dumps.join(name);
        match store::dump(&reader, from.., &out) {
            Ok(summary) if summary.frames == 0 => {
                let _ = fs::remove_file(&out);
                return Err("the flight recorder holds nothing yet".to_owned());
            }
            Ok(summary) => {
                for skipped in summary.skipped {
                    log::warn!("flight dump: left out: {skipped}");
                }
                prune_dumps(&dumps, &out);
                return Ok(out);
            }
            Err(store::Error::Exists { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("too many dumps named flight-{stamp}"))
}

/// Deletes the oldest dumps in `dumps` beyond [`KEPT_DUMPS`], never `newest`. Names sort by
/// time (`flight-STAMP[-N].kvmrec`); only regular files of that form are touched.
fn prune_dumps(dumps: &Path, newest: &Path) {
    let Ok(entries) = fs::read_dir(dumps) else {
        return;
    };
    let mut kept: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let stem = name.strip_prefix("flight-")?.strip_suffix(".kvmrec")?;
            // Sorted by stamp, then by attempt: `-2` after the bare stamp, `-10` after `-9`.
            let (stamp, attempt) = stem.split_once('-').unwrap_or((stem, "1"));
            let key = format!("{stamp}-{attempt:0>3}");
            Some((key, entry.path()))
        })
        .collect();
    kept.sort();
    let excess = kept.len().saturating_sub(KEPT_DUMPS);
    for (_, path) in kept.into_iter().take(excess) {
        if path == newest {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => log::info!("flight dump: deleted the oldest, {}", path.display()),
            Err(e) => log::warn!("flight dump: could not delete {}: {e}", path.display()),
        }
    }
}

/// `20261204T124210Z`: UTC, sortable, and free of characters shells or other systems mind.
fn dump_stamp(time_ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(time_ns)).map_or_else(
        |_| time_ns.to_string(),
        |t| t.strftime("%Y%m%dT%H%M%SZ").to_string(),
    )
}

fn io_error(path: &Path, action: &'static str, error: std::io::Error) -> store::Error {
    store::Error::Io {
        path: path.into(),
        action,
        error,
    }
}

/// Whether this process may create files in `dir`, by the rules the kernel will apply
/// (effective ids and capabilities, read-only mounts), without creating any.
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
