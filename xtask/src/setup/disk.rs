//! Step 0: room for the build. A test run fills the target directory with several builds
//! (agent, tests, kernel programs, guests, fuzz targets); running out of space half-way fails
//! with a linker or "error writing dependencies" message that names no cause, so this checks first.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::util::{self, checking, ok};

const GIB: u64 = 1 << 30;

/// What a build from a fresh clone leaves behind, plus a margin for temporary files: a test
/// run measured 4.0 GiB in `target` and 1.1 GiB in `fuzz/target` (same disk); a run's build
/// of the agent alone about 1.5 GiB.
fn budget(for_tests: bool) -> u64 {
    if for_tests { 6 * GIB } else { 2 * GIB }
}

pub fn ensure(for_tests: bool) -> Result<()> {
    let target = util::target_dir()?;
    checking(&format!("free disk space for {}", target.display()));
    let existing = tree_size(&target);
    let needed = budget(for_tests).saturating_sub(existing);
    let probe = nearest_existing(&target);
    let free = free_bytes(&probe)?;
    if free < needed {
        util::missing("not enough");
        bail!(
            "{} has {} free; this {} needs about {} more (its target directory holds {} so far). \
             Free some space, or point CARGO_TARGET_DIR at a larger disk.",
            probe.display(),
            gib(free),
            if for_tests { "test run" } else { "build" },
            gib(needed),
            gib(existing),
        );
    }
    ok(&format!("{} free, about {} needed", gib(free), gib(needed)));
    Ok(())
}

fn gib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a rounded figure for a message
    let value = bytes as f64 / GIB as f64;
    format!("{value:.1} GiB")
}

/// The directory itself or its closest ancestor that exists (a fresh clone has no target yet).
fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stats` is a valid out-parameter.
    if unsafe { libc::statvfs(c_path.as_ptr(), &raw mut stats) } != 0 {
        bail!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Bytes allocated under `path`; unreadable entries count as empty (the estimate only
/// lowers what is asked for).
fn tree_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| tree_size(&entry.path()))
        .sum()
}
