//! The watched-VMM bitmap the host-wide programs (TLB flushes, block requests) test first.
//! Userspace keeps it in step with discovery; see `monitor_common::vmms`.

#![expect(clippy::inline_always)]

use aya_ebpf::{macros::map, maps::Array};
use monitor_common::vmms::{VMM_WATCH_WORDS, watch_slot};

#[map(name = "VMM_WATCH")]
static VMM_WATCH: Array<u64> = Array::with_max_entries(VMM_WATCH_WORDS, 0);

/// Whether `tgid` is a VMM process: one inlined array lookup and a bit test.
#[inline(always)]
pub fn is_vmm(tgid: u32) -> bool {
    let (word, bit) = watch_slot(tgid);
    VMM_WATCH.get(word).is_some_and(|w| *w & bit != 0)
}
