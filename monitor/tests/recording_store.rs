//! The recording store on a real file system: round trips, restarts, retention, dumps, other
//! versions, and the time to open an hour of recording. Damage is tested in
//! `recording_store_damage`; writers that are killed or fail, and readers beside a live writer,
//! in `recording_store_crash`. No root needed.
use std::{
    fs::{self, OpenOptions},
    path::Path,
    time::{Duration, Instant},
};

use kvmtop::recording::store::{self, Config, Error, Problem, Reader, Writer};
use recording_store_support::{
    BASE_NS, KEY_FRAME_INTERVAL, SECOND, checked_frames, expected, index_of, indices,
    key_offset_of, record, segment_bytes, segment_files, small_segments, with_deltas,
};

mod recording_store_support;

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

#[test]
fn delta_frames_depend_only_on_a_key_frame_of_their_kind_in_their_segment() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), small_segments(), 0..300);
    let reader = Reader::open(dir.path()).unwrap();
    let bytes = segment_bytes(&reader);
    assert!(reader.segments().len() > 5, "{}", reader.segments().len());
    let entries = reader.entries();
    let mut deltas = 0;
    for (i, entry) in entries.iter().enumerate() {
        let Some(key_offset) = key_offset_of(&bytes[entry.segment], entry.offset) else {
            assert_eq!(reader.key_frame(i).unwrap(), None);
            continue;
        };
        deltas += 1;
        let key = reader
            .key_frame(i)
            .unwrap()
            .expect("a delta frame has a key frame");
        let k = entries[key];
        assert_eq!(
            (k.segment, k.offset, k.kind),
            (entry.segment, key_offset, entry.kind)
        );
        assert!(entry.is_delta() && !k.is_delta());
        // At most KEY_FRAME_INTERVAL frames of a kind share a key frame, itself included.
        let of_kind_since = entries[key..i]
            .iter()
            .filter(|e| e.kind == entry.kind)
            .count();
        assert!(of_kind_since < KEY_FRAME_INTERVAL as usize, "frame {i}");
    }
    // Of the 300 frames, those whose delta would not be much smaller than their key become
    // keys themselves (the test's payloads vary in length and content), so fewer than the
    // interval alone would give are delta frames.
    assert!(deltas > 50, "{deltas} delta frames");
    assert_eq!(checked_frames(&reader, &bytes).len(), 300);
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
        max_segment_bytes: 4 << 10,
        max_total_bytes: 32 << 10,
        fsync_interval: Duration::from_hours(1),
        ..with_deltas()
    };
    let mut writer = Writer::open(dir.path(), config.clone()).unwrap();
    let (mut most, mut segments) = (0, std::collections::BTreeSet::new());
    let frames = 30_000;
    for i in 0..frames {
        recording_store_support::append(&mut writer, i);
        let mut size = 0;
        for dirent in fs::read_dir(dir.path()).unwrap() {
            let dirent = dirent.unwrap();
            size += dirent.metadata().unwrap().len();
            segments.insert(dirent.file_name());
        }
        assert!(size <= config.max_total_bytes, "frame {i}: {size} bytes");
        most = most.max(size);
    }
    assert!(segments.len() > 2000, "only {} segments", segments.len());
    assert!(writer.take_warnings().is_empty());
    writer.close().unwrap();
    // Retention deleted whole oldest segments only: what is left is the newest frames, all of
    // them, and as many as fit.
    let reader = Reader::open(dir.path()).unwrap();
    let left = indices(&reader);
    let first = left[0];
    assert_eq!(left, (first..frames).collect::<Vec<_>>());
    assert_eq!(reader.problems(), &[]);
    // Every frame left reads, delta frames too: none depended on a deleted segment.
    assert_eq!(
        checked_frames(&reader, &segment_bytes(&reader)).len(),
        left.len()
    );
    assert!(
        most > config.max_total_bytes - config.max_segment_bytes,
        "the bound is used, not undershot: at most {most} bytes"
    );
    eprintln!(
        "{frames} frames in {} segments, {first} frames deleted by retention, at most {most} \
         bytes on disk",
        segments.len()
    );
}

/// A frame larger than a segment's bound makes a segment of its own, as large as the frame:
/// retention makes room for that, not only for a segment at its bound.
#[test]
fn retention_holds_the_size_bound_with_frames_larger_than_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        max_segment_bytes: 1 << 10,
        max_total_bytes: 16 << 10,
        fsync_interval: Duration::from_hours(1),
        ..Config::default()
    };
    let mut writer = Writer::open(dir.path(), config.clone()).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut most = 0;
    for i in 0..300_u64 {
        // Incompressible, 1 to 5 KiB: most frames are larger than a segment may be.
        let len = rng.usize(1 << 10..5 << 10);
        let payload: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        writer.append(BASE_NS + i * SECOND, 1, &payload).unwrap();
        let size: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|d| d.unwrap().metadata().unwrap().len())
            .sum();
        assert!(size <= config.max_total_bytes, "frame {i}: {size} bytes");
        most = most.max(size);
    }
    assert!(
        most > config.max_total_bytes / 2,
        "the bound is used: at most {most} bytes"
    );
    writer.close().unwrap();
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
    // The damaged frame, and the delta frames compressed against it if it is a key frame.
    let [
        Error::Checksum {
            offset: damaged, ..
        },
        dependants @ ..,
    ] = &summary.skipped[..]
    else {
        panic!("{summary:?}")
    };
    assert!(
        dependants.len() < KEY_FRAME_INTERVAL as usize,
        "{summary:?}"
    );
    for e in dependants {
        assert!(
            matches!(e, Error::KeyFrame { key_offset, .. } if key_offset == damaged),
            "{e}"
        );
    }
    let copy = Reader::open(&out).unwrap();
    assert_eq!(copy.segments().len(), 1);
    assert_eq!(copy.problems(), &[]);
    assert_eq!(summary.frames, copy.entries().len());
    assert_eq!(summary.bytes, fs::metadata(&out).unwrap().len());
    let in_source: Vec<_> = source
        .positions_between(range.clone())
        .filter_map(|p| source.read(p).ok())
        .collect();
    // 101 frames in the range, less those lost.
    assert_eq!(in_source.len(), 101 - summary.skipped.len());
    let copied = checked_frames(&copy, &[fs::read(&out).unwrap()]);
    assert_eq!(copied, in_source);
    // Delta frames whose key frame was copied stay delta frames, pointing at the copy.
    assert!(copy.entries().iter().any(store::Entry::is_delta));
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
    newer[8] = 3;
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(&files[1], newer).unwrap();
    fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(
        reader.problems(),
        &[Problem::UnsupportedVersion {
            file: files[1].clone(),
            version: 3
        }]
    );
    assert!(reader.problems()[0].to_string().contains("version 3"));
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

/// Opening reads headers only: an hour of windows opens and seeks. How long it takes is a
/// figure for the benchmark and the closing notes, not a pass mark here: on a loaded test host
/// any wall-clock limit is a coin toss.
#[test]
fn an_hour_at_one_frame_per_second_opens_and_seeks() {
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
}

/// Small real recordings, whole and damaged, as the seeds of the reader's fuzzing target.
#[test]
#[ignore = "writes fuzz/seeds/reader; run by hand when the format changes"]
fn write_fuzz_seed_corpus() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/reader");
    fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Kind 0 as delta frames: frames 0 and 4 of the kind are key frames, the others deltas.
    let config = Config {
        delta_kinds: vec![0],
        key_frame_interval: 4,
        ..Config::default()
    };
    let mut writer = Writer::open(dir.path(), config).unwrap();
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
    // A byte of the first key frame's payload: its three delta frames lose their dictionary.
    let mut key_flipped = whole.clone();
    key_flipped[32 + 32 + 5] ^= 0x10;
    let seeds = [
        ("whole", whole.clone()),
        ("torn", whole[..whole.len() - 7].to_vec()),
        ("flipped", flipped),
        ("key-flipped", key_flipped),
        ("header-only", whole[..32].to_vec()),
        ("no-header", whole[32..].to_vec()),
    ];
    for (name, bytes) in seeds {
        fs::write(out.join(name), bytes).unwrap();
    }
}
