//! Exit-handling latency, as log2 histograms per (VMM, thread, source, reason):
//! `kvm_exit` → `kvm_entry` on the same thread (a hardware exit handled end to end),
//! `kvm_userspace_exit` → the thread's next `KVM_RUN` (time spent in the VMM; its start is seen
//! on `kvm_fpu`, see `monitor_common::exits::latency`), and the halt
//! duration `kvm_vcpu_wakeup` reports.
//!
//! An exit opens an interval in a per-thread pending map; the next entry on that thread closes
//! it. A thread can migrate between the two, so these maps are not per-CPU; a thread's events
//! never run concurrently, so plain updates are exact.

#![expect(
    clippy::similar_names,
    clippy::needless_pass_by_value,
    clippy::inline_always
)]

use crate::tracepoint_program;
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC, helpers::bpf_ktime_get_ns, macros::map, maps::HashMap,
    programs::TracePointContext,
};
use monitor_common::{
    exits::{
        ExitKey, ExitSource, Isa, VCPU_ID_UNKNOWN,
        latency::{
            EXITS_LATENCY_CAPACITY, FPU_LOAD, FpuLayout, HALT_BLOCKED, HALT_SPURIOUS,
            PENDING_CAPACITY, PendingExit, WakeupLayout,
        },
    },
    histogram::LatencyHist,
};

use super::count_drop;
use crate::record::{current_tgid_tid, read_field_sized, read_fixed_sized};

#[map(name = "EXITS_PENDING")]
pub static EXITS_PENDING: HashMap<u32, PendingExit> =
    HashMap::with_max_entries(PENDING_CAPACITY, 0);

#[map(name = "EXITS_PENDING_USERSPACE")]
pub static EXITS_PENDING_USERSPACE: HashMap<u32, PendingExit> =
    HashMap::with_max_entries(PENDING_CAPACITY, 0);

#[map(name = "EXITS_LATENCY")]
static EXITS_LATENCY: HashMap<ExitKey, LatencyHist> =
    HashMap::with_max_entries(EXITS_LATENCY_CAPACITY, BPF_F_NO_PREALLOC);

/// Inserted for a key's first interval: a map value, so the helper copies it without a 336-byte
/// stack buffer.
static ZERO_HIST: LatencyHist = LatencyHist::ZERO;

#[unsafe(no_mangle)]
static KVM_VCPU_WAKEUP_LAYOUT: WakeupLayout = WakeupLayout::DEFAULT;
#[unsafe(no_mangle)]
static KVM_FPU_LAYOUT: FpuLayout = FpuLayout::DEFAULT;
/// 1 when latency is collected (see `monitor_common::exits::latency::GLOBAL_EXITS_TIMED`).
#[unsafe(no_mangle)]
static EXITS_TIMED: u32 = 0;

/// Whether exits open intervals. A loader-set .rodata global: the verifier knows its value and
/// drops the untaken branch from the program.
#[inline(always)]
pub fn timed() -> bool {
    // SAFETY: volatile read of a loader-initialised global (see counts.rs).
    unsafe { core::ptr::read_volatile(&raw const EXITS_TIMED) != 0 }
}

tracepoint_program!("kvm", "kvm_entry", on_kvm_entry => kvm_entry);

fn on_kvm_entry(_ctx: TracePointContext) -> u32 {
    let (_, tid) = current_tgid_tid();
    close_interval(&EXITS_PENDING, tid, now());
    0
}

// `kvm:kvm_fpu` fires twice per `KVM_RUN`: load at its start, unload at its end.
tracepoint_program!("kvm", "kvm_fpu", on_kvm_fpu => kvm_fpu);

fn on_kvm_fpu(ctx: TracePointContext) -> u32 {
    // SAFETY: volatile read of a loader-initialised global (see counts.rs).
    let layout = unsafe { core::ptr::read_volatile(&raw const KVM_FPU_LAYOUT) };
    let load = if layout == FpuLayout::DEFAULT {
        const L: FpuLayout = FpuLayout::DEFAULT;
        read_fixed_sized::<{ L.load_offset as usize }, 4>(&ctx)
    } else {
        read_field_sized(&ctx, layout.load_offset, 4)
    };
    on_kvm_run_start(load);
    0
}

/// When `load` says a `KVM_RUN` starts: ends the thread's time in the VMM, and notes the file it
/// runs when the agent asks.
#[inline(always)]
pub fn on_kvm_run_start(load: u64) {
    if load & 0xFFFF_FFFF != u64::from(FPU_LOAD) {
        return;
    }
    let (tgid, tid) = current_tgid_tid();
    close_interval(&EXITS_PENDING_USERSPACE, tid, now());
    super::run_fds::note_run_fd(tgid, tid);
}

tracepoint_program!("kvm", "kvm_vcpu_wakeup", on_kvm_vcpu_wakeup => kvm_vcpu_wakeup);

fn on_kvm_vcpu_wakeup(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const KVM_VCPU_WAKEUP_LAYOUT) };
    let (ns, waited, valid) = if layout == WakeupLayout::DEFAULT {
        const L: WakeupLayout = WakeupLayout::DEFAULT;
        (
            read_fixed_sized::<{ L.ns_offset as usize }, 8>(&ctx),
            read_fixed_sized::<{ L.waited_offset as usize }, 1>(&ctx),
            read_fixed_sized::<{ L.valid_offset as usize }, 1>(&ctx),
        )
    } else {
        let valid = if layout.valid_offset == monitor_common::FIELD_ABSENT {
            1
        } else {
            read_field_sized(&ctx, layout.valid_offset, 1)
        };
        (
            read_field_sized(&ctx, layout.ns_offset, 8),
            read_field_sized(&ctx, layout.waited_offset, 1),
            valid,
        )
    };
    let (tgid, tid) = current_tgid_tid();
    record_halt(tgid, tid, ns, waited != 0, valid != 0);
    0
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Starts timing `key`'s exit on its thread, replacing any interval left open (an exit whose
/// entry was never seen, e.g. a thread that was killed in between).
#[inline(always)]
pub fn open_interval(pending: &HashMap<u32, PendingExit>, key: ExitKey, now: u64) {
    if let Some(slot) = pending.get_ptr_mut(key.tid) {
        // SAFETY: map value of this thread; only this thread's events write it.
        unsafe {
            (*slot).start_ns = now;
            (*slot).key = key;
        }
        return;
    }
    let fresh = PendingExit { start_ns: now, key };
    if pending.insert(key.tid, fresh, 0).is_err() {
        count_drop();
    }
}

/// Ends the interval open on `tid`, if any, and files it in its histogram.
#[inline(always)]
pub fn close_interval(pending: &HashMap<u32, PendingExit>, tid: u32, now: u64) {
    let Some(slot) = pending.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: as in `open_interval`.
    let (start, key) = unsafe { ((*slot).start_ns, (*slot).key) };
    if start == 0 || now < start {
        return;
    }
    // SAFETY: as above. Marking it closed is cheaper than deleting the entry, which the thread's
    // next exit would re-create.
    unsafe { (*slot).start_ns = 0 };
    add_to_histogram(&key, now - start);
}

#[inline(always)]
pub fn record_halt(tgid: u32, tid: u32, ns: u64, waited: bool, valid: bool) {
    let mut outcome = 0;
    if waited {
        outcome |= HALT_BLOCKED;
    }
    if !valid {
        outcome |= HALT_SPURIOUS;
    }
    let key = ExitKey {
        tgid,
        tid,
        vcpu_id: VCPU_ID_UNKNOWN,
        source: ExitSource::Halt as u32,
        isa: Isa::None as u32,
        pad: 0,
        reason: outcome,
    };
    add_to_histogram(&key, ns);
}

#[inline(always)]
fn add_to_histogram(key: &ExitKey, ns: u64) {
    let hist = if let Some(hist) = EXITS_LATENCY.get_ptr_mut(key) {
        hist
    } else {
        // BPF_NOEXIST: never reset a histogram another event created meanwhile.
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "by value would copy 336 bytes onto the 512-byte BPF stack"
        )]
        let _ = EXITS_LATENCY.insert(key, &ZERO_HIST, 1);
        let Some(hist) = EXITS_LATENCY.get_ptr_mut(key) else {
            count_drop();
            return;
        };
        hist
    };
    // SAFETY: map value keyed by one thread; only that thread's events write it.
    unsafe { (*hist).record(ns) };
}
