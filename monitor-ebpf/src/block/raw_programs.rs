//! The block programs on the tracepoints' raw arguments (`struct request *rq` first): the same
//! accounting as the classic programs in `programs.rs`, with the request's device, size and
//! operation read from `rq` at this kernel's offsets (its own fields with plain loads in the BTF
//! programs) instead of from a filled record, and the request known by its address alone (see
//! `monitor_common::block::RequestKey`). A request's device and operation are read only where a
//! watched VMM's request is first seen; otherwise issue reads the size of a pending request and
//! nothing of the others, and completion nothing.

#![expect(
    clippy::inline_always,
    reason = "one flat function per program for the verifier"
)]

use monitor_common::block::{RequestFields, RequestKey, SubmitMode, dev_of};

use super::account::{Request, issue_pending, issue_untracked, on_complete, on_submit};
use crate::{
    raw::{Args, read_kernel},
    raw_programs,
    record::current_tgid_tid,
    vmms::is_vmm,
};

/// This kernel's offsets, overwritten by the loader (see exits/counts.rs for why settings are
/// .rodata globals).
#[unsafe(no_mangle)]
static BLOCK_REQUEST_FIELDS: RequestFields = RequestFields::UNSET;

raw_programs!("block_io_start", on_io_start => blk_start_btf, blk_start_raw);

#[inline(always)]
fn on_io_start(args: Args) -> u32 {
    let (tgid, _) = current_tgid_tid();
    if !is_vmm(tgid) {
        return 0;
    }
    on_submit(tgid, &request(args, &fields()), now(), false);
    0
}

// Attached only on kernels without `block_io_start` (before 6.5, where the rq is argument 0
// since 5.11; older raw arguments start with the queue and the loader keeps the classic program).
raw_programs!("block_rq_insert", on_insert => blk_insert_btf, blk_insert_raw);

#[inline(always)]
fn on_insert(args: Args) -> u32 {
    let (tgid, _) = current_tgid_tid();
    if !is_vmm(tgid) {
        return 0;
    }
    on_submit(tgid, &request(args, &fields()), now(), true);
    0
}

raw_programs!("block_rq_issue", on_issue_raw => blk_issue_btf, blk_issue_raw);

#[inline(always)]
fn on_issue_raw(args: Args) -> u32 {
    let rq = args.get::<0>();
    let now = now();
    // SAFETY: as in `fields`; the one offset this path needs, not the whole struct.
    let data_len = || unsafe { core::ptr::read_volatile(&raw const BLOCK_REQUEST_FIELDS.data_len) };
    let bytes = || args.field_u32(rq, data_len()).unwrap_or(0);
    if issue_pending(&RequestKey::by_address(rq), now, bytes) {
        return 0;
    }
    // SAFETY: volatile read of a loader-initialised global (the classic programs' setting).
    let mode = unsafe { core::ptr::read_volatile(&raw const super::programs::BLOCK_SUBMIT_MODE) };
    if mode == SubmitMode::InsertOrIssue as u32 {
        let (tgid, _) = current_tgid_tid();
        if is_vmm(tgid) {
            issue_untracked(tgid, &request(args, &fields()), now);
        }
    }
    0
}

raw_programs!("block_rq_complete", on_complete_raw => blk_done_btf, blk_done_raw);

#[inline(always)]
fn on_complete_raw(args: Args) -> u32 {
    on_complete(&RequestKey::by_address(args.get::<0>()), now());
    0
}

/// What the classic `block_rq` records say of the request `args` start with, known by its
/// address.
#[inline(always)]
fn request(args: Args, fields: &RequestFields) -> Request {
    let rq = args.get::<0>();
    let cmd_flags = args.field_u32(rq, fields.cmd_flags).unwrap_or(0);
    Request {
        key: RequestKey::by_address(rq),
        dev: device(rq, fields),
        op: fields.op_of(cmd_flags) as u32,
        bytes: args.field_u32(rq, fields.data_len).unwrap_or(0),
    }
}

/// The whole disk's `dev_t` as the classic records give it (`disk_devt(rq->q->disk)`), 0 without
/// a disk. Probe reads in every kind (`Args::field_u32` reads only the argument's own fields);
/// this runs once per watched request.
#[inline(always)]
fn device(rq: u64, fields: &RequestFields) -> u32 {
    let q = read_kernel::<u64>(rq, fields.q).unwrap_or(0);
    let disk = read_kernel::<u64>(q, fields.disk).unwrap_or(0);
    match (
        read_kernel::<u32>(disk, fields.major),
        read_kernel::<u32>(disk, fields.first_minor),
    ) {
        (Some(major), Some(minor)) => dev_of(major, minor),
        _ => 0,
    }
}

#[inline(always)]
fn fields() -> RequestFields {
    // SAFETY: volatile read of a loader-initialised global.
    unsafe { core::ptr::read_volatile(&raw const BLOCK_REQUEST_FIELDS) }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}
