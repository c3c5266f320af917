//! The placement programs on the tracepoints' raw arguments (task pointers and CPU ids): the
//! same accounting as the classic programs in `programs.rs`, with the tasks' tgids read at this
//! kernel's offset (plain loads in the BTF programs) and the CPUs' nodes taken from
//! `CPU_PLACES`, as the classic records take them from `cpu_to_node`.

#![expect(clippy::inline_always)]

use monitor_common::numa::{NUMA_NODE_NONE, NumaMoveKind, NumaTaskFields};

use super::account::on_numa_move;
use crate::{places::place, raw::Args, raw_programs};

/// This kernel's offsets, overwritten by the loader (see exits/counts.rs for why settings are
/// .rodata globals).
#[unsafe(no_mangle)]
static NUMA_TASK_FIELDS: NumaTaskFields = NumaTaskFields::UNSET;

// (struct task_struct *tsk, int src_cpu, int dst_cpu)
raw_programs!("sched_move_numa", on_move_raw => move_numa_btf, move_numa_raw);

#[inline(always)]
pub(super) fn on_move_raw(args: Args) -> u32 {
    if let Some(tgid) = args.field_u32(args.get::<0>(), fields().tgid) {
        let (from, to) = (node_of(args.get::<1>()), node_of(args.get::<2>()));
        on_numa_move(NumaMoveKind::Move as u32, tgid, from, to);
    }
    0
}

// (struct task_struct *src_tsk, int src_cpu, struct task_struct *dst_tsk, int dst_cpu) since
// Linux 5.7 for both; the loader keeps the classic programs where the arguments differ.
raw_programs!("sched_swap_numa", on_swap_raw => swap_numa_btf, swap_numa_raw);

#[inline(always)]
pub(super) fn on_swap_raw(args: Args) -> u32 {
    let tgid = fields().tgid;
    let (from, to) = (node_of(args.get::<1>()), node_of(args.get::<3>()));
    if let Some(moved) = args.field_u32(args.get::<0>(), tgid) {
        on_numa_move(NumaMoveKind::Swap as u32, moved, from, to);
    }
    // The other task moves the other way.
    if let Some(other) = args.field_u32(args.get::<2>(), tgid) {
        on_numa_move(NumaMoveKind::Swap as u32, other, to, from);
    }
    0
}

raw_programs!("sched_stick_numa", on_stick_raw => stick_numa_btf, stick_numa_raw);

/// Only the first task is the one that stuck; the other, when there is one, is where it would
/// have gone (`dst_cpu` is -1 when there was no candidate).
#[inline(always)]
pub(super) fn on_stick_raw(args: Args) -> u32 {
    if let Some(tgid) = args.field_u32(args.get::<0>(), fields().tgid) {
        let (from, to) = (node_of(args.get::<1>()), node_of(args.get::<3>()));
        on_numa_move(NumaMoveKind::Stick as u32, tgid, from, to);
    }
    0
}

/// The node of a CPU id argument (an `int`, -1 for none), [`NUMA_NODE_NONE`] when there is no
/// CPU or userspace did not describe it.
#[inline(always)]
fn node_of(cpu_arg: u64) -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "the argument is a C int")]
    let cpu = cpu_arg as i32;
    let Ok(cpu) = u32::try_from(cpu) else {
        return NUMA_NODE_NONE;
    };
    let here = place(cpu);
    if here.known == 0 {
        NUMA_NODE_NONE
    } else {
        here.node
    }
}

#[inline(always)]
fn fields() -> NumaTaskFields {
    // SAFETY: volatile read of a loader-initialised global.
    unsafe { core::ptr::read_volatile(&raw const NUMA_TASK_FIELDS) }
}
