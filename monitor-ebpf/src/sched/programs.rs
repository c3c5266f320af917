//! The scheduler tracepoint programs: read the record, test the watched bitmap, and only then do
//! anything else. These run for every context switch and wakeup on the host. Migrations are
//! counted by `sched_switch`, when a watched thread starts running on another CPU than the one it
//! last ran on: no program runs on `sched_migrate_task`, which fires for every task the load
//! balancer moves.
//!
//! `sched_wakeup_new` is not hooked: a thread is watched only once userspace has seen it, which
//! is always after its first wakeup, so the program would pay on every fork for nothing.

// Program contexts are taken by value by aya's macros, and the per-event logic is force-inlined
// so that each program is one flat function for the verifier.
#![expect(
    clippy::needless_pass_by_value,
    clippy::inline_always,
    clippy::similar_names
)]

use crate::tracepoint_program;
use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    programs::TracePointContext,
};
use monitor_common::sched::{SchedWakeupLayout, SwitchLayout};

use super::account::{Switch, is_watched, on_switch, on_wakeup};
use crate::record::{current_tgid_tid, read_field, read_field_sized, read_fixed, read_fixed_sized};

// Record layouts, overwritten by the loader with this kernel's (see exits/counts.rs for why they
// are .rodata globals).
#[unsafe(no_mangle)]
static SCHED_SWITCH_LAYOUT: SwitchLayout = SwitchLayout::DEFAULT;
#[unsafe(no_mangle)]
static SCHED_WAKEUP_LAYOUT: SchedWakeupLayout = SchedWakeupLayout::DEFAULT;

// The built-in layouts, whose offsets the fast paths read at (see `crate::record::read_fixed`).
const SWITCH: SwitchLayout = SwitchLayout::DEFAULT;
const WAKEUP: SchedWakeupLayout = SchedWakeupLayout::DEFAULT;

tracepoint_program!("sched", "sched_switch", on_sched_switch => sched_switch);

fn on_sched_switch(ctx: TracePointContext) -> u32 {
    // SAFETY: volatile read of a loader-initialised global.
    let layout = unsafe { core::ptr::read_volatile(&raw const SCHED_SWITCH_LAYOUT) };
    let fixed = layout == SWITCH;
    let (prev_tid, next_tid) = if fixed {
        (
            read_fixed::<u32, { SWITCH.prev_pid_offset as usize }>(&ctx),
            read_fixed::<u32, { SWITCH.next_pid_offset as usize }>(&ctx),
        )
    } else {
        (
            read_field::<u32>(&ctx, layout.prev_pid_offset).unwrap_or(0),
            read_field::<u32>(&ctx, layout.next_pid_offset).unwrap_or(0),
        )
    };
    let prev_watched = is_watched(prev_tid);
    let next_watched = is_watched(next_tid);
    if !prev_watched && !next_watched {
        return 0;
    }
    let prev_state = if !prev_watched {
        0
    } else if fixed {
        read_fixed_sized::<{ SWITCH.prev_state_offset as usize }, { SWITCH.prev_state_size }>(&ctx)
    } else {
        read_field_sized(&ctx, layout.prev_state_offset, layout.prev_state_size)
    };
    let (prev_tgid, _) = current_tgid_tid();
    let event = Switch {
        cpu: cpu(),
        prev_tid,
        prev_state,
        next_tid,
        prev_tgid,
        now: now(),
    };
    on_switch(&event, prev_watched, next_watched);
    0
}

tracepoint_program!("sched", "sched_wakeup", on_sched_wakeup => sched_wakeup);

fn on_sched_wakeup(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const SCHED_WAKEUP_LAYOUT) };
    let fixed = layout == WAKEUP;
    let tid = if fixed {
        read_fixed::<u32, { WAKEUP.pid_offset as usize }>(&ctx)
    } else {
        read_field::<u32>(&ctx, layout.pid_offset).unwrap_or(0)
    };
    if !is_watched(tid) {
        return 0;
    }
    on_wakeup(tid, now());
    0
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn cpu() -> u32 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_get_smp_processor_id() }
}
