//! NUMA hinting faults of VMM processes, per (VMM, CPU node, memory node), from the kernel
//! function `task_numa_fault()` (no tracepoint reports them). See `monitor_common::numa`.

mod account;
mod harness;
mod programs;
mod raw_programs;
