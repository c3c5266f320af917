//! Reading tracepoint records and the current task: the helpers every program shares.

// Program contexts are passed by reference into force-inlined helpers so that each program is one
// flat function for the verifier, with no BPF-to-BPF call on the hot path.
#![expect(clippy::inline_always)]

use aya_ebpf::{EbpfContext as _, helpers::bpf_get_current_pid_tgid, programs::TracePointContext};
use monitor_common::FIELD_ABSENT;

/// (tgid, tid) of the current task: the VMM process and the thread.
#[inline(always)]
pub fn current_tgid_tid() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (low32(pid_tgid >> 32), low32(pid_tgid))
}

/// The low 32 bits: raw tracepoint arguments arrive as u64 whatever their C type.
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "truncation is the point")]
pub fn low32(value: u64) -> u32 {
    value as u32
}

/// Reads a field at an offset known when the program is compiled: one load straight from the
/// record, about 15 ns cheaper per event than `bpf_probe_read`. Used when this kernel's layout is
/// the built-in one (the loader checked it against tracefs); the verifier only accepts record
/// reads whose offset is part of the load instruction, so a loader-provided offset cannot be
/// read this way.
#[inline(always)]
pub fn read_fixed<T: Copy, const OFFSET: usize>(ctx: &TracePointContext) -> T {
    // SAFETY: OFFSET is a field offset of this kernel's record (the caller checked the layout),
    // naturally aligned for T; the verifier bounds-checks the access against the record.
    unsafe { ctx.as_ptr().cast::<u8>().add(OFFSET).cast::<T>().read() }
}

/// [`read_fixed`] of an unsigned field of 1, 2, 4 or 8 bytes, widened to u64. `SIZE` is a
/// constant, so only one arm survives compilation. An absent field reads as 0.
#[inline(always)]
pub fn read_fixed_sized<const OFFSET: usize, const SIZE: u32>(ctx: &TracePointContext) -> u64 {
    if OFFSET == FIELD_ABSENT as usize {
        return 0;
    }
    match SIZE {
        1 => u64::from(read_fixed::<u8, OFFSET>(ctx)),
        2 => u64::from(read_fixed::<u16, OFFSET>(ctx)),
        4 => u64::from(read_fixed::<u32, OFFSET>(ctx)),
        _ => read_fixed::<u64, OFFSET>(ctx),
    }
}

/// Reads a field of the tracepoint record at a loader-provided offset.
#[inline(always)]
pub fn read_field<T: Copy>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    if offset == FIELD_ABSENT {
        return None;
    }
    // SAFETY: the offset comes from this kernel's tracefs format for this event, and read_at
    // uses bpf_probe_read, which fails cleanly rather than faulting.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// [`read_field`] of an unsigned field of 1, 2, 4 or 8 bytes, widened to u64; 0 when absent.
#[inline(always)]
pub fn read_field_sized(ctx: &TracePointContext, offset: u32, size: u32) -> u64 {
    match size {
        1 => read_field::<u8>(ctx, offset).map(u64::from),
        2 => read_field::<u16>(ctx, offset).map(u64::from),
        4 => read_field::<u32>(ctx, offset).map(u64::from),
        _ => read_field::<u64>(ctx, offset),
    }
    .unwrap_or(0)
}
