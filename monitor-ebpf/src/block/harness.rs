//! Runs the block accounting on synthetic arguments through `BPF_PROG_TEST_RUN`, so tests can
//! check exact buckets, bytes, operations and attribution for request sequences with chosen
//! timestamps and processes. Loaded by tests, never attached. Operations and their arguments:
//! see `monitor_common::block::HARNESS_*`.

#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::block::{
    HARNESS_COMPLETE, HARNESS_ISSUE, HARNESS_SUBMIT, RequestKey, op_of_rwbs,
};

use super::account::{Request, complete, issue_pending, issue_untracked, on_complete, on_submit};
use crate::{record::low32, vmms::is_vmm};

#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn block_harness(ctx: RawTracePointContext) -> i32 {
    let arg = |n: usize| -> u64 { ctx.arg(n) };
    // A device of 0 with an id is how the raw-argument programs key a request by its address.
    let key = || RequestKey::by_sector(low32(arg(2)), arg(3));
    let request = |key: RequestKey| {
        let [first, second, ..] = arg(4).to_le_bytes();
        Request {
            key,
            dev: low32(arg(2)),
            op: op_of_rwbs(first, second) as u32,
            bytes: low32(arg(5)),
        }
    };
    let tgid = low32(arg(1));
    match arg(0) {
        HARNESS_SUBMIT if is_vmm(tgid) => {
            let key = if arg(7) != 0 {
                RequestKey::by_address(arg(3))
            } else {
                key()
            };
            on_submit(tgid, &request(key), arg(6), arg(8) != 0);
        }
        HARNESS_ISSUE => {
            let request = request(key());
            if !issue_pending(&request.key, arg(6), || request.bytes) && arg(7) != 0 && is_vmm(tgid)
            {
                issue_untracked(tgid, &request, arg(6));
            }
        }
        HARNESS_COMPLETE if arg(5) != 0 => complete(&key(), arg(4), |_| false),
        HARNESS_COMPLETE => on_complete(&key(), arg(4)),
        _ => {}
    }
    0
}
