//! The per-event accounting shared by the TLB programs and the test harness, taking the current
//! task as arguments so the harness can drive it with chosen values.

// `tgid`/`tid` are the kernel's names.
#![expect(clippy::inline_always, clippy::similar_names)]

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use monitor_common::tlb::{
    TLB_FLUSH_ALL, TLB_REASON_SLOTS, TLB_VMM_CAPACITY, TlbCount, TlbKey, TlbSource, host_slot,
};

use crate::vmms::is_vmm;

#[map(name = "TLB_VMM")]
static TLB_VMM: PerCpuHashMap<TlbKey, TlbCount> =
    PerCpuHashMap::with_max_entries(TLB_VMM_CAPACITY, 0);

#[map(name = "TLB_HOST")]
static TLB_HOST: PerCpuArray<TlbCount> = PerCpuArray::with_max_entries(TLB_REASON_SLOTS, 0);

#[map(name = "TLB_DROPS")]
static TLB_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// One `tlb_flush` in the context of `tgid`/`tid`: counted for the host on this CPU, and for the
/// process when it is a watched VMM.
#[inline(always)]
pub fn on_flush(tgid: u32, tid: u32, reason: u32, pages: u64) {
    if let Some(slot) = TLB_HOST.get_ptr_mut(host_slot(reason)) {
        // SAFETY: per-CPU slot owned by this CPU while the program runs; no other writer.
        unsafe { add(slot, pages) };
    }
    if !is_vmm(tgid) {
        return;
    }
    let key = TlbKey {
        tgid,
        tid,
        source: TlbSource::Flush as u32,
        reason,
    };
    count(&key, pages);
}

/// One `kvm_pv_tlb_flush`: it fires only in vCPU threads, so it needs no VMM filter.
#[inline(always)]
pub fn on_pv_flush(tgid: u32, tid: u32, need_flush: bool) {
    let key = TlbKey {
        tgid,
        tid,
        source: TlbSource::PvFlush as u32,
        reason: u32::from(need_flush),
    };
    count(&key, 0);
}

#[inline(always)]
fn count(key: &TlbKey, pages: u64) {
    if let Some(counter) = TLB_VMM.get_ptr_mut(key) {
        // SAFETY: per-CPU value owned by this CPU while the program runs.
        unsafe { add(counter, pages) };
        return;
    }
    // First flush of this key on any CPU. If another CPU inserted it since our lookup, this
    // CPU's slot of it is still zero, so writing this event alone (BPF_ANY) is right either way.
    let mut fresh = TlbCount::default();
    // SAFETY: a local value.
    unsafe { add(&raw mut fresh, pages) };
    if TLB_VMM.insert(key, fresh, 0).is_err()
        && let Some(drops) = TLB_DROPS.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot, as above.
        unsafe { *drops += 1 };
    }
}

/// Adds one flush of `pages` (or of everything) to a counter.
///
/// # Safety
/// `counter` must be valid for writes and written by nobody else meanwhile.
#[inline(always)]
unsafe fn add(counter: *mut TlbCount, pages: u64) {
    // SAFETY: the caller's guarantee.
    unsafe {
        (*counter).events += 1;
        if pages == TLB_FLUSH_ALL {
            (*counter).full += 1;
        } else {
            (*counter).pages += pages;
        }
    }
}
