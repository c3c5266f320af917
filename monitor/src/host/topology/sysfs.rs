//! Reading sysfs attribute files without trusting them: bounded reads, and every failure names
//! the file so a broken host (or fixture) can be fixed from the message alone.

use std::{
    fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
    str::FromStr,
};

use super::cpulist::{CpuSet, parse_cpu_list};

/// Why the topology could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A file the kernel always provides is absent (sysfs not mounted, or a partial view of it).
    #[error("{path} is missing; is sysfs mounted at the configured root?")]
    Missing { path: PathBuf },
    /// The file exists but reading it failed.
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    /// The file's contents are not what the kernel writes there.
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

impl TopologyError {
    pub(super) fn malformed(path: &Path, reason: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The file the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing { path }
            | Self::Unreadable { path, .. }
            | Self::Malformed { path, .. } => path,
        }
    }
}

/// sysfs attributes are at most a page; a node's `meminfo` is a few KiB. The bound keeps a
/// fixture pointed at the wrong place (or a FIFO) from costing more than that.
const MAX_FILE: u64 = 1 << 20;

/// Reads a text file; `Ok(None)` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, TopologyError> {
    let mut bytes = Vec::new();
    match fs::File::open(path).and_then(|f| f.take(MAX_FILE).read_to_end(&mut bytes)) {
        Ok(_) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| TopologyError::malformed(path, "not UTF-8 text")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TopologyError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads a text file the kernel always provides.
pub(super) fn read_required(path: &Path) -> Result<String, TopologyError> {
    read_optional(path)?.ok_or_else(|| TopologyError::Missing {
        path: path.to_owned(),
    })
}

/// Parses `text` (read from `path`) as a CPU list.
pub(super) fn cpu_list(path: &Path, text: &str) -> Result<CpuSet, TopologyError> {
    parse_cpu_list(text).map_err(|e| TopologyError::malformed(path, e.to_string()))
}

/// Parses `text` (read from `path`) as one number.
pub(super) fn number<T: FromStr>(path: &Path, text: &str) -> Result<T, TopologyError> {
    let text = text.trim();
    text.parse()
        .map_err(|_| TopologyError::malformed(path, format!("'{text}' is not a number")))
}

/// Reads a file holding one number; `Ok(None)` when it does not exist.
pub(super) fn optional_number<T: FromStr>(path: &Path) -> Result<Option<T>, TopologyError> {
    read_optional(path)?
        .map(|text| number(path, &text))
        .transpose()
}

/// The entries of `dir` named `<prefix><number>` (`cpu0`, `node1`, `index3`), by number;
/// `Ok(None)` when `dir` does not exist. Other names (`cpufreq`, `uevent`) are not ours.
pub(super) fn numbered_entries(
    dir: &Path,
    prefix: &str,
) -> Result<Option<Vec<(u32, PathBuf)>>, TopologyError> {
    let unreadable = |source| TopologyError::Unreadable {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(id) = digits.parse::<u32>() {
            found.push((id, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(id, _)| *id);
    Ok(Some(found))
}
