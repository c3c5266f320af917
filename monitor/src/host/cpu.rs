//! Which hardware virtualisation extension the host CPU has.

use std::path::Path;

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
