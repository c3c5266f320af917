//! Facts about the host read from the kernel's pseudo-filesystems. Every reader takes its root
//! directory as a value so tests can point it at fixtures.
pub mod block;
pub mod btf;
pub mod clock;
pub mod cpu;
pub mod proc;
pub mod read;
pub mod settings;
pub mod topology;
pub mod tracefs;

use std::path::PathBuf;

/// Where procfs and sysfs are mounted; tests point these at fixture trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
        }
    }
}

impl Roots {
    /// `<dir>/proc` and `<dir>/sys`, the layout of the fixture trees.
    #[must_use]
    pub fn under(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
        }
    }
}
