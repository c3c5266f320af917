//! What kvmtop needs to run: root, or `CAP_BPF` + `CAP_PERFMON` (plus reading other processes'
//! /proc entries, which `CAP_SYS_PTRACE` or root gives).

use std::fs;

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with a message naming the missing privileges when the effective capability set cannot
/// load and attach tracing programs.
pub fn check() -> Result<(), String> {
    let Some(effective) = effective_capabilities() else {
        // Without /proc/self/status we cannot tell; let the kernel decide at load time.
        return Ok(());
    };
    if has(effective, CAP_SYS_ADMIN) || (has(effective, CAP_BPF) && has(effective, CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(effective, *cap))
        .map(|(_, name)| name)
        .collect();
    Err(format!(
        "kvmtop needs root privileges, or the capabilities {} (missing: {}), to load its eBPF \
         programs. Run it with sudo, or grant them: sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep \"$(command -v kvmtop)\"",
        "CAP_BPF and CAP_PERFMON",
        missing.join(", ")
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

/// Whether kvmtop holds the privilege to read every process's `/proc` entries (root has it).
/// When it does and a read is still refused, a security module, a ptrace policy or a process in
/// another user namespace is the cause, and running as root would not help.
#[must_use]
pub fn may_inspect_any_process() -> bool {
    effective_capabilities().is_some_and(|effective| has(effective, CAP_SYS_PTRACE))
}

fn has(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_capabilities() {
        let status = "Name:\tkvmtop\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let eff = parse_cap_eff(status).unwrap();
        assert!(has(eff, CAP_BPF) && has(eff, CAP_PERFMON) && has(eff, CAP_SYS_ADMIN));
        let none = parse_cap_eff("CapEff:\t0000000000000000\n").unwrap();
        assert!(!has(none, CAP_BPF));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }
}
