//! `task_numa_fault(last_cpupid, mem_node, pages, flags)` runs in the faulting task on the
//! faulting CPU. Two programs with one body: userspace attaches the fentry one where BPF
//! trampolines work and the kprobe one otherwise. Both test the watched-VMM bitmap first.
//!
//! The placement tracepoints name the task they are about in their record; their programs read
//! its tgid and nodes and leave the rest (the VMM filter first) to the accounting.

// Program contexts are taken by value by aya's macros.
#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{
    helpers::bpf_get_smp_processor_id,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use monitor_common::numa::{NUMA_NODE_NONE, NumaMoveKind, NumaMoveLayout};

use super::account::{on_numa_fault, on_numa_move};
use crate::{
    record::{current_tgid_tid, read_field},
    tracepoint_program,
    vmms::is_vmm,
};

// Record layouts, overwritten by the loader with this kernel's (see exits/counts.rs for why they
// are .rodata globals). These events are rare (a few per task and scan period at most), so the
// programs read every field at the loader's offsets, without a compile-time fast path.
#[unsafe(no_mangle)]
static SCHED_MOVE_NUMA_LAYOUT: NumaMoveLayout = NumaMoveLayout::MOVE;
#[unsafe(no_mangle)]
static SCHED_SWAP_NUMA_LAYOUT: NumaMoveLayout = NumaMoveLayout::SWAP;
#[unsafe(no_mangle)]
static SCHED_STICK_NUMA_LAYOUT: NumaMoveLayout = NumaMoveLayout::STICK;

tracepoint_program!("sched", "sched_move_numa", on_move => sched_move_numa);
tracepoint_program!("sched", "sched_swap_numa", on_swap => sched_swap_numa);
tracepoint_program!("sched", "sched_stick_numa", on_stick => sched_stick_numa);

fn on_move(ctx: TracePointContext) {
    // SAFETY: volatile read of a loader-initialised global.
    let layout = unsafe { core::ptr::read_volatile(&raw const SCHED_MOVE_NUMA_LAYOUT) };
    count(&ctx, NumaMoveKind::Move, &layout);
}

fn on_swap(ctx: TracePointContext) {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const SCHED_SWAP_NUMA_LAYOUT) };
    count(&ctx, NumaMoveKind::Swap, &layout);
}

fn on_stick(ctx: TracePointContext) {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const SCHED_STICK_NUMA_LAYOUT) };
    count(&ctx, NumaMoveKind::Stick, &layout);
}

/// Counts the decision for the task the record names and, when the layout names another task
/// (a swap), for that one, which moves the other way.
#[inline(always)]
#[expect(clippy::inline_always, reason = "one flat function for the verifier")]
fn count(ctx: &TracePointContext, kind: NumaMoveKind, layout: &NumaMoveLayout) {
    let node = |offset| read_field::<i32>(ctx, offset).map_or(NUMA_NODE_NONE, i32::cast_unsigned);
    let (from, to) = (node(layout.src_nid_offset), node(layout.dst_nid_offset));
    if let Some(tgid) = read_field::<i32>(ctx, layout.tgid_offset) {
        on_numa_move(kind as u32, tgid.cast_unsigned(), from, to);
    }
    if let Some(other) = read_field::<i32>(ctx, layout.dst_tgid_offset) {
        on_numa_move(kind as u32, other.cast_unsigned(), to, from);
    }
}

#[fentry(function = "task_numa_fault")]
pub fn task_numa_fault_fentry(ctx: FEntryContext) -> u32 {
    let (tgid, _) = current_tgid_tid();
    if !is_vmm(tgid) {
        return 0;
    }
    let mem_node: u32 = ctx.arg(1);
    let pages: u32 = ctx.arg(2);
    let flags: u32 = ctx.arg(3);
    on_numa_fault(tgid, cpu(), mem_node, pages, u64::from(flags));
    0
}

#[kprobe(function = "task_numa_fault")]
pub fn task_numa_fault_kprobe(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current_tgid_tid();
    if !is_vmm(tgid) {
        return 0;
    }
    let (Some(mem_node), Some(pages), Some(flags)) =
        (ctx.arg::<u32>(1), ctx.arg::<u32>(2), ctx.arg::<u32>(3))
    else {
        return 0;
    };
    on_numa_fault(tgid, cpu(), mem_node, pages, u64::from(flags));
    0
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "one flat function for the verifier")]
fn cpu() -> u32 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_get_smp_processor_id() }
}
