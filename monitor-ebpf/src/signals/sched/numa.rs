//! NUMA hinting faults of watched threads, from `task_numa_fault(last_cpupid, mem_node, pages,
//! flags)`, which runs in the faulting task on the faulting CPU. Two programs with one body:
//! userspace attaches the fentry one where BPF trampolines work and the kprobe one otherwise.

// `tgid`/`tid` are the kernel's names.
#![expect(
    clippy::needless_pass_by_value,
    clippy::inline_always,
    clippy::similar_names
)]

use aya_ebpf::{
    macros::{fentry, kprobe, map},
    maps::PerCpuHashMap,
    programs::{FEntryContext, ProbeContext},
};
use monitor_common::{
    numa::{
        NUMA_FAULTS_CAPACITY, NumaFaultKey, NumaFaultStat, TNF_FAULT_LOCAL, TNF_MIGRATE_FAIL,
        TNF_MIGRATED,
    },
    sched::{PLACE_UNKNOWN, WatchedEvent},
};

use super::{
    account::{count_drop, count_watched, is_watched, place},
    programs::cpu,
};
use crate::record::current_tgid_tid;

#[map(name = "NUMA_FAULTS")]
static NUMA_FAULTS: PerCpuHashMap<NumaFaultKey, NumaFaultStat> =
    PerCpuHashMap::with_max_entries(NUMA_FAULTS_CAPACITY, 0);

#[fentry(function = "task_numa_fault")]
pub fn vmnuma_fentry(ctx: FEntryContext) -> u32 {
    let (tgid, tid) = current_tgid_tid();
    if !is_watched(tid) {
        return 0;
    }
    let mem_node: u32 = ctx.arg(1);
    let pages: u32 = ctx.arg(2);
    let flags: u32 = ctx.arg(3);
    on_numa_fault(tgid, cpu(), mem_node, pages, u64::from(flags));
    0
}

#[kprobe(function = "task_numa_fault")]
pub fn vmnuma_kprobe(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_tgid_tid();
    if !is_watched(tid) {
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

/// Counts one fault of a watched thread of `tgid` on `cpu`.
#[inline(always)]
pub fn on_numa_fault(tgid: u32, cpu: u32, mem_node: u32, pages: u32, flags: u64) {
    count_watched(WatchedEvent::NumaFault);
    let here = place(cpu);
    let cpu_node = if here.known == 0 {
        PLACE_UNKNOWN
    } else {
        here.node
    };
    let key = NumaFaultKey {
        tgid,
        cpu_node,
        mem_node,
        pad: 0,
    };
    let pages = u64::from(pages);
    let of = |flag: u64| if flags & flag == 0 { 0 } else { pages };
    if let Some(stat) = NUMA_FAULTS.get_ptr_mut(key) {
        // SAFETY: per-CPU value owned by this CPU while the program runs.
        unsafe {
            (*stat).faults += 1;
            (*stat).pages += pages;
            (*stat).local_pages += of(TNF_FAULT_LOCAL);
            (*stat).migrated_pages += of(TNF_MIGRATED);
            (*stat).migrate_failed_pages += of(TNF_MIGRATE_FAIL);
        }
        return;
    }
    let first = NumaFaultStat {
        faults: 1,
        pages,
        local_pages: of(TNF_FAULT_LOCAL),
        migrated_pages: of(TNF_MIGRATED),
        migrate_failed_pages: of(TNF_MIGRATE_FAIL),
    };
    // See account.rs: writing the first values is right even if another CPU created the key.
    if NUMA_FAULTS.insert(key, first, 0).is_err() {
        count_drop();
    }
}
