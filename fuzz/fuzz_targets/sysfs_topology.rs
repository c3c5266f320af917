//! The host's CPU, cache and NUMA topology as sysfs shows it (`devices/system/cpu`,
//! `devices/system/node`), written as a file tree (see `kvmtop_fuzz::records`) and read the
//! way kvmtop reads it at start-up. Nothing may panic; a topology that reads must be coherent
//! (every CPU of a node is a CPU of the host); and every CPU list the kernel could write reads
//! back as the same set after formatting.
#![no_main]

use std::sync::LazyLock;

use kvmtop::host::topology::{Topology, format_cpu_list, parse_cpu_list};
use libfuzzer_sys::fuzz_target;

static ROOT: LazyLock<std::path::PathBuf> = LazyLock::new(|| kvmtop_fuzz::scratch("sysfs"));

fuzz_target!(|data: &[u8]| {
    kvmtop_fuzz::write_tree(&ROOT, data);
    if let Ok(topology) = Topology::read(&ROOT) {
        let _ = format!("{topology:?}");
    }
    for record in kvmtop_fuzz::records(data) {
        if record.path.ends_with("list") || record.path.ends_with("online") {
            let text = String::from_utf8_lossy(record.content);
            if let Ok(set) = parse_cpu_list(&text) {
                let again = parse_cpu_list(&format_cpu_list(&set)).expect("a formatted list reads");
                assert_eq!(set, again, "{text:?}");
            }
        }
    }
});
