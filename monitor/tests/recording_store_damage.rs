//! Damaged recordings: bytes flipped in a segment, a segment cut at every length of its last
//! frame, and seeded damage of many kinds to real recordings. The reader must keep every frame
//! the damage spared, report the damage with file and offset, and never return a frame that does
//! not match its bytes. No root needed.
use std::{fs, path::Path, time::Instant};

use kvmtop::recording::store::{Config, Error, Problem, Reader};
use recording_store_support::{
    KEY_FRAME_INTERVAL, checked_frames, indices, record, segment_files, with_deltas,
};

mod recording_store_support;

/// One segment holding frames 0..40, and the offsets and lengths of its frames.
fn one_segment(dir: &Path) -> (std::path::PathBuf, Vec<(u64, u64)>) {
    one_segment_with(dir, Config::default())
}

fn one_segment_with(dir: &Path, config: Config) -> (std::path::PathBuf, Vec<(u64, u64)>) {
    record(dir, config, 0..40);
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
    for config in [Config::default(), with_deltas()] {
        let dir = tempfile::tempdir().unwrap();
        let (file, frames) = one_segment_with(dir.path(), config);
        cut_last_frame_everywhere(&file, &frames);
    }
}

fn cut_last_frame_everywhere(file: &Path, frames: &[(u64, u64)]) {
    let dir = file.parent().unwrap();
    let original = fs::read(file).unwrap();
    let (last_offset, last_len) = frames[39];
    assert!(
        last_len > 300,
        "the last frame is large enough to cut often"
    );
    for cut in 0..last_len {
        let cut_bytes = &original[..usize::try_from(last_offset + cut).unwrap()];
        fs::write(file, cut_bytes).unwrap();
        let reader = Reader::open(dir).unwrap();
        assert_eq!(indices(&reader), (0..39).collect::<Vec<_>>(), "cut {cut}");
        assert_eq!(checked_frames(&reader, &[cut_bytes.to_vec()]).len(), 39);
        let torn = (cut > 0).then(|| Problem::TornTail {
            file: file.to_path_buf(),
            offset: last_offset,
            len: cut,
        });
        assert_eq!(reader.problems(), torn.as_slice(), "cut {cut}");
    }
    // Cut inside the segment header: nothing to read, one torn tail, no error.
    for cut in 0..32 {
        fs::write(file, &original[..cut]).unwrap();
        let reader = Reader::open(dir).unwrap();
        assert!(reader.entries().is_empty());
        assert_eq!(
            reader.problems(),
            &[Problem::TornTail {
                file: file.to_path_buf(),
                offset: 0,
                len: cut as u64
            }]
        );
    }
}

#[test]
fn a_damaged_key_frame_loses_only_the_frames_compressed_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let (file, frames) = one_segment_with(dir.path(), with_deltas());
    let original = fs::read(&file).unwrap();
    let clean = Reader::open(dir.path()).unwrap();
    // A key frame in the middle, and the frames compressed against it.
    let key = (10..40)
        .find(|&i| clean.entries()[i].kind == 1 && !clean.entries()[i].is_delta())
        .unwrap();
    let dependants: Vec<usize> = (0..40)
        .filter(|&i| clean.key_frame(i).unwrap() == Some(key))
        .collect();
    assert_eq!(dependants.len(), KEY_FRAME_INTERVAL as usize - 1);
    let key_offset = frames[key].0;
    // A flipped payload byte (the header stays intact), then a flipped header byte (the
    // frame leaves the index at once).
    for (within, in_index) in [(40, true), (6, false)] {
        let mut damaged = original.clone();
        damaged[usize::try_from(key_offset + within).unwrap()] ^= 0x5A;
        fs::write(&file, &damaged).unwrap();
        let mut reader = Reader::open(dir.path()).unwrap();
        let bytes = std::slice::from_ref(&damaged);
        for (i, entry) in reader.entries().iter().enumerate() {
            let lost = dependants.contains(&(crate::index(entry)));
            match reader.read(i) {
                Err(Error::KeyFrame {
                    offset,
                    key_offset: k,
                    ..
                }) if lost => assert_eq!((offset, k), (entry.offset, key_offset)),
                Err(Error::Checksum { offset, .. }) if in_index && offset == key_offset => {}
                Ok(_) if !lost => {}
                other => panic!("frame at {}: {other:?}", entry.offset),
            }
        }
        let e = reader
            .read(
                reader
                    .entries()
                    .iter()
                    .position(|e| dependants.contains(&crate::index(e)))
                    .unwrap(),
            )
            .unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains(&format!("at offset {}", frames[dependants[0]].0))
                && message.contains(&format!("key frame at offset {key_offset}")),
            "{message}"
        );
        assert_eq!(
            reader.verify(),
            dependants.len() + usize::from(in_index),
            "{:?}",
            reader.problems()
        );
        let survivors: Vec<usize> = (0..40)
            .filter(|i| *i != key && !dependants.contains(i))
            .collect();
        assert_eq!(
            indices(&reader),
            survivors.iter().map(|&i| i as u64).collect::<Vec<_>>()
        );
        assert_eq!(checked_frames(&reader, bytes).len(), survivors.len());
        let missing: Vec<(u64, u64)> = reader
            .problems()
            .iter()
            .filter_map(|p| match p {
                Problem::MissingKeyFrame {
                    offset, key_offset, ..
                } => Some((*offset, *key_offset)),
                _ => None,
            })
            .collect();
        let want: Vec<(u64, u64)> = dependants
            .iter()
            .map(|&i| (frames[i].0, key_offset))
            .collect();
        assert_eq!(missing, want, "{:?}", reader.problems());
    }
}

/// Which frame of the test sequence an entry is.
fn index(entry: &kvmtop::recording::store::Entry) -> usize {
    usize::try_from(recording_store_support::index_of(entry.time_ns)).unwrap()
}

#[test]
fn the_reader_survives_arbitrary_damage_and_returns_only_intact_frames() {
    survives_arbitrary_damage(Config::default());
}

#[test]
fn with_delta_frames_the_reader_survives_arbitrary_damage_and_returns_only_intact_frames() {
    survives_arbitrary_damage(with_deltas());
}

/// Seeded damage of many kinds to a recording written with `config`: every frame read matches
/// its bytes, and every frame the damage spared is kept, a delta frame if its key frame was
/// spared too (even if bytes removed or inserted before it moved it).
fn survives_arbitrary_damage(config: Config) {
    use recording_store_support::mutate::mutate;
    const ROUNDS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    record(&dir.path().join("a"), config, 0..24);
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
    let keys: Vec<Option<usize>> = (0..frames.len())
        .map(|i| clean.key_frame(i).unwrap())
        .collect();
    // Another seed explores other damage: KVMTOP_STORE_DAMAGE_SEED=n.
    let seed = std::env::var("KVMTOP_STORE_DAMAGE_SEED").map_or(0x5EED, |s| s.parse().unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut opened, started) = (0, Instant::now());
    for round in 0..ROUNDS {
        let m = mutate(&mut rng, &original, &other);
        let survivors: Vec<usize> = frames
            .iter()
            .zip(&keys)
            .filter_map(|(f, key)| {
                let at = m.survivor(f)?;
                let Some(key) = *key else { return Some(at) };
                m.survivor(&frames[key]).map(|_| at)
            })
            .collect();
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
