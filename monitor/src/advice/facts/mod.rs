//! Configuration facts: the host's (memory management, KVM parameters, topology; read by
//! [`crate::host::settings`]) and each VM's (from the discovered QEMU command line, plus the
//! affinities in effect).
//!
//! Every fact is optional. A file that is missing, unreadable or not understood makes the fact
//! unknown, and the rules that need it stay quiet and say so: nothing here panics or guesses.

#[cfg(test)]
mod tests;
mod vm;

pub use vm::{DiskFacts, HelperThread, MemoryBacking, VcpuThread, VmFacts};

pub use crate::host::{
    Roots,
    settings::{
        CpuFacts, HostFacts, HugePagePool, HwVirt, Ksm, KvmAmd, KvmIntel, KvmParams, MemInfo,
        NodeFacts, Thp, Virtualization, VmStat,
    },
};
