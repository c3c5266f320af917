//! Empty programs, one per hook kind, that `cargo xtask bench` attaches next to kvmtop's programs:
//! what the kernel charges for running any program on a hook of that kind (the dispatch, the
//! context set-up, the statistics), so each of kvmtop's programs can be shown against the floor
//! of its own kind on its own hook. The agent never loads or attaches them.
//!
//! They live in kvmtop's object so that they are built, loaded and verified exactly as its other
//! programs are. Each has no fixed hook: the bench attaches a raw tracepoint or classic tracepoint
//! program by name at attach time, and gives a BTF tracepoint program its target at load time.
//! Plain C-ABI entry points: a program is a function of one context pointer, which they ignore.

use core::ffi::c_void;

/// On a classic tracepoint, 1 as kvmtop's programs return (see `program.rs`): 0 would stop the
/// event from reaching perf users of the same tracepoint.
#[unsafe(no_mangle)]
#[unsafe(link_section = "tracepoint")]
pub extern "C" fn floor_tp(_ctx: *mut c_void) -> u32 {
    1
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub extern "C" fn floor_raw_tp(_ctx: *mut c_void) -> i32 {
    0
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "tp_btf")]
pub extern "C" fn floor_tp_btf(_ctx: *mut c_void) -> i32 {
    0
}
