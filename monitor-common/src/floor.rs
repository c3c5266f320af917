//! The bench's floor programs: empty programs, one per hook kind, that `cargo xtask bench`
//! attaches on the hooks kvmtop uses to measure what any program costs there. They are not a
//! signal family: the agent never loads or attaches them.

use crate::Names;

/// An empty classic tracepoint program (attached with `system` and `event`).
pub const PROG_FLOOR_TRACEPOINT: &str = "floor_tp";
/// An empty raw tracepoint program (attached by tracepoint name).
pub const PROG_FLOOR_RAW_TP: &str = "floor_raw_tp";
/// An empty BTF tracepoint program (its tracepoint is given when it is loaded).
pub const PROG_FLOOR_TP_BTF: &str = "floor_tp_btf";

pub const NAMES: Names = Names {
    programs: &[PROG_FLOOR_TRACEPOINT, PROG_FLOOR_RAW_TP, PROG_FLOOR_TP_BTF],
    maps: &[],
    globals: &[],
};
