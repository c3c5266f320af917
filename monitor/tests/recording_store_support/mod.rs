//! Shared by the recording store tests: deterministic frames, an independent frame parser to
//! check what the reader returns, and file helpers.
#![allow(dead_code, reason = "not every test uses every helper")]

use std::path::{Path, PathBuf};

use kvmtop::recording::store::{Config, Frame, Reader, Writer};

pub mod mutate;

/// 2024-01-01T00:00:00Z: frame times are this plus one second per frame.
pub const BASE_NS: u64 = 1_704_067_200_000_000_000;
pub const SECOND: u64 = 1_000_000_000;

/// Lower-case hex text from a seeded generator: about 2:1 under zstd, like numeric JSON.
pub fn hex_text(seed: u64, len: usize) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    for b in &mut bytes {
        *b = HEX[usize::from(*b & 15)];
    }
    bytes
}

/// Frame `i` of the deterministic sequence every test writes: one second apart, three kinds,
/// payloads from 0 bytes to a few KiB, some highly compressible, some not.
pub fn expected(i: u64) -> Frame {
    let len = usize::try_from((i * 7919) % 4000).unwrap();
    let payload = match i % 3 {
        0 => hex_text(i, len),
        1 => format!(
            "{{\"vm\":\"web-{i}\",\"vcpus\":[{}]}}",
            "1,2,3,".repeat(len / 6)
        )
        .into_bytes(),
        _ => i.to_le_bytes().to_vec(),
    };
    Frame {
        time_ns: BASE_NS + i * SECOND,
        kind: u16::try_from(i % 3).unwrap(),
        payload,
    }
}

/// The frames of a reader as indices of the test sequence.
pub fn indices(reader: &Reader) -> Vec<u64> {
    reader
        .entries()
        .iter()
        .map(|e| index_of(e.time_ns))
        .collect()
}

/// Which frame of the sequence a time stands for.
pub fn index_of(time_ns: u64) -> u64 {
    (time_ns - BASE_NS) / SECOND
}

pub fn append(writer: &mut Writer, i: u64) {
    let f = expected(i);
    writer.append(f.time_ns, f.kind, &f.payload).unwrap();
}

/// Writes frames `range` into `dir` and closes the writer.
pub fn record(dir: &Path, config: Config, range: std::ops::Range<u64>) {
    let mut writer = Writer::open(dir, config).unwrap();
    for i in range {
        append(&mut writer, i);
    }
    writer.close().unwrap();
}

/// A configuration whose segments hold a few dozen of the test frames; kinds 0 and 1 are
/// delta frames with a key frame every [`KEY_FRAME_INTERVAL`].
pub fn small_segments() -> Config {
    Config {
        max_segment_bytes: 16 << 10,
        max_total_bytes: 1 << 30,
        ..with_deltas()
    }
}

pub const KEY_FRAME_INTERVAL: u32 = 4;

/// The default configuration with kinds 0 and 1 as delta frames, a key frame every
/// [`KEY_FRAME_INTERVAL`].
pub fn with_deltas() -> Config {
    Config {
        delta_kinds: vec![0, 1],
        key_frame_interval: KEY_FRAME_INTERVAL,
        ..Config::default()
    }
}

/// The segment files of a recording directory, in name order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kvmrec"))
        .collect();
    files.sort();
    files
}

pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|d| d.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Reads every indexed frame and checks it against the raw bytes of its segment, parsed here
/// without the store's code: marker, both checksums, and the payload decompressed anew. Returns
/// the frames whose read succeeded; a read may fail (a damaged payload) but never return a
/// frame that does not match the bytes.
pub fn checked_frames(reader: &Reader, segment_bytes: &[Vec<u8>]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut zstd = zstd::bulk::Decompressor::new().unwrap();
    for (i, entry) in reader.entries().iter().enumerate() {
        match reader.read(i) {
            Ok(frame) => {
                let bytes = &segment_bytes[entry.segment];
                // Where the reader found the key frame of a delta frame; checked below.
                let key = reader
                    .key_frame(i)
                    .unwrap()
                    .map(|k| reader.entries()[k].offset);
                assert_matches_bytes(bytes, entry.offset, key, &frame, &mut zstd);
                frames.push(frame);
            }
            Err(e) => assert!(
                e.to_string()
                    .contains(&format!("at offset {}", entry.offset)),
                "read error without the offset: {e}"
            ),
        }
    }
    frames
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The key frame offset a delta frame's stored payload starts with (then comes the key frame's
/// payload CRC), if the frame at `offset` is
/// a delta frame.
pub fn key_offset_of(bytes: &[u8], offset: u64) -> Option<u64> {
    let at = usize::try_from(offset).unwrap();
    (bytes[at + 14] & 2 == 2)
        .then(|| u64::from_le_bytes(bytes[at + 32..at + 40].try_into().unwrap()))
}

/// Independent check of one frame against the bytes at `offset`; a delta frame is decompressed
/// with its key frame, at `key_offset` (where the reader found it) in the same segment, as
/// dictionary, after checking that frame is a self-contained one of the same kind, earlier,
/// with the payload checksum the delta frame names.
pub fn assert_matches_bytes(
    bytes: &[u8],
    offset: u64,
    key_offset: Option<u64>,
    frame: &Frame,
    zstd: &mut zstd::bulk::Decompressor,
) {
    let at = usize::try_from(offset).unwrap();
    let h = &bytes[at..at + 32];
    assert_eq!(h[..4], [0xE2, 0x6B, 0x76, 0x46], "marker at {offset}");
    assert_eq!(
        crc32fast::hash(&h[..28]),
        le32(h, 28),
        "header CRC at {offset}"
    );
    assert_eq!(
        u64::from_le_bytes(h[4..12].try_into().unwrap()),
        frame.time_ns
    );
    assert_eq!(u16::from_le_bytes([h[12], h[13]]), frame.kind);
    let stored_len = le32(h, 16) as usize;
    let stored = &bytes[at + 32..at + 32 + stored_len];
    assert_eq!(
        crc32fast::hash(stored),
        le32(h, 24),
        "payload CRC at {offset}"
    );
    let payload = if key_offset_of(bytes, offset).is_some() {
        assert_eq!(h[14], 3, "delta flags at {offset}");
        let key_offset = key_offset.expect("a delta frame has a key frame");
        assert!(key_offset < offset, "key frame after its delta at {offset}");
        let key = Frame {
            time_ns: u64::from_le_bytes(
                bytes[usize::try_from(key_offset).unwrap() + 4..][..8]
                    .try_into()
                    .unwrap(),
            ),
            kind: frame.kind,
            payload: raw_payload(bytes, key_offset, zstd),
        };
        assert_matches_bytes(bytes, key_offset, None, &key, zstd);
        assert_eq!(
            key_offset_of(bytes, key_offset),
            None,
            "a key frame at {key_offset}"
        );
        let key_crc = le32(&bytes[usize::try_from(key_offset).unwrap()..], 24);
        assert_eq!(le32(stored, 8), key_crc, "key frame checksum at {offset}");
        zstd::bulk::Decompressor::with_dictionary(&key.payload)
            .unwrap()
            .decompress(&stored[12..], le32(h, 20) as usize)
            .unwrap()
    } else if h[14] & 1 == 1 {
        zstd.decompress(stored, le32(h, 20) as usize).unwrap()
    } else {
        stored.to_vec()
    };
    assert_eq!(payload, frame.payload, "payload at {offset}");
}

/// The payload of the self-contained frame at `offset`, as appended.
fn raw_payload(bytes: &[u8], offset: u64, zstd: &mut zstd::bulk::Decompressor) -> Vec<u8> {
    let at = usize::try_from(offset).unwrap();
    let h = &bytes[at..at + 32];
    let stored = &bytes[at + 32..at + 32 + le32(h, 16) as usize];
    if h[14] & 1 == 1 {
        zstd.decompress(stored, le32(h, 20) as usize).unwrap()
    } else {
        stored.to_vec()
    }
}

/// Reads each segment file whole.
pub fn segment_bytes(reader: &Reader) -> Vec<Vec<u8>> {
    reader
        .segments()
        .iter()
        .map(|s| std::fs::read(&s.path).unwrap_or_default())
        .collect()
}

/// Drops a file's pages from the page cache (no root needed), so the next read goes to the disk.
pub fn evict_from_page_cache(path: &Path) {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: the descriptor is open for the duration of the call; fadvise only reads it.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise on {}", path.display());
}

/// A child process (this test binary re-run for one ignored test) that records until killed and
/// prints `appended N` after each frame.
pub struct KilledWriter {
    child: std::process::Child,
    lines: std::thread::JoinHandle<Option<u64>>,
}

impl KilledWriter {
    /// Starts the child test `name` and returns once it is about to write.
    pub fn start(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", name, "--nocapture"])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (started, wait) = std::sync::mpsc::channel();
        let lines = std::thread::spawn(move || {
            let (mut last, mut line) = (None, String::new());
            loop {
                line.clear();
                // A line cut short by the kill has no newline: it acknowledges nothing.
                if stdout.read_line(&mut line).unwrap_or(0) == 0 || !line.ends_with('\n') {
                    return last;
                }
                if line == "writing\n" {
                    let _ = started.send(());
                }
                if let Some(i) = line.trim_end().strip_prefix("appended ") {
                    last = Some(i.parse().unwrap());
                }
            }
        });
        wait.recv_timeout(std::time::Duration::from_mins(1))
            .expect("the child starts writing");
        Self { child, lines }
    }

    /// Kills the child with SIGKILL; returns the last frame it acknowledged.
    pub fn kill(mut self) -> Option<u64> {
        use std::os::unix::process::ExitStatusExt as _;
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        self.lines.join().unwrap()
    }
}
