//! The set of VMM processes that host-wide programs (TLB flushes, block requests) filter on.
//!
//! `tlb:tlb_flush` and the block tracepoints fire for every task on the host, so their programs
//! first test whether the current process is a VMM: [`VMM_WATCH_MAP`] is an array of u64 words,
//! bit `tgid % 64` of word `tgid / 64` set for every VMM discovery has found. An array lookup is
//! inlined by the verifier (a bounds check and an add), far cheaper than a hash lookup on a path
//! that runs on every context switch. Userspace keeps the bitmap in step with discovery.
//!
//! [`VMM_CHANGES_MAP`] is how discovery learns what changed without reading `/proc` for every
//! VMM on every scan: the programs on `sched_process_fork`, `sched_process_exit` and
//! `sched_process_exec` add one to the counter of the current process's slot when the process is
//! watched (a thread created or ended, the process ended or exec'd). The agent remembers each
//! VMM's counter as last read and re-reads the VMM's `/proc` entries when it moved. Counters,
//! not bits to clear: the agent only reads, so no event between a read and a clear is lost.

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

/// Array of u64 counters: events (fork, exit, exec) of watched processes, by
/// [`change_slot`]. Several processes may share a slot: a change of one then re-reads the
/// others too, which costs a read and loses nothing.
pub const VMM_CHANGES_MAP: &str = "VMM_CHANGES";
/// Slots of the change counters (32 KiB, read whole every scan in one batch). A power of two.
pub const VMM_CHANGE_SLOTS: u32 = 4096;

/// The slot of `tgid`'s change counter.
#[must_use]
pub const fn change_slot(tgid: u32) -> u32 {
    tgid & (VMM_CHANGE_SLOTS - 1)
}

/// Ring buffer (`BPF_MAP_TYPE_RINGBUF`) of the processes of the host that exec'd a program,
/// one `u32` tgid a record, written by the `sched_process_exec` programs for every process, watched
/// or not. Discovery inspects these instead of listing `/proc` on every scan: a VMM is started
/// by an exec, so the listing (whose cost grows with every process of the host) becomes a slow
/// safety net. The agent drains the ring once a scan; the programs never wake it.
pub const PROCESS_EXECS_MAP: &str = "PROCESS_EXECS";
/// The ring's size in bytes: 4,096 records (an 8-byte header and the tgid padded to 8 bytes),
/// execs a scan may see before some are lost. A multiple of any page size up to 64 KiB.
pub const PROCESS_EXECS_BYTES: u32 = 64 * 1024;
/// Array of one u64, mapped by the agent: the execs the ring had no room for. When it moves,
/// discovery lists `/proc` to find what it missed.
pub const PROCESS_EXECS_LOST_MAP: &str = "PROCESS_EXECS_LOST";
