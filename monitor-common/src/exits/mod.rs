//! VM-exit accounting: the map of exit counters and the tracepoint record layouts that
//! userspace reads from tracefs at start-up and hands to the programs as read-only globals.

pub mod details;
pub mod latency;
pub mod run_fds;

/// Hash map (shared by the CPUs, not preallocated): [`ExitKey`] → number of exits (u64), added
/// to atomically.
pub const EXITS_COUNTS_MAP: &str = "EXITS_COUNTS";
/// Per-CPU array with one u64 slot: exits that could not be counted because `EXITS_COUNTS` was full.
pub const EXITS_DROPS_MAP: &str = "EXITS_DROPS";
/// Capacity of `EXITS_COUNTS`: VMs × vCPUs × distinct reasons seen, 16 reasons for each of the
/// reference host's 16,000 vCPU threads (the agent's `bpf::sizing` has the table). Userspace removes the keys of
/// threads that have gone, so this bounds live state, not history; the map is not preallocated,
/// so a smaller host pays only for the keys it has.
pub const EXITS_COUNTS_CAPACITY: u32 = 262_144;

/// Program names, as the loader looks them up in the object.
pub const PROG_KVM_EXIT: &str = "kvm_exit";
pub const PROG_KVM_USERSPACE_EXIT: &str = "kvm_userspace_exit";
/// The programs on the tracepoints' raw arguments (BTF and raw tracepoints): the kernel skips
/// these only when the same program is already running on the CPU, and fills no record for them.
pub const PROG_KVM_USERSPACE_EXIT_BTF: &str = "kvm_uexit_btf";
pub const PROG_KVM_USERSPACE_EXIT_RAW: &str = "kvm_uexit_raw";
/// Raw tracepoint program that runs the exit programs' logic (counts, latency, details) on synthetic arguments through
/// `BPF_PROG_TEST_RUN`; loaded by tests, never attached. `args[0]` is one of the `HARNESS_*`
/// operations below; the rest are listed with each.
pub const PROG_EXITS_HARNESS: &str = "exits_harness";
/// tgid, tid, vCPU id, ISA, raw reason, timestamp ns.
pub const HARNESS_KVM_EXIT: u64 = 1;
/// tgid, tid, timestamp ns.
pub const HARNESS_KVM_ENTRY: u64 = 2;
/// tgid, tid, reason, errno (as i64), timestamp ns.
pub const HARNESS_USERSPACE_EXIT: u64 = 3;
/// tgid, tid, timestamp ns.
pub const HARNESS_KVM_RUN: u64 = 4;
/// tgid, tid, halt ns, waited, valid.
pub const HARNESS_WAKEUP: u64 = 5;
/// tgid, kind, sub, value (raw, as the tracepoint gives them).
pub const HARNESS_DETAIL: u64 = 6;

/// Read-only globals holding the record layouts (see `KvmExitLayout`, `UserspaceExitLayout`).
pub const GLOBAL_KVM_EXIT_LAYOUT: &str = "KVM_EXIT_LAYOUT";
pub const GLOBAL_KVM_USERSPACE_EXIT_LAYOUT: &str = "KVM_USERSPACE_EXIT_LAYOUT";

/// Which kernel tracepoint produced an exit count.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitSource {
    /// `kvm:kvm_exit`: every hardware VM exit (VMX or SVM).
    KvmExit = 1,
    /// `kvm:kvm_userspace_exit`: `KVM_RUN` returned to the VMM process (I/O, MMIO, HLT, …).
    Userspace = 2,
    /// `kvm:kvm_vcpu_wakeup`: a halted vCPU woke up (latency = how long it was halted).
    Halt = 3,
}

/// Instruction-set family of a hardware exit, as the `isa` field of `kvm:kvm_exit` encodes it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Not a hardware exit (userspace exits).
    None = 0,
    Vmx = 1,
    Svm = 2,
}

/// Key of `EXITS_COUNTS`.
///
/// `reason` holds the raw value from the kernel: for VMX the full 32-bit exit reason (basic reason
/// in the low 16 bits, flags such as `FAILED_VMENTRY` above); for SVM the exit code (u64 on newer
/// kernels); for userspace exits the `KVM_EXIT_*` number, or [`USERSPACE_ERRNO_FLAG`] | -errno when
/// `KVM_RUN` returned an error. Userspace decodes it; the kernel side never interprets it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitKey {
    /// Process (thread group) of the VMM.
    pub tgid: u32,
    /// Thread that ran the vCPU.
    pub tid: u32,
    /// KVM's vCPU id where the record carries it, else [`VCPU_ID_UNKNOWN`].
    pub vcpu_id: u32,
    /// [`ExitSource`] as u32.
    pub source: u32,
    /// [`Isa`] as u32.
    pub isa: u32,
    /// Explicit padding so the struct has no implicit holes (hash keys compare bytes).
    pub pad: u32,
    pub reason: u64,
}

/// `ExitKey::vcpu_id` when the tracepoint record does not say which vCPU it was.
pub const VCPU_ID_UNKNOWN: u32 = u32::MAX;
/// Set in `ExitKey::reason` of a userspace exit whose `KVM_RUN` returned `-errno`.
pub const USERSPACE_ERRNO_FLAG: u64 = 1 << 32;

/// Where the fields the exit program needs sit in a `kvm:kvm_exit` record on this kernel.
/// Offsets are [`crate::FIELD_ABSENT`] when the field does not exist.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmExitLayout {
    pub exit_reason_offset: u32,
    /// 4 on most kernels; 8 where SVM exit codes were widened to u64.
    pub exit_reason_size: u32,
    pub isa_offset: u32,
    pub vcpu_id_offset: u32,
    /// ISA to record when the record has no `isa` field (taken from the host CPU flags).
    pub default_isa: u32,
}

/// Where the fields sit in a `kvm:kvm_userspace_exit` record on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserspaceExitLayout {
    pub reason_offset: u32,
    pub errno_offset: u32,
}

impl KvmExitLayout {
    /// The layout of Linux 5.x–6.18 on x86-64; userspace overrides it with what tracefs says.
    pub const DEFAULT: Self = Self {
        exit_reason_offset: 8,
        exit_reason_size: 4,
        isa_offset: 24,
        vcpu_id_offset: 56,
        default_isa: Isa::Vmx as u32,
    };
}

impl KvmExitLayout {
    /// Whether the record fields sit where [`Self::DEFAULT`] says (the ISA default aside), so the
    /// program can read them at compile-time offsets.
    #[must_use]
    pub const fn has_default_record(&self) -> bool {
        self.exit_reason_offset == Self::DEFAULT.exit_reason_offset
            && self.exit_reason_size == Self::DEFAULT.exit_reason_size
            && self.isa_offset == Self::DEFAULT.isa_offset
            && self.vcpu_id_offset == Self::DEFAULT.vcpu_id_offset
    }
}

impl UserspaceExitLayout {
    pub const DEFAULT: Self = Self {
        reason_offset: 8,
        errno_offset: 12,
    };
}

const _: () = assert!(core::mem::size_of::<ExitKey>() == 32);
const _: () = assert!(core::mem::size_of::<KvmExitLayout>() == 20);
const _: () = assert!(core::mem::size_of::<UserspaceExitLayout>() == 8);

/// Every program and map of the family, by the name the agent looks it up by: these, and one
/// program and one global per detail event (`details::DETAIL_EVENTS`).
const PROGRAMS: &[&str] = &[
    PROG_KVM_EXIT,
    PROG_KVM_USERSPACE_EXIT,
    PROG_KVM_USERSPACE_EXIT_BTF,
    PROG_KVM_USERSPACE_EXIT_RAW,
    latency::PROG_KVM_ENTRY,
    latency::PROG_KVM_ENTRY_BTF,
    latency::PROG_KVM_ENTRY_RAW,
    latency::PROG_KVM_FPU,
    latency::PROG_KVM_FPU_BTF,
    latency::PROG_KVM_FPU_RAW,
    latency::PROG_KVM_VCPU_WAKEUP,
    latency::PROG_KVM_VCPU_WAKEUP_BTF,
    latency::PROG_KVM_VCPU_WAKEUP_RAW,
    PROG_EXITS_HARNESS,
];
const MAPS: &[&str] = &[
    EXITS_COUNTS_MAP,
    EXITS_DROPS_MAP,
    latency::EXITS_LATENCY_MAP,
    latency::EXITS_PENDING_MAP,
    latency::EXITS_PENDING_USERSPACE_MAP,
    details::EXITS_DETAILS_MAP,
    details::EXITS_DETAILS_OVERFLOW_MAP,
    run_fds::EXITS_RUN_FDS_MAP,
    run_fds::EXITS_FD_WANTED_MAP,
    run_fds::EXITS_FD_ASKING_MAP,
];
/// The read-only globals the agent sets before loading (record layouts, settings).
const GLOBALS: &[&str] = &[
    GLOBAL_KVM_EXIT_LAYOUT,
    GLOBAL_KVM_USERSPACE_EXIT_LAYOUT,
    latency::GLOBAL_KVM_FPU_LAYOUT,
    latency::GLOBAL_EXITS_TIMED,
    latency::GLOBAL_KVM_VCPU_WAKEUP_LAYOUT,
];
/// The programs (classic, BTF, raw) and the global of every detail event, in one pass.
const DETAIL_COUNT: usize = details::DETAIL_EVENTS.len();
const DETAIL_NAMES: ([&str; 3 * DETAIL_COUNT], [&str; DETAIL_COUNT]) = {
    let mut names = ([""; 3 * DETAIL_COUNT], [""; DETAIL_COUNT]);
    let mut i = 0;
    while i < DETAIL_COUNT {
        let event = &details::DETAIL_EVENTS[i];
        names.0[3 * i] = event.program;
        names.0[3 * i + 1] = event.raw_programs.0;
        names.0[3 * i + 2] = event.raw_programs.1;
        names.1[i] = event.global;
        i += 1;
    }
    names
};
pub const NAMES: crate::Names = crate::Names {
    programs: &crate::concat::<{ PROGRAMS.len() + DETAIL_NAMES.0.len() }>(
        PROGRAMS,
        &DETAIL_NAMES.0,
    ),
    maps: MAPS,
    globals: &crate::concat::<{ GLOBALS.len() + DETAIL_NAMES.1.len() }>(
        GLOBALS,
        &DETAIL_NAMES.1,
    ),
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all three are #[repr(C)], contain only integers, and have no padding (asserted above),
    // so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::ExitKey {}
    unsafe impl aya::Pod for super::KvmExitLayout {}
    unsafe impl aya::Pod for super::UserspaceExitLayout {}
}
