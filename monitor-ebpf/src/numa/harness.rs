//! Runs the NUMA accounting on synthetic arguments through `BPF_PROG_TEST_RUN`, so tests can check
//! attribution to nodes on fixture topologies this host does not have, and placement decisions
//! this host never makes. Loaded by tests, never attached. Operations and their arguments: see
//! `monitor_common::numa::HARNESS_*`.

#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::numa::{HARNESS_NUMA_FAULT, HARNESS_NUMA_MOVE, NumaMoveKind};

use super::account::{on_numa_fault, on_numa_move};
use crate::{record::low32, vmms::is_vmm};

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn numa_harness(ctx: RawTracePointContext) -> i32 {
    let arg = |n: usize| -> u64 { ctx.arg(n) };
    match arg(0) {
        HARNESS_NUMA_FAULT => {
            let tgid = low32(arg(1));
            if is_vmm(tgid) {
                on_numa_fault(tgid, low32(arg(2)), low32(arg(3)), low32(arg(4)), arg(5));
            }
        }
        HARNESS_NUMA_MOVE => {
            let (kind, tgid, from, to) =
                (low32(arg(1)), low32(arg(2)), low32(arg(3)), low32(arg(4)));
            on_numa_move(kind, tgid, from, to);
            if kind == NumaMoveKind::Swap as u32 {
                // The other task moves the other way.
                on_numa_move(kind, low32(arg(5)), to, from);
            }
        }
        _ => {}
    }
    0
}
