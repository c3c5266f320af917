//! kvmtop's kernel programs: one module per signal family (named as in `monitor-common` and in
//! the agent's `families/`), plus what several of them share: the watched-VMM bitmap, the CPU
//! places, reading records and declaring tracepoint programs.
//!
//! Rules every program here follows, because they run on every event of the host:
//! decide first whether the event concerns a VMM, keep running totals in per-CPU maps, and never
//! send anything to userspace per event.
#![no_std]
#![no_main]
// `atomic_xadd`: the BPF target's core has no 64-bit `fetch_add`, and totals shared between
// CPUs (block I/O histograms, exit counts) need one.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, see above")]

mod atomic;
mod block;
mod diagnostics;
mod exits;
mod floor;
mod numa;
mod places;
mod program;
mod raw;
mod record;
mod sched;
mod tlb;
mod vmms;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: BPF programs cannot panic at run time; the verifier rejects any path that would
    // reach here, so this is never executed.
    unsafe { core::hint::unreachable_unchecked() }
}

// bpf_probe_read and raw/classic tracepoints need a GPL-compatible licence.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
