//! The scheduler programs on the tracepoints' raw arguments (task pointers): the same accounting
//! as the classic programs in `programs.rs`, with thread ids read from the tasks at this kernel's
//! offset (plain loads in the BTF programs). The watched-thread test comes first.

// `prev_tid`/`next_tid` and `tid`/`tgid` are the kernel's names.
#![expect(clippy::inline_always, clippy::similar_names)]

use monitor_common::sched::{TaskFields, reported_prev_state};

use super::{
    account::{Switch, is_watched, on_switch, on_wakeup},
    programs::{cpu, now},
};
use crate::{raw::Args, raw_programs, record::current_tgid_tid};

/// This kernel's offsets, overwritten by the loader (see exits/counts.rs for why settings are
/// .rodata globals).
#[unsafe(no_mangle)]
static SCHED_TASK_FIELDS: TaskFields = TaskFields::UNSET;

// (bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
// since Linux 5.18; the loader keeps the classic program on older kernels.
raw_programs!("sched_switch", on_switch_raw => switch_btf, switch_raw);

// Inlined into each program: both kinds get a flat program with the kind folded in.
#[inline(always)]
fn on_switch_raw(args: Args) -> u32 {
    let pid = fields().pid;
    // `prev` is the current task: a plain load in a BTF program, else a helper call, cheaper
    // than a probe read.
    let prev_tid = if args.is_typed() {
        args.field_u32(args.get::<1>(), pid).unwrap_or(0)
    } else {
        current_tgid_tid().1
    };
    let next_tid = args.field_u32(args.get::<2>(), pid).unwrap_or(0);
    let prev_watched = is_watched(prev_tid);
    let next_watched = is_watched(next_tid);
    if !prev_watched && !next_watched {
        return 0;
    }
    let (prev_tgid, _) = current_tgid_tid();
    let prev_state = reported_prev_state(args.get::<0>() & 1 != 0, args.get::<3>());
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

// (struct task_struct *p)
raw_programs!("sched_wakeup", on_wakeup_raw => wakeup_btf, wakeup_raw);

// Inlined into each program: both kinds get a flat program with the kind folded in.
#[inline(always)]
fn on_wakeup_raw(args: Args) -> u32 {
    let tid = args.field_u32(args.get::<0>(), fields().pid).unwrap_or(0);
    if !is_watched(tid) {
        return 0;
    }
    on_wakeup(tid, now());
    0
}

#[inline(always)]
fn fields() -> TaskFields {
    // SAFETY: volatile read of a loader-initialised global.
    unsafe { core::ptr::read_volatile(&raw const SCHED_TASK_FIELDS) }
}
