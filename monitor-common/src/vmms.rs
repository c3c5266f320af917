//! The set of VMM processes that host-wide programs (TLB flushes, block requests) filter on.
//!
//! `tlb:tlb_flush` and the block tracepoints fire for every task on the host, so their programs
//! first test whether the current process is a VMM: [`VMM_WATCH_MAP`] is an array of u64 words,
//! bit `tgid % 64` of word `tgid / 64` set for every VMM discovery has found. An array lookup is
//! inlined by the verifier (a bounds check and an add), far cheaper than a hash lookup on a path
//! that runs on every context switch. Userspace keeps the bitmap in step with discovery.

/// Array of u64 words: the watched-process bitmap.
pub const VMM_WATCH_MAP: &str = "VMM_WATCH";
/// Words in the bitmap: `PID_MAX_LIMIT` (4 Mi, the most any kernel allows) / 64, so every tgid
/// fits whatever `kernel.pid_max` is set to (512 KiB).
pub const VMM_WATCH_WORDS: u32 = 65_536;

/// The word and bit of `tgid` in the bitmap.
#[must_use]
pub const fn watch_slot(tgid: u32) -> (u32, u64) {
    (tgid >> 6, 1 << (tgid & 63))
}
