//! Runs the NUMA accounting on synthetic arguments through `BPF_PROG_TEST_RUN`, so tests can check
//! attribution to nodes on fixture topologies this host does not have. Loaded by tests, never
//! attached; arguments: see `monitor_common::numa::PROG_NUMA_HARNESS`.

#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use super::account::on_numa_fault;
use crate::{record::low32, vmms::is_vmm};

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn numa_harness(ctx: RawTracePointContext) -> i32 {
    let arg = |n: usize| -> u64 { ctx.arg(n) };
    let tgid = low32(arg(0));
    if is_vmm(tgid) {
        on_numa_fault(tgid, low32(arg(1)), low32(arg(2)), low32(arg(3)), arg(4));
    }
    0
}
