//! Unit tests of the pieces together; damage, crash and retention tests are in
//! `monitor/tests/recording_store.rs`.
use super::*;

fn config() -> Config {
    Config {
        max_segment_bytes: 64 << 10,
        max_total_bytes: 1 << 20,
        ..Config::default()
    }
}

#[test]
fn frames_come_back_as_appended_and_small_ones_stay_uncompressed() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), config()).unwrap();
    let big = "vm web-1 vcpu 0 exits 1234 ".repeat(200).into_bytes();
    writer.append(10, 1, &big).unwrap();
    writer.append(20, 2, b"mark").unwrap();
    writer.append(30, 3, &[]).unwrap();
    writer.close().unwrap();

    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(reader.problems(), &[]);
    let frames: Vec<Frame> = reader.frames(..).map(Result::unwrap).collect();
    let expected = [
        (10, 1, big.clone()),
        (20, 2, b"mark".to_vec()),
        (30, 3, vec![]),
    ];
    let got: Vec<_> = frames
        .into_iter()
        .map(|f| (f.time_ns, f.kind, f.payload))
        .collect();
    assert_eq!(got, expected);
    let e = reader.entries();
    assert!(e[0].stored_len < e[0].raw_len / 10, "{:?}", e[0]);
    assert_eq!((e[1].stored_len, e[1].raw_len), (4, 4));
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Writer::open(dir.path(), config()).unwrap();
    assert!(matches!(
        Writer::open(dir.path(), config()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, why) in [
        (
            Config {
                max_total_bytes: 100 << 10,
                ..config()
            },
            "at least twice",
        ),
        (
            Config {
                compression_level: 99,
                ..config()
            },
            "compression level 99",
        ),
    ] {
        match Writer::open(dir.path(), bad) {
            Err(e @ Error::Config(_)) => assert!(e.to_string().contains(why), "{e}"),
            Err(e) => panic!("expected a configuration error, got {e}"),
            Ok(_) => panic!("accepted a bad configuration"),
        }
    }
}

#[test]
fn reading_past_the_end_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    assert!(matches!(
        reader.read(3),
        Err(Error::NoFrame {
            position: 3,
            frames: 0
        })
    ));
    assert_eq!(reader.frames(2..9).count(), 0);
}

/// Not a pass/fail figure but the one to quote: bytes per frame of a realistic snapshot.
#[test]
fn snapshot_json_compresses_at_least_threefold() {
    let snapshot = crate::testing::fixture::snapshot();
    let json = serde_json::to_vec(&snapshot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), config()).unwrap();
    writer.append(1, 1, &json).unwrap();
    writer.close().unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    let entry = reader.entries()[0];
    let on_disk = entry.stored_len as usize + format::FRAME_HEADER_LEN;
    #[expect(clippy::cast_precision_loss, reason = "a ratio for display")]
    let ratio = json.len() as f64 / on_disk as f64;
    eprintln!(
        "fixture snapshot: {} bytes of JSON, {on_disk} bytes per frame at zstd level {}, ratio {ratio:.1}",
        json.len(),
        config().compression_level
    );
    assert!(ratio > 3.0, "ratio {ratio:.1}");
}
