//! Where each host CPU sits (its core, last-level cache and NUMA node), as userspace describes
//! it to the programs that classify migrations (sched) and attribute faults to nodes (numa).

/// Array: CPU id → [`CpuPlace`], filled by userspace from the host topology.
pub const CPU_PLACES_MAP: &str = "CPU_PLACES";
/// CPUs described in `CPU_PLACES` (the largest `NR_CPUS` of common distribution kernels); a CPU
/// above is classified as unknown.
pub const MAX_CPUS: u32 = 8_192;

/// What userspace knows about one CPU, as the programs need it to classify a migration. Ids are
/// host-wide indexes (a core is its SMT sibling set); [`PLACE_UNKNOWN`] where sysfs is silent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPlace {
    pub core: u32,
    pub llc: u32,
    pub node: u32,
    /// 1 once userspace has written this CPU; 0 (the array's initial value) means unknown.
    pub known: u32,
}

pub const PLACE_UNKNOWN: u32 = u32::MAX;

impl CpuPlace {
    pub const UNKNOWN: Self = Self {
        core: PLACE_UNKNOWN,
        llc: PLACE_UNKNOWN,
        node: PLACE_UNKNOWN,
        known: 0,
    };
}

/// What a migration crossed, as an index into [`ThreadSched::migrations`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationClass {
    /// To an SMT sibling of the same core.
    SameCore = 0,
    /// To another core under the same last-level cache.
    SameLlc = 1,
    /// To another LLC on the same NUMA node.
    CrossLlc = 2,
    /// To another NUMA node.
    CrossNode = 3,
    /// A CPU whose node or cache userspace could not tell.
    Unknown = 4,
}
pub const MIGRATION_CLASSES: usize = 5;

/// Classifies a move between two CPUs. The node is compared before the LLC because sub-NUMA
/// clustering splits one L3 across nodes, and remote memory is the dearer loss. Runs in the
/// kernel programs; userspace tests run it on fixture topologies.
#[inline(always)]
#[must_use]
#[expect(clippy::inline_always, reason = "on the kernel hot path")]
pub const fn classify_migration(from: &CpuPlace, to: &CpuPlace) -> MigrationClass {
    if from.known == 0 || to.known == 0 || from.node == PLACE_UNKNOWN || to.node == PLACE_UNKNOWN {
        return MigrationClass::Unknown;
    }
    if from.node != to.node {
        return MigrationClass::CrossNode;
    }
    if from.llc == PLACE_UNKNOWN || to.llc == PLACE_UNKNOWN {
        return MigrationClass::Unknown;
    }
    if from.llc != to.llc {
        return MigrationClass::CrossLlc;
    }
    if from.core != PLACE_UNKNOWN && from.core == to.core {
        MigrationClass::SameCore
    } else {
        MigrationClass::SameLlc
    }
}

const _: () = assert!(core::mem::size_of::<CpuPlace>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (size asserted above).
    unsafe impl aya::Pod for super::CpuPlace {}
}
