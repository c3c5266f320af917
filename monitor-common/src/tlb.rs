//! TLB shootdowns: `tlb:tlb_flush` counted per VMM process, thread and reason (with the pages
//! flushed), host-wide per CPU and reason, and KVM's paravirtual TLB flushes of guests
//! (`kvm:kvm_pv_tlb_flush`).
//!
//! A shootdown shows up twice: the CPU that changed a mapping sends IPIs (reason
//! [`TLB_REMOTE_SEND_IPI`], in the sender's context), and every CPU that had the mm loaded
//! flushes (reason [`TLB_REMOTE_SHOOTDOWN`], in the context of whatever task it interrupted, a
//! vCPU thread when the guest was running there). The IPI's callback is not a reliable marker:
//! on a kernel that is itself a guest with PV TLB flush, the IPI tracepoint reports a generic
//! callback, so reasons are what is counted.

/// Per-CPU hash map: [`TlbKey`] → [`TlbCount`], for watched VMM processes only. Per CPU so that
/// the CPU a shootdown was received on is known, and increments need no atomics.
pub const TLB_VMM_MAP: &str = "TLB_VMM";
/// Threads × reasons of all VMMs on the host. Userspace removes the keys of processes that have
/// gone and of threads that have exited from the live ones (VMMs start and end worker threads
/// all their life, each with a new tid), so this bounds live state, not history.
pub const TLB_VMM_CAPACITY: u32 = 4_096;
/// Per-CPU array indexed by reason (capped at [`TLB_REASON_OTHER`]) → [`TlbCount`] of every task:
/// what each CPU flushed, whoever ran there.
pub const TLB_HOST_MAP: &str = "TLB_HOST";
/// Reasons 0–5 exist today; the slots above leave room, and the last takes anything newer.
pub const TLB_REASON_SLOTS: u32 = 8;
pub const TLB_REASON_OTHER: u32 = TLB_REASON_SLOTS - 1;
/// Per-CPU array with one u64 slot: flushes of VMMs not counted because `TLB_VMM` was full.
pub const TLB_DROPS_MAP: &str = "TLB_DROPS";

/// Program names (≤ 15 bytes: the kernel keeps no more, and `bpftool` reports them by it).
pub const PROG_TLB_FLUSH: &str = "tlb_flush";
pub const PROG_KVM_PV_TLB_FLUSH: &str = "kvm_pv_tlb_flush";
/// `tlb_flush` on its raw arguments (`int reason, unsigned long pages`), as a BTF tracepoint
/// and as a raw tracepoint; `kvm_pv_tlb_flush` as a raw tracepoint (kvm is usually a module, and
/// BTF tracepoints in modules cannot be attached here). See `block::PROG_BLOCK_IO_START_BTF`.
pub const PROG_TLB_FLUSH_BTF: &str = "tlb_flush_btf";
pub const PROG_TLB_FLUSH_RAW: &str = "tlb_flush_raw";
pub const PROG_KVM_PV_TLB_FLUSH_RAW: &str = "pv_flush_raw";
/// Raw tracepoint program running the TLB accounting on synthetic arguments through
/// `BPF_PROG_TEST_RUN`; loaded by tests, never attached. `args[0]` is a `HARNESS_*` operation.
pub const PROG_TLB_HARNESS: &str = "tlb_harness";
/// tgid, tid, reason (as the record's int), pages.
pub const HARNESS_TLB_FLUSH: u64 = 1;
/// tgid, tid, `need_flush_tlb`.
pub const HARNESS_PV_TLB_FLUSH: u64 = 2;

/// Read-only globals holding the record layouts.
pub const GLOBAL_TLB_FLUSH_LAYOUT: &str = "TLB_FLUSH_LAYOUT";
pub const GLOBAL_KVM_PV_TLB_FLUSH_LAYOUT: &str = "KVM_PV_TLB_FLUSH_LAYOUT";

/// `enum tlb_flush_reason` values the agent names; the kernel side never interprets them.
pub const TLB_FLUSH_ON_TASK_SWITCH: u32 = 0;
pub const TLB_REMOTE_SHOOTDOWN: u32 = 1;
pub const TLB_LOCAL_SHOOTDOWN: u32 = 2;
pub const TLB_LOCAL_MM_SHOOTDOWN: u32 = 3;
pub const TLB_REMOTE_SEND_IPI: u32 = 4;
pub const TLB_REMOTE_WRONG_CPU: u32 = 5;

/// The record's `pages` for a flush of the whole address space (`TLB_FLUSH_ALL`, -1UL).
pub const TLB_FLUSH_ALL: u64 = u64::MAX;

/// Which tracepoint a [`TlbKey`] counts.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbSource {
    /// `tlb:tlb_flush`; `reason` is the record's reason.
    Flush = 1,
    /// `kvm:kvm_pv_tlb_flush`; `reason` is 1 when the guest asked for a flush, else 0.
    PvFlush = 2,
}

/// Key of `TLB_VMM`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbKey {
    pub tgid: u32,
    /// The thread the flush ran in: the sender, or the thread a receiving CPU interrupted.
    pub tid: u32,
    /// [`TlbSource`] as u32.
    pub source: u32,
    pub reason: u32,
}

/// Running totals of one key (or of one reason on one CPU, in `TLB_HOST`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbCount {
    pub events: u64,
    /// Pages of the ranged flushes (`pages` of the record, full flushes excluded).
    pub pages: u64,
    /// Flushes of the whole address space ([`TLB_FLUSH_ALL`]).
    pub full: u64,
}

/// Where `reason` (int) and `pages` (unsigned long) sit in a `tlb:tlb_flush` record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbFlushLayout {
    pub reason_offset: u32,
    pub pages_offset: u32,
}

impl TlbFlushLayout {
    /// The layout of Linux 4.x–6.18 on x86-64; userspace overrides it with what tracefs says.
    pub const DEFAULT: Self = Self {
        reason_offset: 8,
        pages_offset: 16,
    };
}

/// Where `need_flush_tlb` (bool) sits in a `kvm:kvm_pv_tlb_flush` record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvTlbFlushLayout {
    pub need_flush_offset: u32,
}

impl PvTlbFlushLayout {
    pub const DEFAULT: Self = Self {
        need_flush_offset: 12,
    };
}

/// The `TLB_HOST` slot of a reason.
#[must_use]
pub const fn host_slot(reason: u32) -> u32 {
    if reason < TLB_REASON_OTHER {
        reason
    } else {
        TLB_REASON_OTHER
    }
}

const _: () = assert!(core::mem::size_of::<TlbKey>() == 16);
const _: () = assert!(core::mem::size_of::<TlbCount>() == 24);
const _: () = assert!(core::mem::size_of::<TlbFlushLayout>() == 8);
const _: () = assert!(core::mem::size_of::<PvTlbFlushLayout>() == 4);

/// Every program and map of the family, by the name the agent looks it up by.
const PROGRAMS: &[&str] = &[
    PROG_TLB_FLUSH,
    PROG_KVM_PV_TLB_FLUSH,
    PROG_TLB_FLUSH_BTF,
    PROG_TLB_FLUSH_RAW,
    PROG_KVM_PV_TLB_FLUSH_RAW,
    PROG_TLB_HARNESS,
];
const MAPS: &[&str] = &[TLB_VMM_MAP, TLB_HOST_MAP, TLB_DROPS_MAP];
/// The read-only globals the agent sets before loading (record layouts, settings).
const GLOBALS: &[&str] = &[GLOBAL_TLB_FLUSH_LAYOUT, GLOBAL_KVM_PV_TLB_FLUSH_LAYOUT];
pub const NAMES: crate::Names = crate::Names {
    programs: PROGRAMS,
    maps: MAPS,
    globals: GLOBALS,
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::TlbKey {}
    unsafe impl aya::Pod for super::TlbCount {}
    unsafe impl aya::Pod for super::TlbFlushLayout {}
    unsafe impl aya::Pod for super::PvTlbFlushLayout {}
}
