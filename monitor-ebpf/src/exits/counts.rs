//! Exit counts: `kvm:kvm_exit` (hardware exits, VMX and SVM) and `kvm:kvm_userspace_exit`
//! (`KVM_RUN` returning to the VMM), per (VMM process, vCPU thread, source, ISA, reason). Each
//! exit also opens the interval that [`super::latency`] closes.

// `tgid`/`tid` are the kernel's names; program contexts are taken by value by aya's macros; and
// the shared per-event logic is force-inlined so each program is one flat function for the
// verifier, with no BPF-to-BPF call on the hot path.
#![expect(
    clippy::similar_names,
    clippy::needless_pass_by_value,
    clippy::inline_always
)]

use crate::tracepoint_program;
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::HashMap,
    programs::TracePointContext,
};
use monitor_common::{
    FIELD_ABSENT,
    exits::{
        EXITS_COUNTS_CAPACITY, ExitKey, ExitSource, Isa, KvmExitLayout, USERSPACE_ERRNO_FLAG,
        UserspaceExitLayout, VCPU_ID_UNKNOWN,
    },
};

use super::{
    count_drop,
    latency::{EXITS_PENDING, EXITS_PENDING_USERSPACE, open_interval, timed},
};
use crate::{
    atomic::atomic_add,
    record::{current_tgid_tid, read_field, read_fixed},
};

// One shared counter per key, not one per CPU: a key names one thread, which runs on one CPU at a
// time, so atomic adds barely contend, and the memory does not grow with the host's CPUs. Not
// preallocated: the capacity covers a large host, and a small one pays for the keys it has.
#[map(name = "EXITS_COUNTS")]
static EXITS_COUNTS: HashMap<ExitKey, u64> =
    HashMap::with_max_entries(EXITS_COUNTS_CAPACITY, BPF_F_NO_PREALLOC);

// Record layouts, overwritten by the loader with what this kernel's tracefs says. They live in
// .rodata, so the verifier sees them as constants and prunes the branches they rule out.
#[unsafe(no_mangle)]
static KVM_EXIT_LAYOUT: KvmExitLayout = KvmExitLayout::DEFAULT;
#[unsafe(no_mangle)]
static KVM_USERSPACE_EXIT_LAYOUT: UserspaceExitLayout = UserspaceExitLayout::DEFAULT;

tracepoint_program!("kvm", "kvm_exit", on_kvm_exit => kvm_exit);

fn on_kvm_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: volatile read of a loader-initialised global; the compiler must not fold it to the
    // default, the verifier knows the real value.
    let layout = unsafe { core::ptr::read_volatile(&raw const KVM_EXIT_LAYOUT) };
    if layout.has_default_record() {
        const L: KvmExitLayout = KvmExitLayout::DEFAULT;
        let reason = read_fixed::<u32, { L.exit_reason_offset as usize }>(&ctx);
        let isa = read_fixed::<u32, { L.isa_offset as usize }>(&ctx);
        let vcpu_id = read_fixed::<u32, { L.vcpu_id_offset as usize }>(&ctx);
        let (tgid, tid) = current_tgid_tid();
        record_kvm_exit(tgid, tid, vcpu_id, isa, u64::from(reason), started());
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
    record_kvm_exit(tgid, tid, vcpu_id, isa, reason, started());
    0
}

tracepoint_program!("kvm", "kvm_userspace_exit", on_kvm_userspace_exit => kvm_userspace_exit);

fn on_kvm_userspace_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: as in `kvm_exit`.
    let layout = unsafe { core::ptr::read_volatile(&raw const KVM_USERSPACE_EXIT_LAYOUT) };
    if layout == UserspaceExitLayout::DEFAULT {
        const L: UserspaceExitLayout = UserspaceExitLayout::DEFAULT;
        let reason = read_fixed::<u32, { L.reason_offset as usize }>(&ctx);
        let errno = read_fixed::<i32, { L.errno_offset as usize }>(&ctx);
        let (tgid, tid) = current_tgid_tid();
        record_userspace_exit(tgid, tid, reason, errno, started());
        return 0;
    }
    let Some(reason) = read_field::<u32>(&ctx, layout.reason_offset) else {
        return 0;
    };
    let errno = read_field::<i32>(&ctx, layout.errno_offset).unwrap_or(0);
    let (tgid, tid) = current_tgid_tid();
    record_userspace_exit(tgid, tid, reason, errno, started());
    0
}

/// When the exit started, if its latency is collected (the clock is read only then).
#[inline(always)]
pub fn started() -> Option<u64> {
    // SAFETY: a helper call without arguments.
    timed().then(|| unsafe { bpf_ktime_get_ns() })
}

#[inline(always)]
pub fn record_kvm_exit(
    tgid: u32,
    tid: u32,
    vcpu_id: u32,
    isa: u32,
    reason: u64,
    started: Option<u64>,
) {
    let key = ExitKey {
        tgid,
        tid,
        vcpu_id,
        source: ExitSource::KvmExit as u32,
        isa,
        pad: 0,
        reason,
    };
    count(key);
    if let Some(now) = started {
        open_interval(&EXITS_PENDING, key, now);
    }
}

#[inline(always)]
pub fn record_userspace_exit(tgid: u32, tid: u32, reason: u32, errno: i32, started: Option<u64>) {
    // A negative errno means KVM_RUN failed (e.g. -EINTR when a signal is pending): `reason` then
    // still holds the previous exit's reason and must not be counted as one.
    let reason = if errno < 0 {
        USERSPACE_ERRNO_FLAG | u64::from(errno.unsigned_abs())
    } else {
        u64::from(reason)
    };
    let key = ExitKey {
        tgid,
        tid,
        vcpu_id: VCPU_ID_UNKNOWN,
        source: ExitSource::Userspace as u32,
        isa: Isa::None as u32,
        pad: 0,
        reason,
    };
    count(key);
    if let Some(now) = started {
        open_interval(&EXITS_PENDING_USERSPACE, key, now);
    }
}

#[inline(always)]
fn count(key: ExitKey) {
    if add_one(&key) {
        return;
    }
    // First exit of this kind. Inserted only if absent, so a key another CPU inserted since the
    // lookup keeps its count; then the add goes to that entry.
    match EXITS_COUNTS.insert(key, 1, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        Err(EEXIST) if add_one(&key) => {}
        Err(_) => count_drop(),
    }
}

/// `-EEXIST`, as map updates return it.
const EEXIST: i32 = -17;

/// Adds one to the counter of `key` if it exists.
#[inline(always)]
fn add_one(key: &ExitKey) -> bool {
    let Some(counter) = EXITS_COUNTS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: a map value, 8-aligned and live while the program runs; every writer adds
    // atomically.
    unsafe { atomic_add(counter, 1) };
    true
}
