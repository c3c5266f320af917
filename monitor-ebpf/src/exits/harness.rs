//! Runs the exit programs' logic on synthetic arguments through `BPF_PROG_TEST_RUN`:
//! `kvm_exit`/`kvm_entry` do not fire on every host (nested, PVM), and tests need exact timings.
//! Loaded by tests, never attached. Operations and their arguments: see
//! `monitor_common::exits::HARNESS_*`.

#![expect(clippy::needless_pass_by_value, clippy::similar_names)]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::{
    exits::details::DetailKind,
    exits::{
        HARNESS_DETAIL, HARNESS_KVM_ENTRY, HARNESS_KVM_EXIT, HARNESS_KVM_RUN,
        HARNESS_USERSPACE_EXIT, HARNESS_WAKEUP,
    },
};

use super::{
    counts::{record_kvm_exit, record_userspace_exit},
    details::record_detail,
    latency::{EXITS_PENDING, EXITS_PENDING_USERSPACE, close_interval, record_halt},
};
use crate::record::low32;

#[raw_tracepoint(tracepoint = "kvm_exit")]
pub fn exits_harness(ctx: RawTracePointContext) -> i32 {
    let arg = |n: usize| -> u64 { ctx.arg(n) };
    let (tgid, tid) = (low32(arg(1)), low32(arg(2)));
    match arg(0) {
        HARNESS_KVM_EXIT => {
            record_kvm_exit(
                tgid,
                tid,
                low32(arg(3)),
                low32(arg(4)),
                arg(5),
                Some(arg(6)),
            );
        }
        HARNESS_KVM_ENTRY => close_interval(&EXITS_PENDING, tid, arg(3)),
        HARNESS_USERSPACE_EXIT => record_userspace_exit(
            tgid,
            tid,
            low32(arg(3)),
            low32(arg(4)).cast_signed(),
            Some(arg(5)),
        ),
        HARNESS_KVM_RUN => close_interval(&EXITS_PENDING_USERSPACE, tid, arg(3)),
        HARNESS_WAKEUP => record_halt(tgid, tid, arg(3), arg(4) != 0, arg(5) != 0),
        HARNESS_DETAIL => {
            // arg 2 is the kind here (details are per process, not per thread).
            let kind = match arg(2) {
                1 => DetailKind::Pio,
                2 => DetailKind::Mmio,
                3 => DetailKind::Msr,
                4 => DetailKind::PageFault,
                5 => DetailKind::Hypercall,
                6 => DetailKind::ApicIpi,
                7 => DetailKind::HaltPoll,
                _ => DetailKind::Emulation,
            };
            record_detail(tgid, kind, arg(3), arg(4));
        }
        _ => {}
    }
    0
}
