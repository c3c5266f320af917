//! Runs the TLB accounting on synthetic arguments through `BPF_PROG_TEST_RUN`, so tests can check
//! exact totals and the watched-VMM filter with chosen processes. Loaded by tests, never
//! attached. Operations and their arguments: see `monitor_common::tlb::HARNESS_*`.

#![expect(clippy::needless_pass_by_value, clippy::similar_names)]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::tlb::{HARNESS_PV_TLB_FLUSH, HARNESS_TLB_FLUSH};

use super::account::{on_flush, on_pv_flush};
use crate::record::low32;

#[raw_tracepoint(tracepoint = "tlb_flush")]
pub fn tlb_harness(ctx: RawTracePointContext) -> i32 {
    let arg = |n: usize| -> u64 { ctx.arg(n) };
    let (tgid, tid) = (low32(arg(1)), low32(arg(2)));
    match arg(0) {
        HARNESS_TLB_FLUSH => on_flush(tgid, tid, low32(arg(3)), arg(4)),
        HARNESS_PV_TLB_FLUSH => on_pv_flush(tgid, tid, arg(3) != 0),
        _ => {}
    }
    0
}
