//! NUMA hinting faults of VMM threads: whether the memory a thread touched sat on its CPU's node,
//! and how many pages automatic NUMA balancing moved, counted in the kernel per (VMM, CPU node,
//! memory node) from `task_numa_fault()`.
//!
//! No tracepoint reports these faults, so the program hooks the function itself: fentry where
//! BPF trampolines work (no kprobe support needed, cheaper), a kprobe otherwise. Like the TLB and
//! block programs, it tests the watched-VMM bitmap (`crate::vmms`) first.

/// Per-CPU hash map: [`NumaFaultKey`] → [`NumaFaultStat`].
pub const NUMA_FAULTS_MAP: &str = "NUMA_FAULTS";
/// VMs × CPU nodes × memory nodes.
pub const NUMA_FAULTS_CAPACITY: u32 = 4_096;
/// Per-CPU array, one u64: faults not counted because `NUMA_FAULTS` was full.
pub const NUMA_DROPS_MAP: &str = "NUMA_DROPS";

/// The kernel function hooked, and its two programs.
pub const NUMA_FAULT_FUNCTION: &str = "task_numa_fault";
pub const PROG_TASK_NUMA_FAULT_FENTRY: &str = "task_numa_fault_fentry";
pub const PROG_TASK_NUMA_FAULT_KPROBE: &str = "task_numa_fault_kprobe";
/// Raw tracepoint program that runs the NUMA accounting on synthetic arguments through
/// `BPF_PROG_TEST_RUN`; loaded by tests, never attached. Its arguments: tgid, cpu, memory node,
/// pages, flags (as `task_numa_fault` gets them, the process as the current task's).
pub const PROG_NUMA_HARNESS: &str = "numa_harness";

/// `task_numa_fault(last_cpupid, mem_node, pages, flags)` flag bits
/// (`include/linux/sched/numa_balancing.h`, unchanged since 3.13).
pub const TNF_MIGRATED: u64 = 0x01;
/// The memory was on the faulting CPU's node when the fault was taken (before any migration):
/// the kernel's own definition of a local fault (`numa_faults_locality`).
pub const TNF_FAULT_LOCAL: u64 = 0x08;
pub const TNF_MIGRATE_FAIL: u64 = 0x10;

/// Key of `NUMA_FAULTS`. `mem_node` is where the memory is after the fault (the target node when
/// it was migrated); `cpu_node` is the faulting CPU's node, [`crate::places::PLACE_UNKNOWN`]
/// when userspace did not describe that CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NumaFaultKey {
    pub tgid: u32,
    pub cpu_node: u32,
    pub mem_node: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumaFaultStat {
    pub faults: u64,
    pub pages: u64,
    /// Pages of faults flagged [`TNF_FAULT_LOCAL`].
    pub local_pages: u64,
    pub migrated_pages: u64,
    pub migrate_failed_pages: u64,
}

const _: () = assert!(core::mem::size_of::<NumaFaultKey>() == 16);
const _: () = assert!(core::mem::size_of::<NumaFaultStat>() == 40);

/// Every program and map of the family, by the name the agent looks it up by.
const PROGRAMS: &[&str] = &[
    PROG_TASK_NUMA_FAULT_FENTRY,
    PROG_TASK_NUMA_FAULT_KPROBE,
    PROG_NUMA_HARNESS,
];
const MAPS: &[&str] = &[NUMA_FAULTS_MAP, NUMA_DROPS_MAP];
/// The read-only globals the agent sets before loading (record layouts, settings).
const GLOBALS: &[&str] = &[];
pub const NAMES: crate::Names = crate::Names {
    programs: PROGRAMS,
    maps: MAPS,
    globals: GLOBALS,
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::NumaFaultKey {}
    unsafe impl aya::Pod for super::NumaFaultStat {}
}
