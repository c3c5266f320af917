//! Damaged recordings: bytes flipped in a segment, a segment cut at every length of its last
//! frame, and seeded damage of many kinds to real recordings. The reader must keep every frame
//! the damage spared, report the damage with file and offset, and never return a frame that does
//! not match its bytes. No root needed.
use std::{fs, path::Path, time::Instant};

use kvmtop::recording::store::{Config, Error, Problem, Reader};
use recording_store_support::{checked_frames, indices, record, segment_files};

mod recording_store_support;

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
