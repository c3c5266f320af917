//! The layout contract between kvmtop's kernel programs (`monitor-ebpf`) and its agent (`monitor`).
//!
//! One module per signal family, named as the family's folder in the other crates (`exits`,
//! `sched`, `numa`, `tlb`, `block`), plus what several families share: the histogram, the
//! watched-VMM bitmap and the CPU places. Everything here is `#[repr(C)]`, `Copy` and free of
//! padding, so the same bytes mean the same thing on both sides of a BPF map.
//!
//! Names follow one rule. A program is named after the kernel event it runs on (`kvm_exit`,
//! `sched_switch`, `block_rq_complete`; the function for fentry and kprobe programs), with a
//! suffix naming its hook kind when one event has programs of several kinds (`_fentry`,
//! `_kprobe`); a test harness is `<family>_harness`; the bench's empty programs are
//! `floor_<hook kind>`. A record layout handed to a program is the global `<EVENT>_LAYOUT`. A
//! map is `<FAMILY>_<WHAT IT HOLDS>`; the two maps several families share are named for what
//! they hold (`VMM_WATCH`, `CPU_PLACES`). The kernel keeps the first 15 bytes of a name
//! (`BPF_OBJ_NAME_LEN`); kvmtop looks programs and maps up by their full name in the object, and
//! a test checks that every name the agent expects is there.
#![no_std]

pub mod diagnostics;
pub mod floor;
pub mod histogram;
pub mod places;
pub mod vmms;

/// Declares the family modules and lists their names for [`FAMILY_NAMES`]: adding a family is
/// one word here.
macro_rules! families {
    ($($family:ident),* $(,)?) => {
        $(pub mod $family;)*
        /// The programs, maps and globals of every family, family by family.
        pub const FAMILY_NAMES: &[Names] = &[$($family::NAMES),*];
    };
}
families!(exits, sched, numa, tlb, block);

/// What a family's part of the kernel object is called: the names the agent looks its programs
/// and maps up by, and the globals it sets before loading (record layouts, settings).
pub struct Names {
    pub programs: &'static [&'static str],
    pub maps: &'static [&'static str],
    pub globals: &'static [&'static str],
}

/// What is in the object for `cargo xtask bench` only (the floor programs), never for the agent.
pub const BENCH_NAMES: &[Names] = &[floor::NAMES];

/// The maps several families share, and the diagnostics' (see [`diagnostics`]).
pub const SHARED_MAPS: &[&str] = &[
    vmms::VMM_WATCH_MAP,
    vmms::VMM_CHANGES_MAP,
    vmms::PROCESS_EXECS_MAP,
    vmms::PROCESS_EXECS_LOST_MAP,
    places::CPU_PLACES_MAP,
    diagnostics::DIAGNOSTICS_LOGGED_MAP,
    diagnostics::LOG_RING_MAP,
];

/// `a` then `b`, as one array (for name lists built from other lists at compile time).
#[must_use]
pub const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    assert!(
        a.len() + b.len() == N,
        "concat: N must be the sum of the lengths"
    );
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - a.len()];
        i += 1;
    }
    out
}

/// A tracepoint field offset meaning "this kernel's record has no such field".
pub const FIELD_ABSENT: u32 = u32::MAX;
