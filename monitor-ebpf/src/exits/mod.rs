//! VM exits: how many (counts), how long each took to handle (latency), and what they were about
//! (details), per VMM process and vCPU thread.
//!
//! No "is this a watched VM?" filter is needed here: every tracepoint used fires only in vCPU
//! threads of KVM users, so every event is one we want. The VMM is identified from the current
//! task. `kvm_fpu` also fires on unloads; its program keeps loads (the start of a `KVM_RUN`) in its
//! first instructions.

mod counts;
mod details;
mod harness;
mod latency;
mod raw_programs;
mod run_fds;

use aya_ebpf::{macros::map, maps::PerCpuArray};

/// Events lost to a full map, all exit maps together.
#[map(name = "EXITS_DROPS")]
static EXITS_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts an event lost to a full map. Force-inlined, as the per-event logic of every program
/// is, so each program stays one flat function for the verifier.
#[expect(clippy::inline_always)]
#[inline(always)]
fn count_drop() {
    if let Some(drops) = EXITS_DROPS.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array; no other program writes it concurrently.
        unsafe { *drops += 1 };
    }
    crate::diagnostics::report(monitor_common::diagnostics::Condition::ExitsMapFull);
}
