//! Events kvmtop's programs were skipped for while every peer runs beside it: bpftrace (the exits
//! and TLB one-liners), runqlat and biolatency all attached at once, under a load that drives
//! every hook (a port-I/O guest, a disk-reading guest, context switches, TLB shootdowns). The
//! kernel counts each skipped run in the program's `recursion_misses`.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{
    load_average,
    peer_tools::{self, PeerSpec},
    peers::{self, PEERS, Peer},
    phases::{BIOLATENCY, RUNQLAT, TLB_PEER},
    progs::{Prog, hook_kind},
    sampling::{self, Sampled},
    workload::{self, Load},
};
use crate::util;

pub const METHOD: &str = "kvmtop snapshot over the window with bpftrace (every exits one-liner \
    and the TLB one-liner in one process), /usr/sbin/runqlat and /usr/sbin/biolatency attached at \
    the same time, under a port-I/O guest, a disk-reading guest, a context-switch load and the TLB \
    churn together. skipped = growth of the program's recursion_misses: runs the kernel left out \
    because a BPF program was already running on that CPU (for a classic tracepoint program: any \
    kprobe/tracepoint program, or a BPF map syscall; for raw_tp and tp_btf: only the same \
    program). share = skipped / (events + skipped).";

#[derive(Serialize)]
pub struct Contention {
    pub method: &'static str,
    pub workload: Vec<String>,
    /// The peers that ran (their exact commands), and why any did not.
    pub peers: Vec<String>,
    pub window_seconds: f64,
    pub load_average: [String; 2],
    /// kvmtop's programs.
    pub programs: Vec<ProgramSkips>,
    /// The peers' programs, for comparison.
    pub peer_programs: Vec<ProgramSkips>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ProgramSkips {
    pub program: String,
    /// The hook kind it ran as.
    pub kind: String,
    /// Who runs it: kvmtop or the peer's name.
    pub owner: String,
    pub events: u64,
    pub skipped: u64,
    /// skipped / (events + skipped), in percent; absent when both are zero.
    pub skipped_percent: Option<f64>,
}

/// Runs the phase; a failure is reported as unavailable, with its reason.
pub fn run(binary: &Path, out_dir: &Path, seconds: u64) -> Contention {
    let mut report = Contention {
        method: METHOD,
        workload: Vec::new(),
        peers: Vec::new(),
        window_seconds: 0.0,
        load_average: [load_average(), String::new()],
        programs: Vec::new(),
        peer_programs: Vec::new(),
        unavailable: None,
    };
    if let Err(err) = measure(binary, out_dir, seconds, &mut report) {
        report.unavailable = Some(format!("{err:#}"));
    }
    report.load_average[1] = load_average();
    report
}

fn measure(binary: &Path, out_dir: &Path, seconds: u64, report: &mut Contention) -> Result<()> {
    let running = workload::start(Load::Everything, out_dir)?;
    report.workload.clone_from(&running.description);
    // Owner → program ids, for every peer that attached.
    let mut owners: Vec<(String, Vec<u32>)> = Vec::new();
    let mut bpftrace_peers: Vec<&Peer> = PEERS
        .iter()
        .filter(|peer| peers::tracepoint_exists(peer))
        .collect();
    bpftrace_peers.push(&TLB_PEER);
    let bpftrace = match peers::launch(&bpftrace_peers, out_dir, "bpftrace-contention")? {
        Ok(attached) => {
            report.peers.push(format!(
                "bpftrace {} (one-liners of the exits and TLB phases)",
                out_dir.join("bpftrace-contention.bt").display()
            ));
            owners.push((
                "bpftrace".to_owned(),
                attached.tracepoints.keys().copied().collect(),
            ));
            Some(attached)
        }
        Err(why) => {
            util::warn(&format!("contention: bpftrace unavailable: {why}"));
            report.peers.push(format!("bpftrace unavailable: {why}"));
            None
        }
    };
    let mut tools = Vec::new();
    for spec in [&RUNQLAT, &BIOLATENCY] {
        let PeerSpec::Tool { path, .. } = spec else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        match peer_tools::start(spec, out_dir, &format!("contention-{name}")) {
            Ok(running) => {
                report.peers.push(spec.command());
                owners.push((
                    name.to_owned(),
                    running.tracepoints.keys().copied().collect(),
                ));
                tools.push(running);
            }
            Err(why) => {
                util::warn(&format!("contention: {name} unavailable: {why}"));
                report.peers.push(format!("{name} unavailable: {why}"));
            }
        }
    }
    let sampled = sampling::snapshot(binary, out_dir, seconds, "snapshot-contention")?;
    report.window_seconds = sampled.length.as_secs_f64();
    let kvmtop: Vec<u32> = sampled.kvmtop.ids.iter().copied().collect();
    report.programs = skipped(&sampled, "kvmtop", &kvmtop);
    for (owner, ids) in &owners {
        report.peer_programs.extend(skipped(&sampled, owner, ids));
    }
    drop(tools);
    drop(bpftrace);
    drop(running);
    Ok(())
}

/// The events and skipped runs of `ids` over the window, most skipped first.
fn skipped(sampled: &Sampled, owner: &str, ids: &[u32]) -> Vec<ProgramSkips> {
    let mut rows: Vec<ProgramSkips> = ids
        .iter()
        .filter_map(|id| Some(count(owner, sampled.start.get(id)?, sampled.end.get(id)?)))
        .collect();
    rows.sort_by(|a, b| b.skipped.cmp(&a.skipped).then(a.program.cmp(&b.program)));
    rows
}

/// One program's events and skipped runs between two samples.
fn count(owner: &str, start: &Prog, end: &Prog) -> ProgramSkips {
    let events = end.run_cnt.saturating_sub(start.run_cnt);
    let skipped = end.recursion_misses.saturating_sub(start.recursion_misses);
    let total = events + skipped;
    #[allow(clippy::cast_precision_loss)] // Counters far below 2^52 over a benchmark.
    let skipped_percent = (total > 0).then(|| skipped as f64 * 100.0 / total as f64);
    ProgramSkips {
        program: end.name.clone(),
        kind: hook_kind(&end.kind).to_owned(),
        owner: owner.to_owned(),
        events,
        skipped,
        skipped_percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(name: &str, kind: &str, run_cnt: u64, misses: u64) -> Prog {
        serde_json::from_str(&format!(
            r#"{{"id":1,"name":"{name}","type":"{kind}","run_cnt":{run_cnt},
            "recursion_misses":{misses}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn counts_skipped_runs_and_their_share() {
        let row = count(
            "kvmtop",
            &prog("block_rq_compl", "tracepoint", 100, 1),
            &prog("block_rq_compl", "tracepoint", 1_090, 11),
        );
        assert_eq!((row.events, row.skipped), (990, 10));
        assert!((row.skipped_percent.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(row.kind, "tracepoint");
        let idle = count(
            "kvmtop",
            &prog("x", "raw_tracepoint", 5, 0),
            &prog("x", "raw_tracepoint", 5, 0),
        );
        assert_eq!(idle.skipped_percent, None);
        assert_eq!(idle.kind, "raw_tp");
    }
}
