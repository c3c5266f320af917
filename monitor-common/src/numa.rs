//! NUMA hinting faults of VMM threads: whether the memory a thread touched sat on its CPU's node,
//! and how many pages automatic NUMA balancing moved, counted in the kernel per (VMM, CPU node,
//! memory node) from `task_numa_fault()`.
//!
//! No tracepoint reports these faults, so the program hooks the function itself: fentry where
//! BPF trampolines work (no kprobe support needed, cheaper), a kprobe otherwise. Like the TLB and
//! block programs, it tests the watched-VMM bitmap (`crate::vmms`) first.
//!
//! The scheduler's NUMA placement decisions have tracepoints: `sched:sched_move_numa` (a task
//! moved to a CPU of its preferred node), `sched:sched_swap_numa` (two tasks exchanged CPUs) and
//! `sched:sched_stick_numa` (a wanted move found no CPU). Their programs count them per (VMM,
//! kind, from node, to node), for the task the record names, not the current one.

/// Per-CPU hash map: [`NumaFaultKey`] → [`NumaFaultStat`].
pub const NUMA_FAULTS_MAP: &str = "NUMA_FAULTS";
/// VMs × CPU nodes × memory nodes.
pub const NUMA_FAULTS_CAPACITY: u32 = 4_096;
/// Per-CPU hash map: [`NumaMoveKey`] → u64 placement decisions.
pub const NUMA_MOVES_MAP: &str = "NUMA_MOVES";
/// VMs × kinds × node pairs.
pub const NUMA_MOVES_CAPACITY: u32 = 4_096;
/// Per-CPU array, one u64: faults and placement decisions not counted because `NUMA_FAULTS` or
/// `NUMA_MOVES` was full.
pub const NUMA_DROPS_MAP: &str = "NUMA_DROPS";

/// The kernel function hooked, and its two programs.
pub const NUMA_FAULT_FUNCTION: &str = "task_numa_fault";
pub const PROG_TASK_NUMA_FAULT_FENTRY: &str = "task_numa_fault_fentry";
pub const PROG_TASK_NUMA_FAULT_KPROBE: &str = "task_numa_fault_kprobe";
/// The placement tracepoints' classic programs (the kernel keeps 15 bytes of a name:
/// `sched_stick_num`).
pub const PROG_SCHED_MOVE_NUMA: &str = "sched_move_numa";
pub const PROG_SCHED_SWAP_NUMA: &str = "sched_swap_numa";
pub const PROG_SCHED_STICK_NUMA: &str = "sched_stick_numa";
/// Their BTF and raw tracepoint twins, which read the tasks' tgids at [`NumaTaskFields`] and
/// name the nodes of the CPUs the tracepoints pass from `CPU_PLACES` (as the classic records
/// do with `cpu_to_node`).
pub const PROG_SCHED_MOVE_NUMA_BTF: &str = "move_numa_btf";
pub const PROG_SCHED_MOVE_NUMA_RAW: &str = "move_numa_raw";
pub const PROG_SCHED_SWAP_NUMA_BTF: &str = "swap_numa_btf";
pub const PROG_SCHED_SWAP_NUMA_RAW: &str = "swap_numa_raw";
pub const PROG_SCHED_STICK_NUMA_BTF: &str = "stick_numa_btf";
pub const PROG_SCHED_STICK_NUMA_RAW: &str = "stick_numa_raw";
/// Raw tracepoint program that runs the NUMA accounting on synthetic arguments through
/// `BPF_PROG_TEST_RUN`; loaded by tests, never attached. `args[0]` is a `HARNESS_*` operation.
pub const PROG_NUMA_HARNESS: &str = "numa_harness";
/// tgid, cpu, memory node, pages, flags: a fault as `task_numa_fault` gets it, the process as
/// the current task's.
pub const HARNESS_NUMA_FAULT: u64 = 1;
/// [`NumaMoveKind`], tgid, from node, to node, and for a swap the other task's tgid: the record
/// of a placement tracepoint.
pub const HARNESS_NUMA_MOVE: u64 = 2;
/// [`NumaMoveKind`], source CPU, destination CPU (-1 for none, as a C int), and which tasks
/// are the current one ([`HARNESS_MOVED_IS_CURRENT`], [`HARNESS_OTHER_IS_CURRENT`]; the others
/// are null): the raw arguments of a placement tracepoint, run through its raw program's
/// handler, which reads the tgid from the test's own task at this kernel's offset.
pub const HARNESS_NUMA_PLACEMENT_RAW: u64 = 3;
/// The task a placement is about is the current task.
pub const HARNESS_MOVED_IS_CURRENT: u64 = 1;
/// The other task of a swap or stick is the current task.
pub const HARNESS_OTHER_IS_CURRENT: u64 = 2;

/// Read-only globals holding the placement tracepoints' record layouts.
pub const GLOBAL_SCHED_MOVE_NUMA_LAYOUT: &str = "SCHED_MOVE_NUMA_LAYOUT";
pub const GLOBAL_SCHED_SWAP_NUMA_LAYOUT: &str = "SCHED_SWAP_NUMA_LAYOUT";
pub const GLOBAL_SCHED_STICK_NUMA_LAYOUT: &str = "SCHED_STICK_NUMA_LAYOUT";
/// Read-only global holding [`NumaTaskFields`].
pub const GLOBAL_NUMA_TASK_FIELDS: &str = "NUMA_TASK_FIELDS";

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

/// Which placement decision a [`NumaMoveKey`] counts.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumaMoveKind {
    /// `sched_move_numa`: the task moved to a CPU of another node (usually its preferred one).
    Move = 1,
    /// `sched_swap_numa`: the task exchanged CPUs with another task; counted for each of the two
    /// that is a watched VMM's, each from its old node to its new one.
    Swap = 2,
    /// `sched_stick_numa`: the scheduler wanted to move the task but found no CPU; `to` is the
    /// node it wanted, [`NUMA_NODE_NONE`] when it had no candidate.
    Stick = 3,
}

/// A node field of the placement records that names no node (the records' -1).
pub const NUMA_NODE_NONE: u32 = u32::MAX;

/// Key of `NUMA_MOVES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NumaMoveKey {
    pub tgid: u32,
    /// [`NumaMoveKind`] as u32.
    pub kind: u32,
    pub from_node: u32,
    pub to_node: u32,
}

/// Where the fields a placement program reads sit in its record (`FIELD_ABSENT` when this
/// kernel's record has no such field). The moved task's tgid and nodes; for a swap, the other
/// task's tgid too (it moves the other way).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumaMoveLayout {
    pub tgid_offset: u32,
    pub src_nid_offset: u32,
    pub dst_nid_offset: u32,
    pub dst_tgid_offset: u32,
}

impl NumaMoveLayout {
    /// `sched_move_numa` of Linux 3.15–6.18 on x86-64 (`pid tgid ngid src_cpu src_nid dst_cpu
    /// dst_nid`); userspace overrides it with what tracefs says.
    pub const MOVE: Self = Self {
        tgid_offset: 12,
        src_nid_offset: 24,
        dst_nid_offset: 32,
        dst_tgid_offset: crate::FIELD_ABSENT,
    };
    /// `sched_swap_numa` (`src_pid src_tgid src_ngid src_cpu src_nid dst_pid dst_tgid dst_ngid
    /// dst_cpu dst_nid`). `sched_stick_numa` has had this record since "sched/numa: Trace when no
    /// candidate CPU was found on the preferred node" (Linux 5.7), the move record before.
    pub const SWAP: Self = Self {
        tgid_offset: 12,
        src_nid_offset: 24,
        dst_nid_offset: 44,
        dst_tgid_offset: 32,
    };
    /// `sched_stick_numa`: the swap record, but only its first task is the one that stuck (the
    /// other, when there is one, is where it would have gone), so no other tgid is read.
    pub const STICK: Self = Self {
        dst_tgid_offset: crate::FIELD_ABSENT,
        ..Self::SWAP
    };
}

/// Where this kernel keeps what the raw placement programs read of a `struct task_struct`,
/// from its BTF (Rust eBPF programs get no CO-RE relocations; see `sched::TaskFields`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumaTaskFields {
    /// `task_struct.tgid` (the process id).
    pub tgid: u32,
}

impl NumaTaskFields {
    /// Placeholder until the loader sets this kernel's.
    pub const UNSET: Self = Self { tgid: 0 };
}

const _: () = assert!(core::mem::size_of::<NumaFaultKey>() == 16);
const _: () = assert!(core::mem::size_of::<NumaFaultStat>() == 40);
const _: () = assert!(core::mem::size_of::<NumaMoveKey>() == 16);
const _: () = assert!(core::mem::size_of::<NumaMoveLayout>() == 16);
const _: () = assert!(core::mem::size_of::<NumaTaskFields>() == 4);

/// Every program and map of the family, by the name the agent looks it up by.
const PROGRAMS: &[&str] = &[
    PROG_TASK_NUMA_FAULT_FENTRY,
    PROG_TASK_NUMA_FAULT_KPROBE,
    PROG_SCHED_MOVE_NUMA,
    PROG_SCHED_SWAP_NUMA,
    PROG_SCHED_STICK_NUMA,
    PROG_SCHED_MOVE_NUMA_BTF,
    PROG_SCHED_MOVE_NUMA_RAW,
    PROG_SCHED_SWAP_NUMA_BTF,
    PROG_SCHED_SWAP_NUMA_RAW,
    PROG_SCHED_STICK_NUMA_BTF,
    PROG_SCHED_STICK_NUMA_RAW,
    PROG_NUMA_HARNESS,
];
const MAPS: &[&str] = &[NUMA_FAULTS_MAP, NUMA_MOVES_MAP, NUMA_DROPS_MAP];
/// The read-only globals the agent sets before loading (record layouts, settings).
const GLOBALS: &[&str] = &[
    GLOBAL_SCHED_MOVE_NUMA_LAYOUT,
    GLOBAL_SCHED_SWAP_NUMA_LAYOUT,
    GLOBAL_SCHED_STICK_NUMA_LAYOUT,
    GLOBAL_NUMA_TASK_FIELDS,
];
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
    unsafe impl aya::Pod for super::NumaMoveKey {}
    unsafe impl aya::Pod for super::NumaMoveLayout {}
    unsafe impl aya::Pod for super::NumaTaskFields {}
}
