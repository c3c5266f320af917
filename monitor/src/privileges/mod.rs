//! What kvmtop needs to run, and giving up what it no longer needs.
//!
//! To start: root, or `CAP_BPF` (loading the programs), `CAP_PERFMON` (tracing programs, and
//! attaching them to tracepoints) and `CAP_DAC_READ_SEARCH` (tracefs is root's only), checked
//! by [`check`]. Once the programs are attached, [`reduce`] keeps only what reading `/proc` needs;
//! `CAP_SYS_PTRACE` is not needed to start, but without it the VMs of other users' processes
//! (and, once the capabilities are dropped, of root's) are not seen, and discovery says so.

pub mod reduce;

use caps::{CapSet, Capability};

use crate::host::tracefs::TraceFs;

/// Fails with a message naming what is missing when kvmtop cannot load and attach its programs:
/// the capabilities (when it is not root) and read access to tracefs, where the tracepoint
/// formats and ids are.
pub fn check(tracefs: &TraceFs) -> Result<(), String> {
    let mut missing: Vec<(Capability, String)> = Vec::new();
    let can_load = has(Capability::CAP_SYS_ADMIN)
        || (has(Capability::CAP_BPF) && has(Capability::CAP_PERFMON));
    if !can_load {
        for (cap, why) in [
            (Capability::CAP_BPF, "loading the eBPF programs"),
            (Capability::CAP_PERFMON, "attaching them to tracepoints"),
        ] {
            if !has(cap) {
                missing.push((cap, why.to_owned()));
            }
        }
    }
    if tracefs.refuses_listing() {
        if may_read_any_file() {
            // The capability is there and still not enough: a security module or a mount
            // option refuses it, and no capability kvmtop could ask for helps.
            return Err(format!(
                "reading tracefs at '{}' is refused although kvmtop may read any file: a \
                 security policy forbids it",
                tracefs.root().display()
            ));
        }
        missing.push((
            Capability::CAP_DAC_READ_SEARCH,
            format!(
                "reading tracefs: '{}' is root's only",
                tracefs.root().display()
            ),
        ));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|(cap, why)| format!("{cap} ({why})"))
        .collect();
    Err(format!(
        "kvmtop needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH, \
         to load its eBPF programs; missing: {}. Run it with sudo, or grant them: sudo setcap \
         cap_bpf,cap_perfmon,cap_dac_read_search,cap_sys_ptrace+ep \"$(command -v kvmtop)\" \
         (see \"Running without root\" in the README)",
        list.join(", ")
    ))
}

/// A hint appended to a load error that looks like a permission problem.
#[must_use]
pub fn hint_for_load_error(error: &str) -> &'static str {
    if error.contains("EPERM") || error.contains("ermission") || error.contains("os error 1)") {
        " (this needs root, or CAP_BPF and CAP_PERFMON)"
    } else {
        ""
    }
}

/// Whether kvmtop holds the privileges to read every process's `/proc` entries: listing their
/// file descriptors (`CAP_DAC_READ_SEARCH`) and reading what the kernel guards as tracing them
/// would (`CAP_SYS_PTRACE`). Root keeps both after the drop. When kvmtop has them and a read is
/// still refused, a security module, a ptrace policy or a process in another user namespace is
/// the cause, and running as root would not help.
#[must_use]
pub fn may_inspect_any_process() -> bool {
    has(Capability::CAP_SYS_PTRACE) && may_read_any_file()
}

fn may_read_any_file() -> bool {
    has(Capability::CAP_DAC_READ_SEARCH) || has(Capability::CAP_DAC_OVERRIDE)
}

/// Whether the calling thread's effective set holds `cap`. When it cannot be told, the answer
/// is yes: the kernel decides at use, and its refusal names the problem.
fn has(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_that_look_like_permissions_get_a_hint() {
        assert!(hint_for_load_error("bpf() failed: EPERM").contains("CAP_BPF"));
        assert!(hint_for_load_error("Operation not permitted (os error 1)").contains("root"));
        assert_eq!(hint_for_load_error("invalid argument"), "");
    }
}
