//! The recording store on a real file system: round trips, damage, torn tails, restarts,
//! retention, a writer killed with SIGKILL, a reader beside a live writer, dumps, and the time
//! to open an hour of recording. No root needed.
use std::{
    fs::{self, OpenOptions},
    path::Path,
    time::{Duration, Instant},
};

use kvmtop::recording::store::{self, Config, Error, Problem, Reader, Writer};
use recording_store_support::{
    BASE_NS, SECOND, checked_frames, expected, index_of, record, segment_bytes, segment_files,
    small_segments,
};

mod recording_store_support;

/// Positions, kinds and times of a reader's frames as indices of the test sequence.
fn indices(reader: &Reader) -> Vec<u64> {
    reader
        .entries()
        .iter()
        .map(|e| index_of(e.time_ns))
        .collect()
}

#[test]
fn frames_round_trip_across_segments_with_seek_and_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), small_segments(), 0..300);
    let reader = Reader::open(dir.path()).unwrap();
    assert!(reader.segments().len() > 5, "{}", reader.segments().len());
    assert_eq!(reader.problems(), &[]);
    assert!(reader.time_ordered());
    let frames = checked_frames(&reader, &segment_bytes(&reader));
    assert_eq!(frames, (0..300).map(expected).collect::<Vec<_>>());

    // Seek: exact times, times between frames, before the first, after the last.
    assert_eq!(reader.seek(0), 0);
    assert_eq!(reader.seek(BASE_NS + 17 * SECOND), 17);
    assert_eq!(reader.seek(BASE_NS + 17 * SECOND + 1), 18);
    assert_eq!(reader.seek(BASE_NS + 400 * SECOND), 300);
    let from_17: Vec<_> = reader.frames(17..20).map(Result::unwrap).collect();
    assert_eq!(from_17, (17..20).map(expected).collect::<Vec<_>>());
    let backwards: Vec<_> = reader
        .frames(..3)
        .rev()
        .map(|f| f.unwrap().time_ns)
        .collect();
    assert_eq!(backwards, [2, 1, 0].map(|i| expected(i).time_ns));

    let kind_2: Vec<usize> = reader.positions_of_kind(2).collect();
    assert_eq!(kind_2, (0..300).filter(|i| i % 3 == 2).collect::<Vec<_>>());
    let between: Vec<usize> = reader
        .positions_between(BASE_NS + 10 * SECOND..BASE_NS + 13 * SECOND)
        .collect();
    assert_eq!(between, [10, 11, 12]);
}

/// One segment holding frames 0..40, and the offsets and lengths of its frames.
fn one_segment(dir: &Path) -> (std::path::PathBuf, Vec<(u64, u64)>) {
    record(dir, Config::default(), 0..40);
    let reader = Reader::open(dir).unwrap();
    let frames = reader
        .entries()
        .iter()
        .map(|e| (e.offset, 32 + u64::from(e.stored_len)))
        .collect();
    (segment_files(dir).remove(0), frames)
}

#[test]
fn flipped_bytes_lose_exactly_the_frames_they_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (file, frames) = one_segment(dir.path());
    let original = fs::read(&file).unwrap();
    let byte = |i: usize, within: u64| usize::try_from(frames[i].0 + within).unwrap();
    // (bytes to flip, frames they hit)
    let cases: &[(&[usize], &[usize])] = &[
        (&[byte(5, 0)], &[5]),                     // marker
        (&[byte(8, 6)], &[8]),                     // time
        (&[byte(9, 17)], &[9]),                    // stored length
        (&[byte(10, 30)], &[10]),                  // header checksum
        (&[byte(12, 40)], &[12]),                  // payload
        (&[byte(14, frames[14].1 - 1)], &[14]),    // last payload byte
        (&[byte(20, 3), byte(21, 0)], &[20, 21]),  // two neighbours
        (&[byte(30, 50), byte(33, 2)], &[30, 33]), // payload, then a header further on
        (&[byte(39, frames[39].1 - 1)], &[39]),    // last byte of the file
    ];
    for (flips, hit) in cases {
        let mut damaged = original.clone();
        for &at in *flips {
            damaged[at] ^= 0x5A;
        }
        fs::write(&file, &damaged).unwrap();
        let mut reader = Reader::open(dir.path()).unwrap();
        reader.verify();
        let survivors = indices(&reader);
        let expected_survivors: Vec<u64> = (0..40)
            .filter(|i| !hit.contains(&usize::try_from(*i).unwrap()))
            .collect();
        assert_eq!(survivors, expected_survivors, "flips {flips:?}");
        // The damage reported covers exactly the lost frames: each damaged region runs from
        // the start of a lost frame to the start of the next intact one.
        let mut reported: Vec<usize> = Vec::new();
        for p in reader.problems() {
            let at = |offset: u64| frames.iter().position(|f| f.0 == offset);
            let (first, last) = match p {
                Problem::Corrupt { offset, len, .. } | Problem::TornTail { offset, len, .. } => (
                    at(*offset),
                    frames.iter().position(|f| f.0 + f.1 == offset + len),
                ),
                Problem::BadPayload { offset, .. } => (at(*offset), at(*offset)),
                other => panic!("unexpected {other}"),
            };
            let (Some(first), Some(last)) = (first, last) else {
                panic!("{p} does not fall on frame boundaries")
            };
            reported.extend(first..=last);
        }
        reported.sort_unstable();
        assert_eq!(reported, *hit, "flips {flips:?}: {:?}", reader.problems());
        assert_eq!(
            checked_frames(&reader, &[damaged]).len(),
            expected_survivors.len()
        );
    }
}

#[test]
fn a_segment_cut_anywhere_in_its_last_frame_keeps_every_earlier_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (file, frames) = one_segment(dir.path());
    let original = fs::read(&file).unwrap();
    let (last_offset, last_len) = frames[39];
    assert!(
        last_len > 300,
        "the last frame is large enough to cut often"
    );
    for cut in 0..last_len {
        fs::write(
            &file,
            &original[..usize::try_from(last_offset + cut).unwrap()],
        )
        .unwrap();
        let reader = Reader::open(dir.path()).unwrap();
        assert_eq!(indices(&reader), (0..39).collect::<Vec<_>>(), "cut {cut}");
        let torn = (cut > 0).then(|| Problem::TornTail {
            file: file.clone(),
            offset: last_offset,
            len: cut,
        });
        assert_eq!(reader.problems(), torn.as_slice(), "cut {cut}");
    }
    // Cut inside the segment header: nothing to read, one torn tail, no error.
    for cut in 0..32 {
        fs::write(&file, &original[..cut]).unwrap();
        let reader = Reader::open(dir.path()).unwrap();
        assert!(reader.entries().is_empty());
        assert_eq!(
            reader.problems(),
            &[Problem::TornTail {
                file: file.clone(),
                offset: 0,
                len: cut as u64
            }]
        );
    }
}

#[test]
fn a_restarted_writer_records_after_a_torn_or_damaged_segment() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), small_segments(), 0..100);
    let files = segment_files(dir.path());
    let last = files.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    // And garbage over the header of the first segment.
    let mut first = fs::read(&files[0]).unwrap();
    first[..8].copy_from_slice(b"garbage!");
    fs::write(&files[0], first).unwrap();

    let before: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    record(dir.path(), small_segments(), 100..150);
    // The new writer left the old segments as they were and wrote new ones.
    let after = segment_files(dir.path());
    assert!(after.len() > files.len());
    assert_eq!(after[..files.len()], files);
    for (file, bytes) in files.iter().zip(before) {
        assert_eq!(fs::read(file).unwrap(), bytes, "{}", file.display());
    }
    let reader = Reader::open(dir.path()).unwrap();
    let want: Vec<u64> = (0..99).chain(100..150).collect();
    assert_eq!(indices(&reader), want);
    assert_eq!(
        checked_frames(&reader, &segment_bytes(&reader)).len(),
        want.len()
    );
    assert!(
        matches!(reader.problems(), [
            Problem::BadHeader { file: a },
            Problem::Corrupt { file: b, offset: 0, len: 32 },
            Problem::TornTail { file: c, .. },
        ] if *a == files[0] && *b == files[0] && c == last),
        "{:?}",
        reader.problems()
    );
}

#[test]
fn retention_holds_the_size_bound_over_thousands_of_segments() {
    // tmpfs when there is one: this is about retention arithmetic, not durability, and thousands
    // of segment switches each flush a file and the directory.
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let config = Config {
        max_segment_bytes: 8 << 10,
        max_total_bytes: 64 << 10,
        fsync_interval: Duration::from_hours(1),
        ..Config::default()
    };
    let mut writer = Writer::open(dir.path(), config.clone()).unwrap();
    let mut most = 0;
    let frames = 30_000;
    for i in 0..frames {
        recording_store_support::append(&mut writer, i);
        let size = recording_store_support::dir_bytes(dir.path());
        assert!(size <= config.max_total_bytes, "frame {i}: {size} bytes");
        most = most.max(size);
    }
    assert!(writer.take_warnings().is_empty());
    writer.close().unwrap();
    // Retention deleted whole oldest segments only: what is left is the newest frames, all of
    // them, and as many as fit.
    let reader = Reader::open(dir.path()).unwrap();
    let left = indices(&reader);
    let first = left[0];
    assert_eq!(left, (first..frames).collect::<Vec<_>>());
    assert_eq!(reader.problems(), &[]);
    assert!(
        most > config.max_total_bytes - config.max_segment_bytes,
        "the bound is used, not undershot: at most {most} bytes"
    );
    eprintln!("{frames} frames, {first} deleted by retention, at most {most} bytes on disk");
}

#[test]
fn age_retention_deletes_segments_whose_frames_are_all_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        max_segment_duration: Duration::from_secs(10),
        max_age: Some(Duration::from_mins(1)),
        ..Config::default()
    };
    let mut writer = Writer::open(dir.path(), config).unwrap();
    for i in 0..1000 {
        recording_store_support::append(&mut writer, i);
        if i % 50 != 49 {
            continue;
        }
        let reader = Reader::open(dir.path()).unwrap();
        let (oldest, newest) = (index_of(reader.entries()[0].time_ns), i);
        // Kept: everything younger than a minute; dropped: whatever is older than a minute
        // plus one segment (10 s).
        assert!(i < 60 || newest - oldest >= 60, "at {i}: oldest {oldest}");
        assert!(newest - oldest <= 70, "at {i}: oldest {oldest}");
    }
    writer.close().unwrap();
}

#[test]
fn a_reader_beside_a_live_writer_sees_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let config = Config {
        max_segment_bytes: 16 << 10,
        max_total_bytes: 256 << 10,
        fsync_interval: Duration::from_hours(1),
        ..Config::default()
    };
    let mut writer = Writer::open(&path, config).unwrap();
    let writing = std::thread::spawn(move || {
        for i in 0..20_000 {
            recording_store_support::append(&mut writer, i);
        }
        writer.close().unwrap();
    });
    let mut opens = 0;
    while !writing.is_finished() {
        let reader = Reader::open(&path).unwrap();
        let got = indices(&reader);
        if let Some(&first) = got.first() {
            assert_eq!(got, (first..first + got.len() as u64).collect::<Vec<_>>());
        }
        // Retention may delete a segment after it was opened, so the frames are checked
        // against the sequence rather than against the files' bytes.
        for (i, frame) in got.iter().zip(reader.frames(..)) {
            assert_eq!(frame.unwrap(), expected(*i));
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
}

#[test]
fn a_dump_is_a_standalone_recording_of_the_range() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), small_segments(), 0..200);
    // Damage one frame in the range: the dump leaves it out and says so.
    let file = &segment_files(dir.path())[1];
    let mut bytes = fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(file, bytes).unwrap();
    let source = Reader::open(dir.path()).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("incident.kvmrec");

    let range = BASE_NS + 20 * SECOND..=BASE_NS + 120 * SECOND;
    let summary = store::dump(&source, range.clone(), &out).unwrap();
    assert!(
        matches!(&summary.skipped[..], [Error::Checksum { .. }]),
        "{summary:?}"
    );
    let copy = Reader::open(&out).unwrap();
    assert_eq!(copy.segments().len(), 1);
    assert_eq!(copy.problems(), &[]);
    assert_eq!(summary.frames, copy.entries().len());
    assert_eq!(summary.bytes, fs::metadata(&out).unwrap().len());
    let in_source: Vec<_> = source
        .positions_between(range.clone())
        .filter_map(|p| source.read(p).ok())
        .collect();
    assert_eq!(in_source.len(), 100);
    let copied = checked_frames(&copy, &[fs::read(&out).unwrap()]);
    assert_eq!(copied, in_source);
    assert_eq!(
        fs::read_dir(out_dir.path()).unwrap().count(),
        1,
        "no .partial left"
    );

    assert!(matches!(
        store::dump(&source, range, &out),
        Err(Error::Exists { .. })
    ));
}

#[test]
fn other_versions_and_foreign_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), small_segments(), 0..100);
    let files = segment_files(dir.path());
    let in_second = Reader::open(&files[1]).unwrap().entries().len();
    let mut newer = fs::read(&files[1]).unwrap();
    newer[8] = 2;
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(&files[1], newer).unwrap();
    fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(
        reader.problems(),
        &[Problem::UnsupportedVersion {
            file: files[1].clone(),
            version: 2
        }]
    );
    assert!(reader.problems()[0].to_string().contains("version 2"));
    assert_eq!(reader.segments().len(), files.len());
    assert_eq!(reader.entries().len(), 100 - in_second);

    let foreign = dir.path().join("notes.txt");
    match Reader::open(&foreign) {
        Err(e @ Error::NotARecording { .. }) => assert!(e.to_string().contains("notes.txt")),
        other => panic!("{other:?}"),
    }
    match Reader::open(&dir.path().join("missing")) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("missing"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_hour_at_one_frame_per_second_opens_well_under_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), Config::default()).unwrap();
    let mut rng = fastrand::Rng::with_seed(3600);
    for i in 0..3600 {
        // Hex text halves under zstd: 10-40 KiB become 5-20 KiB on disk.
        let payload = recording_store_support::hex_text(i, rng.usize(10 << 10..40 << 10));
        writer.append(BASE_NS + i * SECOND, 1, &payload).unwrap();
    }
    writer.close().unwrap();
    let bytes = recording_store_support::dir_bytes(dir.path());
    let drop_cache = || {
        for file in segment_files(dir.path()) {
            recording_store_support::evict_from_page_cache(&file);
        }
    };
    drop_cache();
    let cold = Instant::now();
    let reader = Reader::open(dir.path()).unwrap();
    let cold = cold.elapsed();
    assert_eq!(reader.entries().len(), 3600);
    let warm = Instant::now();
    let reader = Reader::open(dir.path()).unwrap();
    let warm = warm.elapsed();
    let middle = reader.seek(BASE_NS + 1800 * SECOND);
    assert_eq!(
        reader.read(middle).unwrap().time_ns,
        BASE_NS + 1800 * SECOND
    );
    eprintln!(
        "3600 frames, {} MiB in {} segments: open {cold:?} with a cold page cache, {warm:?} warm",
        bytes >> 20,
        reader.segments().len()
    );
    assert!(warm < Duration::from_millis(250), "{warm:?}");
    assert!(cold < Duration::from_secs(1), "{cold:?}");
}

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

#[test]
fn the_reader_survives_arbitrary_damage_and_returns_only_intact_frames() {
    use recording_store_support::mutate::mutate;
    const ROUNDS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    record(&dir.path().join("a"), Config::default(), 0..24);
    record(&dir.path().join("b"), Config::default(), 1000..1010);
    let original = fs::read(&segment_files(&dir.path().join("a"))[0]).unwrap();
    let other = fs::read(&segment_files(&dir.path().join("b"))[0]).unwrap();
    let clean = Reader::from_bytes("clean", original.clone()).unwrap();
    let frames: Vec<std::ops::Range<usize>> = clean
        .entries()
        .iter()
        .map(|e| {
            let start = usize::try_from(e.offset).unwrap();
            start..start + 32 + e.stored_len as usize
        })
        .collect();
    // Another seed explores other damage: KVMTOP_STORE_DAMAGE_SEED=n.
    let seed = std::env::var("KVMTOP_STORE_DAMAGE_SEED").map_or(0x5EED, |s| s.parse().unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut opened, started) = (0, Instant::now());
    for round in 0..ROUNDS {
        let m = mutate(&mut rng, &original, &other);
        let survivors: Vec<usize> = frames.iter().filter_map(|f| m.survivor(f)).collect();
        let mut reader = match Reader::from_bytes("damaged", m.bytes.clone()) {
            Ok(reader) => reader,
            Err(Error::NotARecording { .. }) if survivors.is_empty() => continue,
            Err(e) => panic!("round {round} ({}): {e}", m.what),
        };
        opened += 1;
        let bytes = std::slice::from_ref(&m.bytes);
        checked_frames(&reader, bytes);
        reader.verify();
        assert_eq!(
            checked_frames(&reader, bytes).len(),
            reader.entries().len(),
            "round {round} ({}): a verified frame failed to read",
            m.what
        );
        let offsets: Vec<u64> = reader.entries().iter().map(|e| e.offset).collect();
        for at in survivors {
            assert!(
                offsets.contains(&(at as u64)),
                "round {round} ({}): the undamaged frame now at {at} is lost; {:?}",
                m.what,
                reader.problems()
            );
        }
    }
    eprintln!(
        "seed {seed}: {ROUNDS} damaged recordings, {opened} opened, in {:?}",
        started.elapsed()
    );
}

/// Small real recordings, whole and damaged, as the seeds of the reader's fuzzing target.
#[test]
#[ignore = "writes fuzz/corpus/reader; run by hand when the format changes"]
fn write_fuzz_seed_corpus() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/reader");
    fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), Config::default()).unwrap();
    for i in 0..6_u64 {
        let json = format!(
            "{{\"vm\":\"web-{i}\",\"exits\":[{}]}}",
            "12,345,".repeat(40)
        );
        writer
            .append(BASE_NS + i * SECOND, 0, json.as_bytes())
            .unwrap();
        writer.append(BASE_NS + i * SECOND + 1, 1, b"mark").unwrap();
    }
    writer.close().unwrap();
    let whole = fs::read(&segment_files(dir.path())[0]).unwrap();
    let mut flipped = whole.clone();
    flipped[whole.len() / 2] ^= 0x10;
    let seeds = [
        ("whole", whole.clone()),
        ("torn", whole[..whole.len() - 7].to_vec()),
        ("flipped", flipped),
        ("header-only", whole[..32].to_vec()),
        ("no-header", whole[32..].to_vec()),
    ];
    for (name, bytes) in seeds {
        fs::write(out.join(name), bytes).unwrap();
    }
}
