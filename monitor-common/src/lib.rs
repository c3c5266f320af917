//! The layout contract between kvmtop's kernel programs (`monitor-ebpf`) and its agent (`monitor`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of padding, so the same bytes mean the same thing
//! on both sides of a BPF map. Keep in sync with the readers in `monitor/src/signals/`.
#![no_std]

pub mod block;
pub mod details;
pub mod exits;
pub mod latency;
pub mod numa;
pub mod sched;
pub mod tlb;
pub mod vmms;

pub use details::{DetailKey, DetailKind, DetailLayout};
pub use exits::{ExitKey, ExitSource, Isa, KvmExitLayout, UserspaceExitLayout};
pub use latency::{LatencyHist, PendingExit};

/// A tracepoint field offset meaning "this kernel's record has no such field".
pub const FIELD_ABSENT: u32 = u32::MAX;
