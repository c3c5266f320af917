//! Runs the NUMA accounting on synthetic arguments through `BPF_PROG_TEST_RUN`, so tests can check
//! attribution to nodes on fixture topologies this host does not have, and placement decisions
//! this host never makes. Loaded by tests, never attached. Operations and their arguments: see
//! `monitor_common::numa::HARNESS_*`.

#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{
    helpers::bpf_get_current_task, macros::raw_tracepoint, programs::RawTracePointContext,
};
use monitor_common::numa::{
    HARNESS_MOVED_IS_CURRENT, HARNESS_NUMA_FAULT, HARNESS_NUMA_MOVE, HARNESS_NUMA_PLACEMENT_RAW,
    HARNESS_OTHER_IS_CURRENT, NumaMoveKind,
};

use super::{
    account::{on_numa_fault, on_numa_move},
    raw_programs::{on_move_raw, on_stick_raw, on_swap_raw},
};
use crate::{raw::Args, record::low32, vmms::is_vmm};

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
        HARNESS_NUMA_PLACEMENT_RAW => {
            // SAFETY: a helper call without arguments.
            let current = unsafe { bpf_get_current_task() };
            let task = |flag: u64| if arg(4) & flag == 0 { 0 } else { current };
            let (src_cpu, dst_cpu) = (arg(2), arg(3));
            // The raw argument arrays of the two prototypes, on the stack.
            let mut single = [task(HARNESS_MOVED_IS_CURRENT), src_cpu, dst_cpu];
            let mut pair = [
                task(HARNESS_MOVED_IS_CURRENT),
                src_cpu,
                task(HARNESS_OTHER_IS_CURRENT),
                dst_cpu,
            ];
            let args = |array: &mut [u64]| Args::new(array.as_mut_ptr().cast());
            match low32(arg(1)) {
                k if k == NumaMoveKind::Move as u32 => on_move_raw(args(&mut single)),
                k if k == NumaMoveKind::Swap as u32 => on_swap_raw(args(&mut pair)),
                k if k == NumaMoveKind::Stick as u32 => on_stick_raw(args(&mut pair)),
                _ => 0,
            };
        }
        _ => {}
    }
    0
}
