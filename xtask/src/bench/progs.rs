//! eBPF program statistics from `bpftool prog show --json`, which programs a process holds, and
//! which tracepoint each of them is attached to.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::util::{cmd, output};

#[derive(Clone, Debug, Deserialize)]
pub struct Prog {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    /// bpftool's program type: `tracepoint` (classic), `raw_tracepoint`, `tracing` (`tp_btf`,
    /// fentry).
    #[serde(default, rename = "type")]
    pub kind: String,
    /// bpftool omits the counters while they are zero.
    #[serde(default)]
    pub run_cnt: u64,
    #[serde(default)]
    pub run_time_ns: u64,
    /// Events the program was skipped for because of recursion protection.
    #[serde(default)]
    pub recursion_misses: u64,
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

/// The programs a process holds, and the tracepoint each attached one fires on.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub ids: BTreeSet<u32>,
    /// Program id → tracepoint event name (`kvm_exit`, `kvm_fpu`).
    pub tracepoints: BTreeMap<u32, String>,
}

/// What `pid` holds, from /proc/PID/fdinfo: a program or link fd shows `prog_id:`, and a perf
/// link also names its tracepoint (`tp_name:`). Not every bpftool build reports owning pids, so
/// bpftool's `pids` only add to this.
pub fn held_by(pid: u32, progs: &BTreeMap<u32, Prog>) -> Held {
    let mut held = Held {
        ids: progs
            .values()
            .filter(|prog| prog.pids.iter().any(|owner| owner.pid == pid))
            .map(|prog| prog.id)
            .collect(),
        tracepoints: BTreeMap::new(),
    };
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) {
        for entry in entries.flatten() {
            let Ok(info) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let (id, tracepoint) = parse_fdinfo(&info);
            let tracepoint = tracepoint.or_else(|| btf_tracepoint(&info));
            if let Some(id) = id {
                held.ids.insert(id);
                if let Some(tracepoint) = tracepoint {
                    held.tracepoints.insert(id, tracepoint);
                }
            }
        }
    }
    held.ids.retain(|id| progs.contains_key(id));
    held
}

/// The program id and, for a tracepoint perf link, the tracepoint in one fdinfo file.
fn parse_fdinfo(info: &str) -> (Option<u32>, Option<String>) {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| Some(line.strip_prefix(name)?.trim().to_owned()))
    };
    let id = field("prog_id:").and_then(|id| id.parse().ok());
    let tracepoint =
        field("tp_name:").filter(|_| field("event_type:").is_none_or(|kind| kind == "tracepoint"));
    (id, tracepoint.filter(|name| !name.is_empty()))
}

/// The tracepoint of a BTF tracepoint link (`link_type: tracing`), whose fdinfo gives only the
/// BTF object and type it attached to: the type is the kernel's `btf_trace_<event>` typedef.
fn btf_tracepoint(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u32>().ok())
    };
    if !info
        .lines()
        .any(|line| line.starts_with("link_type:") && line.contains("tracing"))
    {
        return None;
    }
    let (object, type_id) = (field("target_obj_id:")?, field("target_btf_id:")?);
    btf_trace_names(object).get(&type_id).cloned()
}

/// `btf_trace_<event>` type id → event, of one BTF object, read once per object.
fn btf_trace_names(object: u32) -> BTreeMap<u32, String> {
    static CACHE: Mutex<BTreeMap<u32, BTreeMap<u32, String>>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .entry(object)
        .or_insert_with(|| {
            let dump = output(cmd("bpftool").args([
                "btf",
                "dump",
                "id",
                &object.to_string(),
                "format",
                "raw",
            ]))
            .unwrap_or_default();
            parse_btf_trace_names(&dump)
        })
        .clone()
}

/// `[10306] TYPEDEF 'btf_trace_sched_switch' type_id=10307` lines of a raw BTF dump.
fn parse_btf_trace_names(dump: &str) -> BTreeMap<u32, String> {
    dump.lines()
        .filter_map(|line| {
            let (id, rest) = line
                .strip_prefix('[')?
                .split_once("] TYPEDEF 'btf_trace_")?;
            let (event, _) = rest.split_once('\'')?;
            Some((id.parse().ok()?, event.to_owned()))
        })
        .collect()
}

#[derive(Deserialize)]
struct PerfEntry {
    pid: u32,
    prog_id: u32,
    fd_type: String,
    #[serde(default)]
    tracepoint: String,
}

/// Program id → tracepoint for programs `pid` attached through a perf event fd (the older way,
/// which bpftrace uses; such fds do not name their program in fdinfo).
pub fn perf_tracepoints(pid: u32) -> Result<BTreeMap<u32, String>> {
    let json = output(cmd("bpftool").args(["perf", "show", "--json"]))?;
    parse_perf(&json, pid)
}

fn parse_perf(json: &str, pid: u32) -> Result<BTreeMap<u32, String>> {
    let entries: Vec<PerfEntry> =
        serde_json::from_str(json).context("parsing `bpftool perf show` JSON")?;
    Ok(entries
        .into_iter()
        .filter(|entry| entry.pid == pid && entry.fd_type == "tracepoint")
        .map(|entry| (entry.prog_id, entry.tracepoint))
        .collect())
}

/// Kernel program names are cut to 15 bytes while bpftool may show the full name from BTF,
/// so the same probe can appear as `kvm_userspace_exit` or `kvm_userspace_e`.
pub fn same_name(a: &str, b: &str) -> bool {
    let short = |name: &str| name.bytes().take(15).collect::<Vec<u8>>();
    short(a) == short(b)
}

/// Hook kind suffixes a program name may carry after its event's name.
const KIND_SUFFIXES: [&str; 6] = ["tp_btf", "btf", "raw_tp", "rawtp", "raw", "tp"];

/// Whether the program `name` is named after `event`: the event's name itself, or with a suffix
/// naming its hook kind (`sched_switch_btf`), both cut to the kernel's 15 bytes.
pub fn names_event(name: &str, event: &str) -> bool {
    if same_name(name, event) {
        return true;
    }
    let name: Vec<u8> = name.bytes().take(15).collect();
    let stem: Vec<u8> = event.bytes().chain([b'_']).take(15).collect();
    name.len() > stem.len()
        && name.starts_with(&stem)
        && KIND_SUFFIXES
            .iter()
            .any(|suffix| suffix.as_bytes().starts_with(&name[stem.len()..]))
}

/// The hook kind a program of bpftool's type `kind` runs as, in the names the bench uses.
pub fn hook_kind(kind: &str) -> &str {
    match kind {
        "raw_tracepoint" => "raw_tp",
        "tracing" => "tp_btf",
        other => other,
    }
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
        assert_eq!(hook_kind(&progs[0].kind), "tracepoint");
    }

    #[test]
    fn names_programs_after_their_event() {
        assert!(names_event("sched_switch", "sched_switch"));
        assert!(names_event("sched_switch_bt", "sched_switch"));
        assert!(names_event("kvm_userspace_e", "kvm_userspace_exit"));
        assert!(!names_event("sched_wakeup_ne", "sched_wakeup"));
        assert!(!names_event("kvm_exit", "kvm_entry"));
    }

    #[test]
    fn reads_tracepoints_from_link_fdinfo() {
        let link = "pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t18\nlink_type:\tperf\n\
                    link_id:\t609\nprog_tag:\t1c95b67e0600b5ea\nprog_id:\t1248\n\
                    tp_name:\tkvm_userspace_exit\nevent_type:\ttracepoint\ncookie:\t0\n";
        assert_eq!(
            parse_fdinfo(link),
            (Some(1248), Some("kvm_userspace_exit".to_owned()))
        );
        let prog = "pos:\t0\nprog_type:\t5\nprog_id:\t1247\nrun_time_ns:\t0\nrun_cnt:\t0\n";
        assert_eq!(parse_fdinfo(prog), (Some(1247), None));
        let kprobe = "link_type:\tperf\nprog_id:\t7\ntp_name:\tx\nevent_type:\tkprobe\n";
        assert_eq!(parse_fdinfo(kprobe), (Some(7), None));
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t01\n"), (None, None));
    }

    #[test]
    fn names_btf_tracepoints_from_the_kernel_btf() {
        let dump = "[1] INT 'long unsigned int' size=8 bits_offset=0\n\
                    [10306] TYPEDEF 'btf_trace_sched_switch' type_id=10307\n\
                    [10308] TYPEDEF 'btf_trace_sched_wakeup' type_id=10309\n";
        let names = parse_btf_trace_names(dump);
        assert_eq!(names[&10306], "sched_switch");
        assert_eq!(names.len(), 2);
        let raw = "link_type:\traw_tracepoint\nlink_id:\t5\nprog_id:\t9\ntp_name:\tkvm_pio\n";
        assert_eq!(parse_fdinfo(raw), (Some(9), Some("kvm_pio".to_owned())));
        assert_eq!(btf_tracepoint(raw), None);
    }

    #[test]
    fn maps_perf_entries_of_one_process() {
        let json = r#"[{"pid":11573,"fd":18,"prog_id":1217,"fd_type":"tracepoint",
            "tracepoint":"kvm_exit"},{"pid":11573,"fd":24,"prog_id":1220,"fd_type":"tracepoint",
            "tracepoint":"sys_enter_ioctl"},{"pid":11573,"fd":26,"prog_id":1230,
            "fd_type":"kprobe","func":"vfs_read","offset":0},{"pid":99,"fd":3,"prog_id":5,
            "fd_type":"tracepoint","tracepoint":"kvm_pio"}]"#;
        let map = parse_perf(json, 11573).unwrap();
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [
                (1217, "kvm_exit".to_owned()),
                (1220, "sys_enter_ioctl".to_owned())
            ]
        );
        assert!(parse_perf("[]", 1).unwrap().is_empty());
    }
}
