//! Runs the scheduler accounting on synthetic arguments through `BPF_PROG_TEST_RUN`, so tests can
//! check exact buckets and totals for event sequences with chosen timestamps. Loaded by tests,
//! never attached. Operations and their arguments: see `monitor_common::sched::HARNESS_*`.

#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::sched::{HARNESS_SWITCH, HARNESS_WAKEUP};

use super::account::{Switch, is_watched, on_switch, on_wakeup};
use crate::record::low32;

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_harness(ctx: RawTracePointContext) -> i32 {
    let arg = |n: usize| -> u64 { ctx.arg(n) };
    match arg(0) {
        HARNESS_SWITCH => {
            let event = Switch {
                cpu: low32(arg(1)),
                prev_tid: low32(arg(2)),
                prev_state: arg(3),
                next_tid: low32(arg(4)),
                prev_tgid: low32(arg(5)),
                now: arg(6),
            };
            let prev_watched = is_watched(event.prev_tid);
            let next_watched = is_watched(event.next_tid);
            if prev_watched || next_watched {
                on_switch(&event, prev_watched, next_watched);
            }
        }
        HARNESS_WAKEUP if is_watched(low32(arg(1))) => {
            on_wakeup(low32(arg(1)), arg(2));
        }
        _ => {}
    }
    0
}
