//! The exit programs on the tracepoints' raw arguments: the same accounting as the classic
//! programs (counts.rs, latency.rs, details.rs), with each field taken from its argument by
//! position instead of from a filled record. The arguments are plain values (a `kvm_vcpu`
//! pointer, where there is one, is never read), so these need no struct offsets; the agent checks
//! each tracepoint's argument count in the kernel's BTF before it attaches them. `kvm_exit`
//! stays classic: its raw arguments carry no exit reason.

// `tgid`/`tid` are the kernel's names; each handler is inlined into its two programs (BTF and
// raw), so each program is one flat function: a BPF-to-BPF call costs every event.
#![expect(clippy::similar_names, clippy::inline_always)]

use monitor_common::exits::details::DetailKind;

use super::{
    counts::{record_userspace_exit, started},
    details::record_detail,
    latency::{EXITS_PENDING, close_interval, on_kvm_run_start, record_halt},
};
use crate::{
    raw::Args,
    raw_programs,
    record::{current_tgid_tid, low32},
};

// (__u32 reason, int errno)
raw_programs!("kvm_userspace_exit", on_userspace_exit => kvm_uexit_btf, kvm_uexit_raw);

#[inline(always)]
fn on_userspace_exit(args: Args) -> u32 {
    let (tgid, tid) = current_tgid_tid();
    #[expect(
        clippy::cast_possible_wrap,
        reason = "an int argument, sign-extended to u64"
    )]
    let errno = low32(args.get::<1>()) as i32;
    record_userspace_exit(tgid, tid, low32(args.get::<0>()), errno, started());
    0
}

// (struct kvm_vcpu *vcpu[, bool immediate_exit]): only the thread matters.
raw_programs!("kvm_entry", on_entry => kvm_entry_btf, kvm_entry_raw);

#[inline(always)]
fn on_entry(_args: Args) -> u32 {
    let (_, tid) = current_tgid_tid();
    close_interval(&EXITS_PENDING, tid, now());
    0
}

// (u32 load): load at the start of a `KVM_RUN`, unload at its end.
raw_programs!("kvm_fpu", on_fpu => kvm_fpu_btf, kvm_fpu_raw);

#[inline(always)]
fn on_fpu(args: Args) -> u32 {
    on_kvm_run_start(args.get::<0>());
    0
}

// (__u64 ns, bool waited, bool valid)
raw_programs!("kvm_vcpu_wakeup", on_wakeup => kvm_wakeup_btf, kvm_wakeup_raw);

#[inline(always)]
fn on_wakeup(args: Args) -> u32 {
    let (tgid, tid) = current_tgid_tid();
    let waited = args.get::<1>() & 0xff != 0;
    let valid = args.get::<2>() & 0xff != 0;
    record_halt(tgid, tid, args.get::<0>(), waited, valid);
    0
}

/// One detail program: `sub` and `value` are the argument positions of the fields the classic
/// record names (see `monitor_common::exits::details`), or `_` for a field not read.
macro_rules! raw_detail {
    ($event:literal, $kind:expr, sub $sub:tt, value $value:tt => $btf:ident, $raw:ident) => {
        // A module per program keeps each one's handler apart; symbols keep their names.
        mod $raw {
            use super::*;

            raw_programs!($event, handle => $btf, $raw);

            #[inline(always)]
            fn handle(args: Args) -> u32 {
                let (tgid, _) = current_tgid_tid();
                record_detail(tgid, $kind, raw_detail!(@arg args $sub), raw_detail!(@arg args $value));
                0
            }
        }
    };
    (@arg $args:ident _) => {
        0
    };
    (@arg $args:ident $n:literal) => {
        $args.get::<$n>()
    };
}

// (int rw, unsigned port, unsigned size, unsigned count, const void *data)
raw_detail!("kvm_pio", DetailKind::Pio, sub 0, value 1 => kvm_pio_btf, kvm_pio_raw);
// (int type, int len, u64 gpa, void *val)
raw_detail!("kvm_mmio", DetailKind::Mmio, sub 0, value 2 => kvm_mmio_btf, kvm_mmio_raw);
// (unsigned write, u32 ecx, u64 data, bool exception)
raw_detail!("kvm_msr", DetailKind::Msr, sub 0, value 1 => kvm_msr_btf, kvm_msr_raw);
// (struct kvm_vcpu *vcpu, u64 fault_address, u64 error_code)
raw_detail!("kvm_page_fault", DetailKind::PageFault, sub 2, value 1 => kvm_pf_btf, kvm_pf_raw);
// (unsigned long nr, unsigned long a0, a1, a2, a3)
raw_detail!("kvm_hypercall", DetailKind::Hypercall, sub _, value 0 => kvm_hcall_btf, kvm_hcall_raw);
// (__u32 icr_low, __u32 dest_id)
raw_detail!("kvm_apic_ipi", DetailKind::ApicIpi, sub 0, value 1 => kvm_ipi_btf, kvm_ipi_raw);
// (bool grow, unsigned int vcpu_id, unsigned int new, unsigned int old)
raw_detail!("kvm_halt_poll_ns", DetailKind::HaltPoll, sub 0, value _ => kvm_hpoll_btf, kvm_hpoll_raw);
// (struct kvm_vcpu *vcpu, __u8 failed)
raw_detail!("kvm_emulate_insn", DetailKind::Emulation, sub 1, value _ => kvm_emul_btf, kvm_emul_raw);

#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}
