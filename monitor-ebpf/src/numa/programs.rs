//! `task_numa_fault(last_cpupid, mem_node, pages, flags)` runs in the faulting task on the
//! faulting CPU. Two programs with one body: userspace attaches the fentry one where BPF
//! trampolines work and the kprobe one otherwise. Both test the watched-VMM bitmap first.

// Program contexts are taken by value by aya's macros.
#![expect(clippy::needless_pass_by_value)]

use aya_ebpf::{
    helpers::bpf_get_smp_processor_id,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

use super::account::on_numa_fault;
use crate::{record::current_tgid_tid, vmms::is_vmm};

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
