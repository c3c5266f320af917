//! The phases after the exits one, each with its own workload, peer and kvmtop window: the
//! scheduling programs twice (host switches only, then with busy guests, for the watched and
//! unwatched split), the block programs under a disk-reading guest, and the TLB program under a
//! shootdown loop.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{
    Setting, floors, load_average,
    peer_tools::{self, PeerSpec},
    peers::Peer,
    phase_report::{PeerRun, PhaseReport, RowSpec},
    sampling, vmms, watched,
    workload::{self, Load},
};
use crate::{
    interrupt,
    util::{self, Phase},
};

pub const SCHED_HOST: &str = "sched-host";
pub const SCHED_GUESTS: &str = "sched-guests";
const TLB: &str = "tlb";

struct Plan {
    name: &'static str,
    purpose: &'static str,
    /// What the comparison with the peer does not show.
    caveat: &'static str,
    load: Load,
    peer: PeerSpec,
    rows: &'static [RowSpec],
}

const SCHED_CAVEAT: &str = "runqlat's programs are BTF tracepoint programs (tp_btf), as kvmtop's \
    are where the kernel allows (the kind column says; a classic tracepoint program also runs on a \
    record the kernel fills first, paid for kvmtop only and in neither figure). runqlat works on every task (a timestamp per wakeup, a histogram update per switch), kvmtop \
    only on watched threads, so the ratio compares what each tool does, not the same work. The \
    kernel skips a classic tracepoint program when the tracepoint fires while another kprobe or \
    tracepoint program runs on the same CPU (an interrupt's wakeup, say), and a tp_btf program only \
    when that same program is re-entered: the skipped events are shown as missed.";

pub const RUNQLAT: PeerSpec = PeerSpec::Tool {
    path: "/usr/sbin/runqlat",
    attaches: &["sched_wakeup", "sched_wakeup_new", "sched_switch"],
};

const SCHED_ROWS: &[RowSpec] = &[
    RowSpec {
        tracepoint: "sched_switch",
        kvmtop: Some("sched_switch"),
        peer: true,
        watched: Some(watched::SWITCH),
    },
    RowSpec {
        tracepoint: "sched_wakeup",
        kvmtop: Some("sched_wakeup"),
        peer: true,
        watched: Some(watched::WAKEUP),
    },
    RowSpec {
        tracepoint: "sched_wakeup_new",
        kvmtop: None,
        peer: true,
        watched: None,
    },
];

pub const BIOLATENCY: PeerSpec = PeerSpec::Tool {
    path: "/usr/sbin/biolatency",
    attaches: &["block_rq_issue", "block_rq_complete"],
};

/// kvmtop's TLB program's work: a count per process, thread and reason.
pub const TLB_PEER: Peer = Peer {
    category: "tlb",
    event: "tlb_flush",
    kvmtop: "tlb_flush",
    body: "{ @[pid, args->reason] = count(); }",
    needs: None,
};

const PLANS: [Plan; 4] = [
    Plan {
        name: SCHED_HOST,
        purpose: "scheduling programs, host context switches only (unwatched)",
        caveat: SCHED_CAVEAT,
        load: Load::Switches,
        peer: RUNQLAT,
        rows: SCHED_ROWS,
    },
    Plan {
        name: SCHED_GUESTS,
        purpose: "scheduling programs, the same load plus three busy guests (watched)",
        caveat: SCHED_CAVEAT,
        load: Load::GuestsAndSwitches,
        peer: RUNQLAT,
        rows: SCHED_ROWS,
    },
    Plan {
        name: "block",
        purpose: "block programs under a disk-reading guest",
        caveat: "biolatency's programs are tp_btf programs too (see above: the record kvmtop's \
            programs run on is filled for kvmtop only). biolatency stores the issue time of every \
            request and files issue → completion in one histogram; kvmtop's issue and completion \
            programs look up the request (kept only for requests a VMM submitted) and account per \
            VM, disk and operation. block_io_start, where kvmtop attributes a request to its VMM, \
            has no biolatency counterpart.",
        load: Load::DiskReader,
        peer: BIOLATENCY,
        rows: &[
            RowSpec {
                tracepoint: "block_io_start",
                kvmtop: Some("block_io_start"),
                peer: false,
                watched: None,
            },
            RowSpec {
                tracepoint: "block_rq_insert",
                kvmtop: Some("block_rq_insert"),
                peer: false,
                watched: None,
            },
            RowSpec {
                tracepoint: "block_rq_issue",
                kvmtop: Some("block_rq_issue"),
                peer: true,
                watched: None,
            },
            RowSpec {
                tracepoint: "block_rq_complete",
                kvmtop: Some("block_rq_complete"),
                peer: true,
                watched: None,
            },
        ],
    },
    Plan {
        name: TLB,
        purpose: "TLB program under a shootdown loop",
        caveat: "bpftrace's is a classic tracepoint program, kvmtop's a BTF tracepoint program \
            where the kernel allows (the kind column says). The churn process holds a KVM VM fd, so kvmtop takes it for \
            a VMM and counts its flushes per process, thread and reason (a hash-map update, as \
            bpftrace does for every flush) besides its per-CPU host counters; other tasks' flushes \
            take only the host counters in kvmtop.",
        load: Load::TlbChurn,
        peer: PeerSpec::Bpftrace(&TLB_PEER),
        rows: &[
            RowSpec {
                tracepoint: "tlb_flush",
                kvmtop: Some("tlb_flush"),
                peer: true,
                watched: None,
            },
            RowSpec {
                tracepoint: "kvm_pv_tlb_flush",
                kvmtop: Some("kvm_pv_tlb_flush"),
                peer: false,
                watched: None,
            },
        ],
    },
];

/// Runs every phase; one that fails is reported unavailable and the others still run.
pub fn run_all(setting: &Setting<'_>) -> Vec<PhaseReport> {
    run(PLANS.iter(), setting)
}

/// Runs the two scheduling phases (`--only sched`).
pub fn run_sched(setting: &Setting<'_>) -> Vec<PhaseReport> {
    let sched = |plan: &&Plan| [SCHED_HOST, SCHED_GUESTS].contains(&plan.name);
    run(PLANS.iter().filter(sched), setting)
}

fn run<'p>(plans: impl Iterator<Item = &'p Plan>, setting: &Setting<'_>) -> Vec<PhaseReport> {
    let seconds = setting.seconds;
    plans
        .map(|plan| {
            let header = Phase::start(&format!(
                "{}: {} ({seconds}s window)",
                plan.name, plan.purpose
            ));
            let mut report = PhaseReport::new(plan.name, plan.purpose, &plan.peer);
            report.caveat = plan.caveat;
            report.load_average[0] = load_average();
            let result = if interrupt::interrupted() {
                Err(anyhow::anyhow!("interrupted"))
            } else {
                measure(plan, setting, &mut report)
            };
            report.load_average[1] = load_average();
            if let Err(err) = &result {
                report.unavailable = Some(format!("{err:#}"));
            }
            header.finish(result.is_ok());
            report
        })
        .collect()
}

fn measure(plan: &Plan, setting: &Setting<'_>, report: &mut PhaseReport) -> Result<()> {
    let (binary, out_dir, seconds) = (setting.binary, setting.out_dir, setting.seconds);
    let running = workload::start(plan.load, out_dir)?;
    report.workload.clone_from(&running.description);
    let peer = peer_tools::start(&plan.peer, out_dir, &format!("peer-{}", plan.name));
    if let Err(why) = &peer {
        util::warn(&format!("{}: peer unavailable: {why}", plan.name));
    }
    let floors = floors::for_window(setting.floor_runner, setting.hooks);
    let stem = format!("snapshot-{}", plan.name);
    let sampled = sampling::snapshot(binary, out_dir, seconds, &stem)?;
    let snapshot =
        std::fs::read_to_string(out_dir.join(format!("{stem}.json"))).unwrap_or_default();
    report.vmms = vmms::vmms(&snapshot, &running.vmm_pids());
    let (tracepoints, why) = match &peer {
        Ok(peer) => (peer.tracepoints.clone(), None),
        Err(why) => (BTreeMap::new(), Some(why.as_str())),
    };
    report.fill(
        plan.rows,
        &sampled,
        &PeerRun {
            spec: &plan.peer,
            tracepoints: &tracepoints,
            unavailable: why,
        },
        &floors.attached,
    );
    drop(floors);
    let printed = peer.map(peer_tools::Running::stop).unwrap_or_default();
    if plan.name == TLB {
        report.notes.extend(tlb_notes(&printed, running.churn_pid));
    }
    drop(running);
    Ok(())
}

/// What the TLB events were, from bpftrace's map.
fn tlb_notes(printed: &str, churn: Option<u32>) -> Vec<String> {
    let [all, of_churn] = peer_tools::tlb_reasons(printed, churn);
    if all.is_empty() {
        return vec![
            "bpftrace printed no tlb_flush counts, so the events' reasons are unknown".to_owned(),
        ];
    }
    let mut notes = vec![format!(
        "tlb_flush events by reason, from bpftrace's map over its whole run (a little longer \
         than the window): {}",
        peer_tools::describe_reasons(&all)
    )];
    if let Some(pid) = churn {
        notes.push(format!(
            "of which in the churn process (pid {pid}): {}",
            peer_tools::describe_reasons(&of_churn)
        ));
    }
    notes
}
