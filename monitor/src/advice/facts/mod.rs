//! Configuration facts: the host's (memory management, KVM parameters, topology) and each
//! VM's (from the discovered QEMU command line, plus the affinities in effect).
//!
//! Every fact is optional. A file that is missing, unreadable or not understood makes the fact
//! unknown, and the rules that need it stay quiet and say so: nothing here panics or guesses.

mod host;
mod parse;
#[cfg(test)]
mod tests;
mod topology;
mod vm;

use std::path::PathBuf;

pub use host::{
    HostFacts, HwVirt, Ksm, KvmAmd, KvmIntel, KvmParams, MemInfo, Thp, Virtualization, VmStat,
};
pub use parse::parse_cpu_list;
pub(crate) use parse::read_prefix;
pub use topology::{CpuFacts, HugePagePool, NodeFacts};
pub use vm::{DiskFacts, HelperThread, MemoryBacking, VcpuThread, VmFacts};

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
