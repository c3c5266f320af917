//! VM exits: `kvm:kvm_exit` (hardware exits, VMX and SVM) and `kvm:kvm_userspace_exit` (`KVM_RUN`
//! returning to the VMM), counted per (VMM process, vCPU thread, source, ISA, reason).
//!
//! No "is this a watched VM?" filter is needed here: both tracepoints fire only in vCPU threads
//! of KVM users, so every event is one we want. The VMM is identified from the current task.

// `tgid`/`tid` are the kernel's names; program contexts are taken by value by aya's macros; and
// the shared per-event logic is force-inlined so each program is one flat function for the
// verifier, with no BPF-to-BPF call on the hot path.
#![expect(
    clippy::similar_names,
    clippy::needless_pass_by_value,
    clippy::inline_always
)]

use aya_ebpf::{
    EbpfContext as _,
    helpers::bpf_get_current_pid_tgid,
    macros::{map, raw_tracepoint, tracepoint},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{
    ExitKey, ExitSource, FIELD_ABSENT, Isa, KvmExitLayout, UserspaceExitLayout,
    exits::{EXIT_COUNTS_CAPACITY, USERSPACE_ERRNO_FLAG, VCPU_ID_UNKNOWN},
};

#[map(name = "EXIT_COUNTS")]
static EXIT_COUNTS: PerCpuHashMap<ExitKey, u64> =
    PerCpuHashMap::with_max_entries(EXIT_COUNTS_CAPACITY, 0);

#[map(name = "EXIT_DROPS")]
static EXIT_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// Record layouts, overwritten by the loader with what this kernel's tracefs says. They live in
// .rodata, so the verifier sees them as constants and prunes the branches they rule out.
#[unsafe(no_mangle)]
static KVM_EXIT_LAYOUT: KvmExitLayout = KvmExitLayout::DEFAULT;
#[unsafe(no_mangle)]
static USERSPACE_EXIT_LAYOUT: UserspaceExitLayout = UserspaceExitLayout::DEFAULT;

#[tracepoint(category = "kvm", name = "kvm_exit")]
pub fn kvm_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: volatile read of a loader-initialised global; the compiler must not fold it to the
    // default, the verifier knows the real value.
    let layout = unsafe { core::ptr::read_volatile(&raw const KVM_EXIT_LAYOUT) };
    if layout.has_default_record() {
        const L: KvmExitLayout = KvmExitLayout::DEFAULT;
        let reason = read_fixed::<u32, { L.exit_reason_offset as usize }>(&ctx);
        let isa = read_fixed::<u32, { L.isa_offset as usize }>(&ctx);
        let vcpu_id = read_fixed::<u32, { L.vcpu_id_offset as usize }>(&ctx);
        let (tgid, tid) = current_tgid_tid();
        record_kvm_exit(tgid, tid, vcpu_id, isa, u64::from(reason));
        return 0;
    }
    let reason = if layout.exit_reason_size == 8 {
        read_field::<u64>(&ctx, layout.exit_reason_offset)
    } else {
        read_field::<u32>(&ctx, layout.exit_reason_offset).map(u64::from)
    };
    let Some(reason) = reason else { return 0 };
    let isa = if layout.isa_offset == FIELD_ABSENT {
        layout.default_isa
    } else {
        read_field::<u32>(&ctx, layout.isa_offset).unwrap_or(layout.default_isa)
    };
    let vcpu_id = read_field::<u32>(&ctx, layout.vcpu_id_offset).unwrap_or(VCPU_ID_UNKNOWN);
    let (tgid, tid) = current_tgid_tid();
    record_kvm_exit(tgid, tid, vcpu_id, isa, reason);
    0
}

#[tracepoint(category = "kvm", name = "kvm_userspace_exit")]
pub fn kvm_userspace_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: as in `kvm_exit`.
    let layout = unsafe { core::ptr::read_volatile(&raw const USERSPACE_EXIT_LAYOUT) };
    if layout == UserspaceExitLayout::DEFAULT {
        const L: UserspaceExitLayout = UserspaceExitLayout::DEFAULT;
        let reason = read_fixed::<u32, { L.reason_offset as usize }>(&ctx);
        let errno = read_fixed::<i32, { L.errno_offset as usize }>(&ctx);
        let (tgid, tid) = current_tgid_tid();
        record_userspace_exit(tgid, tid, reason, errno);
        return 0;
    }
    let Some(reason) = read_field::<u32>(&ctx, layout.reason_offset) else {
        return 0;
    };
    let errno = read_field::<i32>(&ctx, layout.errno_offset).unwrap_or(0);
    let (tgid, tid) = current_tgid_tid();
    record_userspace_exit(tgid, tid, reason, errno);
    0
}

/// Runs the `kvm_exit` counting logic on synthetic arguments through `BPF_PROG_TEST_RUN`
/// (`kvm_exit` does not fire on every host, e.g. nested or PVM ones). Never attached.
/// Arguments: `tgid`, `tid`, `vcpu_id`, `isa`, raw exit reason.
#[raw_tracepoint(tracepoint = "kvm_exit")]
pub fn kvm_exit_harness(ctx: RawTracePointContext) -> i32 {
    let tgid: u64 = ctx.arg(0);
    let tid: u64 = ctx.arg(1);
    let vcpu_id: u64 = ctx.arg(2);
    let isa: u64 = ctx.arg(3);
    let reason: u64 = ctx.arg(4);
    record_kvm_exit(low32(tgid), low32(tid), low32(vcpu_id), low32(isa), reason);
    0
}

/// The same for `kvm_userspace_exit`. Arguments: tgid, tid, reason, errno (as i64).
#[raw_tracepoint(tracepoint = "kvm_userspace_exit")]
pub fn kvm_userspace_exit_harness(ctx: RawTracePointContext) -> i32 {
    let tgid: u64 = ctx.arg(0);
    let tid: u64 = ctx.arg(1);
    let reason: u64 = ctx.arg(2);
    let errno: i64 = ctx.arg(3);
    record_userspace_exit(
        low32(tgid),
        low32(tid),
        low32(reason),
        low32(errno.cast_unsigned()).cast_signed(),
    );
    0
}

#[inline(always)]
fn record_kvm_exit(tgid: u32, tid: u32, vcpu_id: u32, isa: u32, reason: u64) {
    count(ExitKey {
        tgid,
        tid,
        vcpu_id,
        source: ExitSource::KvmExit as u32,
        isa,
        pad: 0,
        reason,
    });
}

#[inline(always)]
fn record_userspace_exit(tgid: u32, tid: u32, reason: u32, errno: i32) {
    // A negative errno means KVM_RUN failed (e.g. -EINTR when a signal is pending): `reason` then
    // still holds the previous exit's reason and must not be counted as one.
    let reason = if errno < 0 {
        USERSPACE_ERRNO_FLAG | u64::from(errno.unsigned_abs())
    } else {
        u64::from(reason)
    };
    count(ExitKey {
        tgid,
        tid,
        vcpu_id: VCPU_ID_UNKNOWN,
        source: ExitSource::Userspace as u32,
        isa: Isa::None as u32,
        pad: 0,
        reason,
    });
}

#[inline(always)]
fn count(key: ExitKey) {
    if let Some(counter) = EXIT_COUNTS.get_ptr_mut(key) {
        // SAFETY: per-CPU value owned by this CPU while the program runs; no other writer.
        unsafe { *counter += 1 };
        return;
    }
    // First exit of this kind on any CPU. If another CPU inserted the key since our lookup, this
    // CPU's slot of it is still 0, so writing 1 (BPF_ANY) is right either way.
    if EXIT_COUNTS.insert(key, 1, 0).is_err()
        && let Some(drops) = EXIT_DROPS.get_ptr_mut(0)
    {
        // SAFETY: as above.
        unsafe { *drops += 1 };
    }
}

#[inline(always)]
fn current_tgid_tid() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (low32(pid_tgid >> 32), low32(pid_tgid))
}

/// The low 32 bits: raw tracepoint arguments arrive as u64 whatever their C type.
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "truncation is the point")]
fn low32(value: u64) -> u32 {
    value as u32
}

/// Reads a field at an offset known when the program is compiled: one load straight from the
/// record, about 15 ns cheaper per event than `bpf_probe_read`. Used when this kernel's layout is
/// the built-in one (the loader checked it against tracefs); the verifier only accepts record
/// reads whose offset is part of the load instruction, so a loader-provided offset cannot be
/// read this way.
#[inline(always)]
fn read_fixed<T: Copy, const OFFSET: usize>(ctx: &TracePointContext) -> T {
    // SAFETY: OFFSET is a field offset of this kernel's record (the caller checked the layout),
    // naturally aligned for T; the verifier bounds-checks the access against the record.
    unsafe { ctx.as_ptr().cast::<u8>().add(OFFSET).cast::<T>().read() }
}

/// Reads a field of the tracepoint record at a loader-provided offset.
#[inline(always)]
fn read_field<T: Copy>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    if offset == FIELD_ABSENT {
        return None;
    }
    // SAFETY: the offset comes from this kernel's tracefs format for this event, and read_at
    // uses bpf_probe_read, which fails cleanly rather than faulting.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}
