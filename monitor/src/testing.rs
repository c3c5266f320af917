//! Test helpers shared by the unit tests of several modules.

use std::io::Write as _;

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
