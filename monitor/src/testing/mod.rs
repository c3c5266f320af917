//! Test helpers shared by the unit tests of several modules: a fixed snapshot for presenter
//! tests ([`fixture`]) and the skip reporter.

pub mod fixture;
mod fuzz_seeds;

use std::{collections::BTreeMap, io::Write as _};

/// `pairs` as a map with owned keys, as the model keys its sources and hooks.
pub fn named<V: Clone>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// A copy of the directory tree `from` at `to`, symbolic links kept as links: a writable copy of
/// a fixture, to change in one place.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), dest).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Asserts that no line of a rendered screen holds a character a terminal would act on
/// (controls, escapes, bidirectional overrides): what guest owners name reaches it escaped.
pub fn assert_terminal_safe(screen: &str) {
    for line in screen.lines() {
        let unsafe_chars: Vec<char> = line
            .chars()
            .filter(|&c| crate::model::untrusted::is_unsafe(c))
            .collect();
        assert!(unsafe_chars.is_empty(), "{unsafe_chars:?} in {line:?}");
    }
}

/// Asserts that the committed file `relative` (to the monitor crate) holds `generated`, or, with
/// the environment variable `update` set, writes it: files generated from the code (the JSON
/// Schema, the metrics reference) cannot drift from it. `regenerate` is the command to name.
pub fn assert_committed(relative: &str, generated: &str, update: &str, regenerate: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if std::env::var_os(update).is_some() {
        std::fs::write(&path, generated).expect("writing the generated file");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{relative} differs from what the code generates: regenerate it with `{regenerate}` \
         and commit the result"
    );
}

/// Reports a test that cannot run here, in the format of `monitor/tests/support`'s `skip()`:
/// on stderr, and appended to `$KVMTOP_SKIP_LOG` when set, so the suite's summary counts it as
/// skipped rather than passed.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
    if let Some(path) = std::env::var_os("KVMTOP_SKIP_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("opening the skip log");
        // One write per line: tests run in parallel and append to the same file.
        file.write_all(format!("{test}\t{reason}\n").as_bytes())
            .expect("writing the skip log");
    }
}
