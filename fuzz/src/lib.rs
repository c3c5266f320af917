//! What several fuzz targets share: a file tree encoded in one input, and the check that no
//! text meant for a terminal carries a character a terminal acts on.
//!
//! A tree input is a sequence of records, each
//! `kind: u8` (0 file, 1 symbolic link), `path_len: u16 LE`, `path`, `len: u32 LE`, `content`
//! (the file's bytes, or the link's target). Decoding stops at the first short record, so every
//! input is a tree. Paths are relative, their components made of `[A-Za-z0-9_.:-]` and never
//! `.` or `..`, so nothing is written outside the tree's root.

use std::path::{Path, PathBuf};

/// At most this many records are written, so one input stays quick.
const MAX_RECORDS: usize = 512;

/// A record of a tree input.
pub struct Record<'a> {
    pub link: bool,
    pub path: &'a str,
    pub content: &'a [u8],
}

/// The records of `data`, as far as they decode.
#[must_use]
pub fn records(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while out.len() < MAX_RECORDS {
        let Some((&kind, rest)) = data.split_first() else {
            break;
        };
        let Some((path, rest)) = take(rest, 2) else {
            break;
        };
        let Some((content, rest)) = take(rest, 4) else {
            break;
        };
        data = rest;
        let Ok(path) = std::str::from_utf8(path) else {
            continue;
        };
        if safe(path) {
            out.push(Record {
                link: kind & 1 == 1,
                path,
                content,
            });
        }
    }
    out
}

/// Encodes records (for writing seeds).
#[must_use]
pub fn encode(records: &[(bool, String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (link, path, content) in records {
        out.push(u8::from(*link));
        out.extend_from_slice(&u16::try_from(path.len()).unwrap().to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&u32::try_from(content.len()).unwrap().to_le_bytes());
        out.extend_from_slice(content);
    }
    out
}

/// A length-prefixed field: `width` bytes of little-endian length, then that many bytes.
fn take(data: &[u8], width: usize) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_at_checked(width)?;
    let mut bytes = [0u8; 4];
    bytes[..width].copy_from_slice(len);
    let len = usize::try_from(u32::from_le_bytes(bytes)).ok()?;
    rest.split_at_checked(len)
}

fn safe(path: &str) -> bool {
    let mut components = 0;
    for component in path.split('/') {
        components += 1;
        if component.is_empty()
            || component == "."
            || component == ".."
            || !component
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        {
            return false;
        }
    }
    components <= 12
}

/// A fresh, empty directory for this process's trees: in `/dev/shm` where there is one (a tree
/// is rewritten for every input, so memory-backed files make the target several times faster),
/// else under the system's temporary directory.
#[must_use]
pub fn scratch(name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("kvmtop-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

/// Writes the tree of `data` under `root` (emptied first).
pub fn write_tree(root: &Path, data: &[u8]) {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).expect("creating the tree's root");
    for record in records(data) {
        let path = root.join(record.path);
        if let Some(parent) = path.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                continue; // a file stands where a directory would go
            }
        }
        if record.link {
            let target = String::from_utf8_lossy(record.content);
            let _ = std::os::unix::fs::symlink(&*target, &path);
        } else {
            let _ = std::fs::write(&path, record.content);
        }
    }
}

/// Panics when `text`, meant for a terminal, holds a character a terminal acts on: C0 and C1
/// controls, DEL, bidirectional controls, zero-width characters, line and paragraph separators.
pub fn assert_terminal_safe(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }) {
        panic!("{what} reaches a terminal with {c:?}: {text:?}");
    }
}
