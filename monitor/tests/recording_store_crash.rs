//! The recording store when its writer dies or fails: a writer killed with SIGKILL (a child
//! process, this test binary re-run for an ignored test), writes failing as on a full disk, and a
//! reader opening the recording while it is written. No root needed.
use std::{fs, io::ErrorKind, path::Path, time::Duration};

use kvmtop::recording::store::{Config, Error, Problem, Reader, Writer};
use recording_store_support::{checked_frames, expected, indices, segment_bytes, small_segments};

mod recording_store_support;

/// Set in the environment of the SIGKILL test's child: the directory it records into, and the
/// index of its first frame.
const CHILD_DIR: &str = "KVMTOP_STORE_CHILD_DIR";
const CHILD_FIRST: &str = "KVMTOP_STORE_CHILD_FIRST";

/// The child process: not a test of its own. It records until killed when the SIGKILL test
/// starts it, acknowledging each frame once `append` has returned.
#[test]
#[ignore = "the SIGKILL test's child process; it runs only when started by that test"]
fn store_writer_child() {
    let (Some(dir), Ok(first)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_FIRST)) else {
        return;
    };
    let mut writer = Writer::open(Path::new(&dir), small_segments()).unwrap();
    println!("writing");
    for i in first.parse::<u64>().unwrap().. {
        recording_store_support::append(&mut writer, i);
        println!("appended {i}");
    }
}

#[test]
fn a_writer_killed_with_sigkill_loses_at_most_the_frame_it_was_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    let mut next = 0;
    for round in 0..6 {
        let child = recording_store_support::KilledWriter::start(
            "store_writer_child",
            &[
                (CHILD_DIR, dir.path().as_os_str()),
                (CHILD_FIRST, next.to_string().as_ref()),
            ],
        );
        // While it records, the directory is locked against a second writer.
        assert!(matches!(
            Writer::open(dir.path(), small_segments()),
            Err(Error::Locked { .. })
        ));
        std::thread::sleep(Duration::from_millis(rng.u64(20..300)));
        let acked_end = child.kill().map_or(next, |last| last + 1);

        let reader = Reader::open(dir.path()).unwrap();
        let got = indices(&reader);
        let end = got.last().map_or(0, |last| last + 1);
        assert_eq!(got, (0..end).collect::<Vec<_>>(), "round {round}");
        assert!(
            end == acked_end || end == acked_end + 1,
            "round {round}: {acked_end} frames acknowledged, {end} recovered"
        );
        let frames = checked_frames(&reader, &segment_bytes(&reader));
        assert_eq!(frames, (0..end).map(expected).collect::<Vec<_>>());
        // At most one torn frame per kill, each at the very end of its segment.
        assert!(
            reader.problems().len() <= round + 1,
            "{:?}",
            reader.problems()
        );
        for p in reader.problems() {
            let Problem::TornTail { file, offset, len } = p else {
                panic!("round {round}: {p}");
            };
            assert_eq!(offset + len, fs::metadata(file).unwrap().len(), "{p}");
        }
        eprintln!(
            "round {round}: killed after {acked_end} acknowledged frames, recovered {end}, {} torn",
            reader.problems().len()
        );
        next = end;
    }
}

/// Set in the environment of the file-size-limit test's child: the directory it records into.
const LIMITED_CHILD_DIR: &str = "KVMTOP_STORE_LIMITED_CHILD_DIR";

/// The child process: records with files limited to 24 KiB (`RLIMIT_FSIZE`), so writes fail as
/// on a full disk, and prints which appends succeeded and which failed.
#[test]
#[ignore = "the file-size-limit test's child process; it runs only when started by that test"]
fn store_writer_limited_child() {
    let Some(dir) = std::env::var_os(LIMITED_CHILD_DIR) else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: 24 << 10,
        rlim_max: 24 << 10,
    };
    // SAFETY: ignoring SIGXFSZ makes an oversized write fail with EFBIG instead of killing the
    // process; setrlimit reads the struct we own.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &raw const limit), 0);
    }
    let config = Config {
        max_segment_bytes: 64 << 10,
        ..small_segments()
    };
    let mut writer = Writer::open(Path::new(&dir), config).unwrap();
    for i in 0..300 {
        let f = expected(i);
        match writer.append(f.time_ns, f.kind, &f.payload) {
            Ok(()) => println!("appended {i}"),
            Err(e) => println!("failed {i}: {e}"),
        }
    }
    writer.close().unwrap();
}

#[test]
fn a_failed_write_records_nothing_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "store_writer_limited_child",
            "--nocapture",
        ])
        .env(LIMITED_CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut appended = Vec::new();
    let mut failures = Vec::new();
    for line in stdout.lines() {
        if let Some(i) = line.strip_prefix("appended ") {
            appended.push(i.parse::<u64>().unwrap());
        } else if let Some(failure) = line.strip_prefix("failed ") {
            failures.push(failure.to_owned());
        }
    }
    assert_eq!(appended.len() + failures.len(), 300, "{stdout}");
    assert!(failures.len() >= 3, "{stdout}");
    for failure in &failures {
        assert!(
            failure.contains("segment-")
                && failure.contains("at offset")
                && failure.contains("writing a frame"),
            "{failure}"
        );
    }
    // Every acknowledged frame is there, no failed one, and no partial frame was left behind.
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(reader.problems(), &[]);
    assert_eq!(indices(&reader), appended);
    let frames = checked_frames(&reader, &segment_bytes(&reader));
    assert_eq!(
        frames,
        appended.iter().map(|&i| expected(i)).collect::<Vec<_>>()
    );
}

#[test]
fn a_reader_beside_a_live_writer_sees_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let config = Config {
        max_segment_bytes: 16 << 10,
        max_total_bytes: 256 << 10,
        fsync_interval: Duration::from_hours(1),
        ..small_segments()
    };
    let mut writer = Writer::open(&path, config).unwrap();
    let writing = std::thread::spawn(move || {
        for i in 0..20_000 {
            recording_store_support::append(&mut writer, i);
        }
        writer.close().unwrap();
    });
    let (mut opens, mut deleted) = (0, 0);
    while !writing.is_finished() {
        let reader = Reader::open(&path).unwrap();
        let got = indices(&reader);
        if let Some(&first) = got.first() {
            assert_eq!(got, (first..first + got.len() as u64).collect::<Vec<_>>());
        }
        // Retention may delete a segment after the reader indexed it: its frames are then gone,
        // and reading them says so. The others are checked against the sequence (not against
        // the files' bytes, which may be gone by then).
        for (i, frame) in got.iter().zip(reader.frames(..)) {
            match frame {
                Ok(frame) => assert_eq!(frame, expected(*i)),
                Err(Error::IoAt { error, .. }) if error.kind() == ErrorKind::NotFound => {
                    deleted += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // The only damage a reader may see is the frame being written, at the very end.
        let last = reader.segments().last().map(|s| s.path.clone());
        for p in reader.problems() {
            assert!(
                matches!(p, Problem::TornTail { file, .. } if Some(file) == last.as_ref()),
                "{p} (last segment {last:?})"
            );
        }
        opens += 1;
    }
    writing.join().unwrap();
    assert!(opens > 10, "only {opens} opens while writing");
    eprintln!("{opens} opens while writing; {deleted} frames deleted by retention before read");
}
