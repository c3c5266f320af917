//! Where each host CPU sits, as userspace describes it: the scheduler programs classify migrations
//! with it and the NUMA programs name the faulting CPU's node. See `monitor_common::places`.

#![expect(clippy::inline_always)]

use aya_ebpf::{macros::map, maps::Array};
use monitor_common::places::{CpuPlace, MAX_CPUS};

#[map(name = "CPU_PLACES")]
static CPU_PLACES: Array<CpuPlace> = Array::with_max_entries(MAX_CPUS, 0);

/// What userspace said about `cpu`, or unknown.
#[inline(always)]
pub fn place(cpu: u32) -> CpuPlace {
    CPU_PLACES.get(cpu).copied().unwrap_or(CpuPlace::UNKNOWN)
}
