//! Rare conditions the kernel programs report once each through aya-log (a ring buffer the agent
//! drains every window): never per event, only on paths that already mean something went wrong.

/// Array: [`Condition`] → 1 once it has been logged.
pub const DIAGNOSTICS_LOGGED_MAP: &str = "DIAG_LOGGED";
/// aya-log's ring buffer, which the `aya-log-ebpf` crate declares.
pub const LOG_RING_MAP: &str = "AYA_LOGS";

/// What a program can report. Each is logged the first time it happens after loading.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// A map of the exit family was full: an event was dropped (counted in `EXITS_DROPS`).
    ExitsMapFull = 0,
    /// A map of the scheduler family was full.
    SchedMapFull = 1,
    /// A map of the NUMA family was full.
    NumaMapFull = 2,
    /// A map of the block family was full.
    BlockMapFull = 3,
    /// A struct field a BTF or raw program reads at this kernel's offset could not be read.
    StructReadFailed = 4,
    /// The kernel refused to add or remove a block request's entry for a reason other than a
    /// full map (a bucket lock held past its timeout, Linux 6.15 and later).
    BlockMapRefused = 5,
}

impl Condition {
    pub const COUNT: u32 = 6;
}
