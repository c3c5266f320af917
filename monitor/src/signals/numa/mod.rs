//! NUMA placement of VMs: the hinting faults the kernel counts for their threads (read with the
//! scheduler maps, see [`crate::signals::sched`]), and where their memory sits, read from procfs
//! ([`memory`]).

pub mod figures;
pub mod memory;

use monitor_common::{
    numa::{NumaFaultKey, NumaFaultStat},
    sched::PLACE_UNKNOWN,
};

/// NUMA faults of one VMM process from CPUs of one node on memory of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NumaFaultId {
    pub pid: u32,
    /// The faulting CPU's node, when the topology names it.
    pub cpu_node: Option<u32>,
    /// Where the memory is after the fault (the target node when it was migrated).
    pub mem_node: u32,
}

impl NumaFaultId {
    #[must_use]
    pub fn decode(raw: &NumaFaultKey) -> Self {
        Self {
            pid: raw.tgid,
            cpu_node: (raw.cpu_node != PLACE_UNKNOWN).then_some(raw.cpu_node),
            mem_node: raw.mem_node,
        }
    }
}

/// Fault counts; "local" is the kernel's own verdict (`TNF_FAULT_LOCAL`): the memory sat on the
/// faulting CPU's node when the fault was taken, before any migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumaFaultCounts {
    pub faults: u64,
    pub pages: u64,
    pub local_pages: u64,
    pub migrated_pages: u64,
    pub migrate_failed_pages: u64,
}

impl NumaFaultCounts {
    #[must_use]
    pub fn remote_pages(&self) -> u64 {
        self.pages.saturating_sub(self.local_pages)
    }

    /// Adds one CPU's (or one key's) counts.
    pub fn add_raw(&mut self, raw: &NumaFaultStat) {
        self.faults = self.faults.wrapping_add(raw.faults);
        self.pages = self.pages.wrapping_add(raw.pages);
        self.local_pages = self.local_pages.wrapping_add(raw.local_pages);
        self.migrated_pages = self.migrated_pages.wrapping_add(raw.migrated_pages);
        self.migrate_failed_pages = self
            .migrate_failed_pages
            .wrapping_add(raw.migrate_failed_pages);
    }

    pub fn merge(&mut self, other: &Self) {
        self.faults += other.faults;
        self.pages += other.pages;
        self.local_pages += other.local_pages;
        self.migrated_pages += other.migrated_pages;
        self.migrate_failed_pages += other.migrate_failed_pages;
    }

    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            faults: self.faults.saturating_sub(earlier.faults),
            pages: self.pages.saturating_sub(earlier.pages),
            local_pages: self.local_pages.saturating_sub(earlier.local_pages),
            migrated_pages: self.migrated_pages.saturating_sub(earlier.migrated_pages),
            migrate_failed_pages: self
                .migrate_failed_pages
                .saturating_sub(earlier.migrate_failed_pages),
        }
    }
}
