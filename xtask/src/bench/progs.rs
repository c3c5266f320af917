//! eBPF program statistics from `bpftool prog show --json`, and which process owns a program.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::util::{cmd, output};

#[derive(Clone, Debug, Deserialize)]
pub struct Prog {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    /// bpftool omits the counters while they are zero.
    #[serde(default)]
    pub run_cnt: u64,
    #[serde(default)]
    pub run_time_ns: u64,
    /// Only present when bpftool was built with its pid iterator.
    #[serde(default)]
    pids: Vec<Owner>,
}

#[derive(Clone, Debug, Deserialize)]
struct Owner {
    pid: u32,
}

/// Every loaded program, by id.
pub fn sample() -> Result<BTreeMap<u32, Prog>> {
    let json = output(cmd("bpftool").args(["prog", "show", "--json"]))?;
    let progs: Vec<Prog> = serde_json::from_str(&json).context("parsing bpftool's JSON")?;
    Ok(progs.into_iter().map(|prog| (prog.id, prog)).collect())
}

/// The ids of the programs `pid` holds open. Read from /proc/PID/fdinfo (a program or link fd
/// there shows `prog_id:`), since not every bpftool build reports owning pids; bpftool's `pids`
/// are added when it does.
pub fn owned_by(pid: u32, progs: &BTreeMap<u32, Prog>) -> BTreeSet<u32> {
    let mut ids: BTreeSet<u32> = progs
        .values()
        .filter(|prog| prog.pids.iter().any(|owner| owner.pid == pid))
        .map(|prog| prog.id)
        .collect();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        ids.extend(info.lines().filter_map(|line| {
            line.strip_prefix("prog_id:")
                .and_then(|id| id.trim().parse::<u32>().ok())
        }));
    }
    ids.retain(|id| progs.contains_key(id));
    ids
}

/// Kernel program names are cut to 15 bytes while bpftool may show the full name from BTF,
/// so the same probe can appear as `kvm_userspace_exit` or `kvm_userspace_e`.
pub fn same_name(a: &str, b: &str) -> bool {
    let short = |name: &str| name.bytes().take(15).collect::<Vec<u8>>();
    short(a) == short(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bpftool_json() {
        let json = r#"[{"id":104,"type":"tracepoint","name":"kvm_userspace_e","run_time_ns":900,
            "run_cnt":10,"pids":[{"pid":42,"comm":"bpftrace"}]},{"id":105,"name":"kvm_exit"}]"#;
        let progs: Vec<Prog> = serde_json::from_str(json).unwrap();
        assert_eq!(progs[0].run_cnt, 10);
        assert_eq!(progs[0].pids[0].pid, 42);
        assert_eq!(progs[1].run_time_ns, 0);
        assert!(same_name("kvm_userspace_exit", &progs[0].name));
        assert!(!same_name("kvm_exit", &progs[0].name));
    }
}
