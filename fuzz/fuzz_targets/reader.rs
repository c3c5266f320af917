//! The recording reader on arbitrary bytes, as a standalone recording: it must never panic, and
//! every frame it returns must match the bytes it came from, checked here independently.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The store is compiled in from its source rather than through the `monitor` crate, whose build
// script builds the kernel programs (which cannot be built with the fuzzer's flags). It depends
// only on crc32fast, thiserror and zstd.
#[path = "../../monitor/src/recording/store/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "only the reader is exercised here"
)]
mod store;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = store::Reader::from_bytes("input", data.to_vec()) else {
        return;
    };
    check(&reader, data);
    if let Some(last) = reader.entries().last() {
        let at = reader.seek(last.time_ns);
        assert!(at < reader.entries().len());
        assert!(reader.entries()[at].time_ns >= last.time_ns);
    }
    assert_eq!(reader.frames(..).rev().count(), reader.entries().len());
    reader.verify();
    check(&reader, data);
});

/// Entries lie inside the input in order without overlapping, and each frame read matches its
/// bytes: header checksum, payload checksum, and payload (decompressed anew).
fn check(reader: &store::Reader, data: &[u8]) {
    let mut end = 0;
    for (i, entry) in reader.entries().iter().enumerate() {
        let at = usize::try_from(entry.offset).unwrap();
        let stored_len = entry.stored_len as usize;
        assert!(
            at >= end,
            "entry {i} at {at} overlaps the one before, ending at {end}"
        );
        end = at + 32 + stored_len;
        assert!(end <= data.len());
        let Ok(frame) = reader.read(i) else {
            continue;
        };
        let h = &data[at..at + 32];
        let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
        assert_eq!(crc32fast::hash(&h[..28]), le32(&h[28..32]));
        assert_eq!(
            u64::from_le_bytes(h[4..12].try_into().unwrap()),
            frame.time_ns
        );
        let stored = &data[at + 32..end];
        assert_eq!(crc32fast::hash(stored), le32(&h[24..28]));
        if h[14] & 1 == 1 {
            let raw_len = le32(&h[20..24]) as usize;
            assert_eq!(
                zstd::bulk::decompress(stored, raw_len).unwrap(),
                frame.payload
            );
        } else {
            assert_eq!(stored, frame.payload);
        }
    }
    for problem in reader.problems() {
        assert_eq!(problem.file(), std::path::Path::new("input"));
    }
}
