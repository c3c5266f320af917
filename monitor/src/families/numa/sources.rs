//! The NUMA family's hook table. No tracepoint reports hinting faults, so the programs hook
//! `task_numa_fault()` itself: fentry first (no kprobe support needed, cheaper per call), a
//! kprobe where BPF trampolines do not work.

use monitor_common::numa::{
    NUMA_FAULT_FUNCTION, PROG_TASK_NUMA_FAULT_FENTRY, PROG_TASK_NUMA_FAULT_KPROBE,
};

use crate::bpf::hooks::{Attempt, Hook, SourceSpec};

/// Hinting faults per VM by CPU node and memory node.
pub const NUMA_FAULT: &str = "numa_fault";

/// The hook table.
#[must_use]
pub fn table() -> Vec<SourceSpec> {
    vec![SourceSpec {
        name: NUMA_FAULT,
        attempts: vec![
            Attempt {
                hook: Hook::Fentry(NUMA_FAULT_FUNCTION),
                program: PROG_TASK_NUMA_FAULT_FENTRY,
                needs: Ok(Vec::new()),
            },
            Attempt {
                hook: Hook::Kprobe(NUMA_FAULT_FUNCTION),
                program: PROG_TASK_NUMA_FAULT_KPROBE,
                needs: Ok(Vec::new()),
            },
        ],
    }]
}
