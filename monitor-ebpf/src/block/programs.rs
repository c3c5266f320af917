//! The block tracepoint programs. Submission programs test the watched-VMM bitmap before
//! reading the record; issue and completion cannot (they run in whatever context the block layer
//! or driver is in) and look the request up instead.

// Program contexts are taken by value by aya's macros, and the record reading is force-inlined
// so that each program is one flat function for the verifier.
#![expect(clippy::needless_pass_by_value, clippy::inline_always)]

use crate::tracepoint_program;
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TracePointContext};
use monitor_common::block::{BlockRqLayout, RequestKey, SubmitMode, op_of_rwbs};

use super::account::{Request, issue_pending, issue_untracked, on_complete, on_submit};
use crate::{
    record::{current_tgid_tid, read_field, read_fixed},
    vmms::is_vmm,
};

// Record layouts and the submission mode, overwritten by the loader with this kernel's (see
// exits/counts.rs for why they are .rodata globals).
#[unsafe(no_mangle)]
static BLOCK_IO_START_LAYOUT: BlockRqLayout = BlockRqLayout::DEFAULT;
#[unsafe(no_mangle)]
static BLOCK_RQ_INSERT_LAYOUT: BlockRqLayout = BlockRqLayout::DEFAULT;
#[unsafe(no_mangle)]
static BLOCK_RQ_ISSUE_LAYOUT: BlockRqLayout = BlockRqLayout::DEFAULT;
#[unsafe(no_mangle)]
static BLOCK_RQ_COMPLETE_LAYOUT: BlockRqLayout = BlockRqLayout::COMPLETE_DEFAULT;
#[unsafe(no_mangle)]
pub(super) static BLOCK_SUBMIT_MODE: u32 = SubmitMode::IoStart as u32;

const RQ: BlockRqLayout = BlockRqLayout::DEFAULT;
const COMPLETE: BlockRqLayout = BlockRqLayout::COMPLETE_DEFAULT;

tracepoint_program!("block", "block_io_start", on_block_io_start => block_io_start);

fn on_block_io_start(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_tgid_tid();
    if !is_vmm(tgid) {
        return 0;
    }
    // SAFETY: volatile read of a loader-initialised global.
    let layout = unsafe { core::ptr::read_volatile(&raw const BLOCK_IO_START_LAYOUT) };
    on_submit(tgid, &read_request(&ctx, &layout), now(), false);
    0
}

// Attached only on kernels without `block_io_start`.
tracepoint_program!("block", "block_rq_insert", on_block_rq_insert => block_rq_insert);

fn on_block_rq_insert(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_tgid_tid();
    if !is_vmm(tgid) {
        return 0;
    }
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const BLOCK_RQ_INSERT_LAYOUT) };
    // A requeued request is inserted again: keep the time it was first submitted.
    on_submit(tgid, &read_request(&ctx, &layout), now(), true);
    0
}

tracepoint_program!("block", "block_rq_issue", on_block_rq_issue => block_rq_issue);

fn on_block_rq_issue(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const BLOCK_RQ_ISSUE_LAYOUT) };
    let request = read_request(&ctx, &layout);
    let now = now();
    if issue_pending(&request.key, now, || request.bytes) {
        return 0;
    }
    // SAFETY: as above.
    let mode = unsafe { core::ptr::read_volatile(&raw const BLOCK_SUBMIT_MODE) };
    if mode == SubmitMode::InsertOrIssue as u32 {
        let (tgid, _) = current_tgid_tid();
        if is_vmm(tgid) {
            issue_untracked(tgid, &request, now);
        }
    }
    0
}

tracepoint_program!("block", "block_rq_complete", on_block_rq_complete => block_rq_complete);

fn on_block_rq_complete(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const BLOCK_RQ_COMPLETE_LAYOUT) };
    let key = if layout == COMPLETE {
        RequestKey::by_sector(
            read_fixed::<u32, { COMPLETE.dev_offset as usize }>(&ctx),
            read_fixed::<u64, { COMPLETE.sector_offset as usize }>(&ctx),
        )
    } else {
        RequestKey::by_sector(
            read_field::<u32>(&ctx, layout.dev_offset).unwrap_or(0),
            read_field::<u64>(&ctx, layout.sector_offset).unwrap_or(0),
        )
    };
    on_complete(&key, now());
    0
}

/// Reads a request's identity, size and operation from a `block_rq`-class record.
#[inline(always)]
fn read_request(ctx: &TracePointContext, layout: &BlockRqLayout) -> Request {
    let (dev, sector, bytes, rwbs) = if *layout == RQ {
        (
            read_fixed::<u32, { RQ.dev_offset as usize }>(ctx),
            read_fixed::<u64, { RQ.sector_offset as usize }>(ctx),
            read_fixed::<u32, { RQ.bytes_offset as usize }>(ctx),
            read_fixed::<u16, { RQ.rwbs_offset as usize }>(ctx),
        )
    } else {
        (
            read_field::<u32>(ctx, layout.dev_offset).unwrap_or(0),
            read_field::<u64>(ctx, layout.sector_offset).unwrap_or(0),
            read_field::<u32>(ctx, layout.bytes_offset).unwrap_or(0),
            read_field::<u16>(ctx, layout.rwbs_offset).unwrap_or(0),
        )
    };
    let [first, second] = rwbs.to_le_bytes();
    Request {
        // Classic records carry no request address: the start sector stands in for it.
        key: RequestKey::by_sector(dev, sector),
        dev,
        op: op_of_rwbs(first, second) as u32,
        bytes,
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_ktime_get_ns() }
}
