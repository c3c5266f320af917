//! The watched-VMM bitmap the host-wide programs (TLB flushes, block requests, process
//! lifecycle) test first, the change counters the lifecycle programs add to for discovery, and
//! the ring of processes that exec'd. Userspace keeps the bitmap in step with discovery; see
//! `monitor_common::vmms`.

#![expect(clippy::inline_always)]

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{Array, RingBuf},
};
use monitor_common::vmms::{
    PROCESS_EXECS_BYTES, VMM_CHANGE_SLOTS, VMM_WATCH_WORDS, change_slot, watch_slot,
};

use crate::atomic::atomic_add;

#[map(name = "VMM_WATCH")]
static VMM_WATCH: Array<u64> = Array::with_max_entries(VMM_WATCH_WORDS, 0);

// Mappable: the agent reads the counters through a memory mapping, with no system call.
#[map(name = "VMM_CHANGES")]
static VMM_CHANGES: Array<u64> = Array::with_max_entries(VMM_CHANGE_SLOTS, BPF_F_MMAPABLE);

// Drained by the agent once a scan, so no record wakes it.
#[map(name = "PROCESS_EXECS")]
static PROCESS_EXECS: RingBuf = RingBuf::with_byte_size(PROCESS_EXECS_BYTES, 0);

// Mappable, like the change counters.
#[map(name = "PROCESS_EXECS_LOST")]
static PROCESS_EXECS_LOST: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Whether `tgid` is a VMM process: one inlined array lookup and a bit test.
#[inline(always)]
pub fn is_vmm(tgid: u32) -> bool {
    let (word, bit) = watch_slot(tgid);
    VMM_WATCH.get(word).is_some_and(|w| *w & bit != 0)
}

/// Tells discovery that process `tgid` changed (a thread came or went, it exec'd): one atomic
/// add to its slot's counter, which the agent compares with the value it last read.
#[inline(always)]
pub fn mark_changed(tgid: u32) {
    if let Some(counter) = VMM_CHANGES.get_ptr_mut(change_slot(tgid)) {
        // SAFETY: a map value, valid and aligned; CPUs change it only atomically.
        unsafe { atomic_add(counter, 1) };
    }
}

/// Tells discovery that process `tgid` exec'd a program (any process: a new VMM starts so). A
/// full ring is counted, so that the agent knows to list `/proc` instead.
#[inline(always)]
pub fn note_exec(tgid: u32) {
    if PROCESS_EXECS
        .output::<u32>(tgid, u64::from(BPF_RB_NO_WAKEUP))
        .is_err()
        && let Some(lost) = PROCESS_EXECS_LOST.get_ptr_mut(0)
    {
        // SAFETY: a map value, valid and aligned; CPUs change it only atomically.
        unsafe { atomic_add(lost, 1) };
    }
}
