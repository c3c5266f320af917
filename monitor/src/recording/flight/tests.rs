use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::recording::{events::Event, playback::Recording};

const START_S: f64 = 1_700_000_000.0;

fn config(dir: &Path, window: Duration, max_size: u64) -> Config {
    Config {
        dir: dir.join("flight"),
        window,
        max_size,
    }
}

/// The fixture snapshot as the window of `second` seconds after [`START_S`].
fn window(second: u32) -> Snapshot {
    let mut snapshot = crate::testing::fixture::snapshot();
    snapshot.window.start_unix_seconds = START_S + f64::from(second);
    snapshot.window.duration_seconds = 1.0;
    snapshot
}

/// Unix ns of the end of the window of `second`.
fn end_ns(second: u32) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ns = ((START_S + f64::from(second) + 1.0) * 1e9) as u64;
    ns
}

fn ring_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn the_ring_is_a_twentieth_of_the_window_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = config(dir.path(), DEFAULT_WINDOW, DEFAULT_MAX_SIZE).store();
    assert_eq!(store.max_segment_duration, Duration::from_secs(45));
    assert_eq!(store.max_age, Some(DEFAULT_WINDOW));
    assert_eq!(store.max_total_bytes, DEFAULT_MAX_SIZE);
    assert_eq!(store.max_segment_bytes, DEFAULT_MAX_SIZE / 16);
    let short = config(dir.path(), Duration::from_secs(5), 64 << 10).store();
    assert_eq!(short.max_segment_duration, Duration::from_secs(1));
    assert!(store::Writer::open(&dir.path().join("x"), short).is_ok());
    assert_eq!(
        config(Path::new("/var/lib/kvmtop"), DEFAULT_WINDOW, 1).dumps_dir(),
        Path::new("/var/lib/kvmtop/dumps")
    );
    let relative = Config {
        dir: PathBuf::from("ring"),
        window: DEFAULT_WINDOW,
        max_size: 1,
    };
    assert_eq!(relative.dumps_dir(), Path::new("./dumps"));
}

#[test]
fn the_ring_reaches_back_the_window_and_two_segments_at_most_and_a_dump_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), Duration::from_secs(20), 64 << 20);
    let mut recorder = Recorder::open(&config.dir, config.store()).unwrap();
    let segment = config.store().max_segment_duration;
    for second in 0..200 {
        recorder.record(&window(second)).unwrap();
        let ring = Reader::open(&config.dir).unwrap();
        let oldest = ring.entries().first().unwrap().time_ns;
        let reach = Duration::from_nanos(end_ns(second) - oldest);
        assert!(
            reach <= config.window + 2 * segment,
            "after {second} s the ring reaches back {reach:?}"
        );
    }
    drop(recorder);
    let now = UNIX_EPOCH + Duration::from_nanos(end_ns(199));
    let out = dump(&config, now).unwrap();
    assert_eq!(out.parent().unwrap(), dir.path().join("dumps"));
    let name = out.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("flight-2023") && name.ends_with("Z.kvmrec"),
        "{name}"
    );
    let dumped = Recording::open(&out).unwrap();
    let times: Vec<u64> = dumped.window_times().collect();
    assert_eq!(
        times.len(),
        21,
        "windows ending in the last 20 s, both ends in"
    );
    assert_eq!(*times.last().unwrap(), end_ns(199));
    for (i, pair) in times.windows(2).enumerate() {
        assert_eq!(pair[1] - pair[0], 1_000_000_000, "window {i} does not tile");
    }
    // A second dump in the same second gets a name of its own.
    let again = dump(&config, now).unwrap();
    assert_ne!(again, out);
    assert!(again.to_str().unwrap().ends_with("-2.kvmrec"));
}

#[test]
fn marks_and_windows_reach_the_ring_through_its_thread_and_a_dump_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let flight = Flight::start(
        config(dir.path(), Duration::from_mins(15), 1 << 20),
        Arc::new(|_| {}),
    )
    .unwrap();
    // Windows of now, so that the dump, cut at now, holds them.
    let now_s = unix_ns(SystemTime::now()) / 1_000_000_000;
    for i in 0..5_u32 {
        let mut snapshot = window(0);
        #[allow(clippy::cast_precision_loss)]
        let start = (now_s - 10) as f64 + f64::from(i);
        snapshot.window.start_unix_seconds = start;
        flight.record(Arc::new(snapshot.clone()));
        // Paced so that none is left out.
        while flight.queued.load(Ordering::Acquire) > 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    flight.mark(Untrusted::new("from the test")).unwrap();
    let out = flight.dump_and_wait().unwrap();
    let dumped = Recording::open(&out).unwrap();
    assert_eq!(dumped.window_count(), 5);
    assert!(
        dumped
            .events()
            .iter()
            .any(|e| matches!(&e.event, Event::Mark { text } if text.exact() == "from the test")),
        "{:?}",
        dumped.events()
    );
    assert_eq!(flight.dropped(), 0);
}

/// What was queued when kvmtop finishes is written before `finish` returns, and the thread is
/// gone after: a second finish and later windows find it stopped.
#[test]
fn finishing_writes_every_queued_window_and_stops_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), Duration::from_mins(15), 1 << 20);
    let flight = Flight::start(config.clone(), Arc::new(|_| {})).unwrap();
    let queued = u32::try_from(MAX_QUEUED).unwrap();
    for second in 0..queued {
        flight.record(Arc::new(window(second)));
    }
    flight.finish().unwrap();
    assert_eq!(flight.dropped(), 0);
    let ring = Recording::open(&config.dir).unwrap();
    assert_eq!(ring.window_count(), MAX_QUEUED);
    // The thread may still be returning: the request then reaches its channel and is dropped
    // with it, unanswered. Either way the answer says it had stopped, and it is gone after.
    assert!(flight.finish().unwrap_err().contains("stopped"));
    assert!(flight.mark(Untrusted::new("late")).is_err());
}

#[test]
fn windows_beyond_the_queue_are_left_out_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    // A recorder thread that never takes anything: a disk that does not answer.
    let (tx, _stuck) = mpsc::channel();
    let flight = Flight {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
        dropped: Arc::new(AtomicU64::new(0)),
        config: Arc::new(config(dir.path(), DEFAULT_WINDOW, DEFAULT_MAX_SIZE)),
    };
    let started = std::time::Instant::now();
    for second in 0..20 {
        flight.record(Arc::new(window(second)));
    }
    assert_eq!(flight.queued.load(Ordering::Acquire), MAX_QUEUED);
    assert_eq!(flight.dropped(), 20 - MAX_QUEUED as u64);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_small_ring_keeps_its_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), Duration::from_hours(1), 32 << 10);
    let mut recorder = Recorder::open(&config.dir, config.store()).unwrap();
    for second in 0..400 {
        recorder.record(&window(second)).unwrap();
        let bytes = ring_bytes(&config.dir);
        assert!(bytes <= config.max_size, "{bytes} bytes after {second} s");
    }
}

#[test]
fn a_ring_another_process_holds_or_that_cannot_be_written_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), DEFAULT_WINDOW, DEFAULT_MAX_SIZE);
    let first = Flight::start(config.clone(), Arc::new(|_| {})).unwrap();
    let second = Flight::start(config.clone(), Arc::new(|_| {}))
        .err()
        .unwrap();
    assert!(matches!(second, store::Error::Locked { .. }), "{second}");
    drop(first);
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let not_a_dir = Flight::start(
        Config {
            dir: file.join("flight"),
            ..config
        },
        Arc::new(|_| {}),
    );
    assert!(not_a_dir.is_err());
}

#[test]
fn dumps_beyond_the_kept_count_delete_the_oldest_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("dumps");
    fs::create_dir(&dumps).unwrap();
    let mut names: Vec<String> = (0..KEPT_DUMPS + 2)
        .map(|i| format!("flight-20261204T1242{i:02}Z.kvmrec"))
        .collect();
    // A second dump in the same second sorts after the first.
    names.push("flight-20261204T124259Z.kvmrec".to_owned());
    names.push("flight-20261204T124259Z-2.kvmrec".to_owned());
    for name in &names {
        fs::write(dumps.join(name), b"x").unwrap();
    }
    fs::write(dumps.join("notes.txt"), b"not a dump").unwrap();
    let newest = dumps.join("flight-20261204T124259Z-2.kvmrec");
    prune_dumps(&dumps, &newest);
    let mut left: Vec<String> = fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected: Vec<String> = names[names.len() - KEPT_DUMPS..].to_vec();
    expected.push("notes.txt".to_owned());
    expected.sort();
    assert_eq!(left, expected);
}
