//! Rare conditions, logged once each through aya-log (see `monitor_common::diagnostics`). Only
//! paths that already handle a failure call in here, so the per-event path pays nothing.

#![expect(
    clippy::inline_always,
    reason = "one flat function per program for the verifier"
)]

use aya_ebpf::{macros::map, maps::Array};
use monitor_common::diagnostics::Condition;

#[map(name = "DIAG_LOGGED")]
static DIAG_LOGGED: Array<u32> = Array::with_max_entries(Condition::COUNT, 0);

/// Logs `condition` the first time it happens after loading. Two CPUs meeting it at once may
/// both log it; nothing depends on there being exactly one line.
#[inline(always)]
pub fn report(condition: Condition) {
    let Some(logged) = DIAG_LOGGED.get_ptr_mut(condition as u32) else {
        return;
    };
    // SAFETY: an array value; a racing writer can only write the same 1.
    if unsafe { *logged } != 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { *logged = 1 };
    // aya-log's macros take a context they do not use; there is none at hand here.
    let ctx = ();
    match condition {
        Condition::ExitsMapFull => aya_log_ebpf::warn!(
            &ctx,
            "exits: a map is full; further events that need a new entry are dropped and counted"
        ),
        Condition::SchedMapFull => aya_log_ebpf::warn!(
            &ctx,
            "sched: a map is full; further events that need a new entry are dropped and counted"
        ),
        Condition::NumaMapFull => aya_log_ebpf::warn!(
            &ctx,
            "numa: a map is full; further events that need a new entry are dropped and counted"
        ),
        Condition::BlockMapFull => aya_log_ebpf::warn!(
            &ctx,
            "block: a map is full; further requests that need a new entry are dropped and counted"
        ),
        Condition::BlockMapRefused => aya_log_ebpf::warn!(
            &ctx,
            "block: the kernel refused to add or remove a request's entry (its lock held too long); a request it refused to track is counted as dropped, a completed one is counted and its entry removed later"
        ),
        Condition::StructReadFailed => aya_log_ebpf::warn!(
            &ctx,
            "a kernel struct field could not be read at this kernel's offset; the event is counted with the field unknown"
        ),
    }
}
