//! The host CPUs' virtualisation extension and frequency governors.

use std::{collections::BTreeMap, path::Path};

use super::read::read_line;

use monitor_common::exits::Isa;

/// Reads `flags` of the first CPU in `<proc>/cpuinfo`: `vmx` (Intel) or `svm` (AMD).
/// Used only when the `kvm_exit` record itself does not say which ISA produced an exit.
#[must_use]
pub fn virtualization_isa(proc_root: &Path) -> Option<Isa> {
    let text = std::fs::read_to_string(proc_root.join("cpuinfo")).ok()?;
    let flags = text.lines().find(|l| l.starts_with("flags"))?;
    let mut words = flags.split_whitespace();
    if words.clone().any(|w| w == "vmx") {
        Some(Isa::Vmx)
    } else if words.any(|w| w == "svm") {
        Some(Isa::Svm)
    } else {
        None
    }
}

/// The cpufreq governor of every CPU that has one (`cpuN/cpufreq/scaling_governor`); CPUs
/// without cpufreq (common in VMs and on some servers) are left out. A governor name is a short
/// identifier; anything else read there is not trusted and left out too.
#[must_use]
pub fn governors(sys_root: &Path) -> BTreeMap<u32, String> {
    let cpu_dir = sys_root.join("devices/system/cpu");
    let Ok(entries) = std::fs::read_dir(&cpu_dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .take(MAX_CPUS)
        .filter_map(|entry| {
            let name = entry.file_name();
            let cpu: u32 = name.to_str()?.strip_prefix("cpu")?.parse().ok()?;
            let governor = read_line(&entry.path().join("cpufreq/scaling_governor"))?;
            let valid = governor.len() <= 32
                && governor
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            valid.then_some((cpu, governor))
        })
        .collect()
}

/// CPU directories looked at, at most.
const MAX_CPUS: usize = 65_536;
