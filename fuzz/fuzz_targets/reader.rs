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
/// bytes: header checksum, payload checksum, and payload (decompressed anew, a delta frame with
/// its key frame checked and decompressed anew as the dictionary).
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
        let raw_len = le32(&h[20..24]) as usize;
        match h[14] {
            // A delta frame: its key frame (where the reader found it: at the offset the delta
            // frame names unless damage moved it) is of the same kind, before it, compressed on
            // its own, with the checksum the delta frame names.
            3 => {
                let key = reader.key_frame(i).unwrap().unwrap();
                let key_at = usize::try_from(reader.entries()[key].offset).unwrap();
                assert!(
                    key_at < at,
                    "key frame at {key_at} after its delta frame at {at}"
                );
                let k = &data[key_at..key_at + 32];
                assert_eq!(crc32fast::hash(&k[..28]), le32(&k[28..32]));
                assert_eq!(k[12..14], h[12..14], "kind of the key frame at {key_at}");
                assert!(
                    k[14] <= 1 && k[15] == 0,
                    "flags of the key frame at {key_at}"
                );
                assert_eq!(le32(&k[24..28]), le32(&stored[8..12]));
                let key_stored = &data[key_at + 32..key_at + 32 + le32(&k[16..20]) as usize];
                assert_eq!(crc32fast::hash(key_stored), le32(&k[24..28]));
                let key = if k[14] == 1 {
                    zstd::bulk::decompress(key_stored, le32(&k[20..24]) as usize).unwrap()
                } else {
                    key_stored.to_vec()
                };
                let payload = zstd::bulk::Decompressor::with_dictionary(&key)
                    .unwrap()
                    .decompress(&stored[12..], raw_len)
                    .unwrap();
                assert_eq!(payload, frame.payload);
            }
            1 => assert_eq!(
                zstd::bulk::decompress(stored, raw_len).unwrap(),
                frame.payload
            ),
            _ => assert_eq!(stored, frame.payload),
        }
    }
    for problem in reader.problems() {
        assert_eq!(problem.file(), std::path::Path::new("input"));
    }
}
