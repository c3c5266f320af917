//! Turning two samples of program statistics into the benchmark's table and JSON.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::Serialize;

use super::{
    agent::Usage,
    contention::Contention,
    floors::{FloorIds, Hook},
    harness::TestRun,
    peers::PEERS,
    phase_report::{PhaseReport, ratio},
    progs::{Held, Prog, hook_kind, names_event, same_name},
    split::SchedSplit,
    throughput::Throughput,
};

const NO_EVENTS: &str = "no events on this host";
/// What the numbers do not show.
const CAVEATS: [&str; 3] = [
    "bpftrace attaches first, and a tracepoint runs its programs in attach order: on each shared \
     tracepoint bpftrace's program runs just before kvmtop's, which may find the record and the \
     task's data already in cache.",
    "ns/event is the kernel's run_time_ns / run_cnt for each program alone; the tracepoint's own \
     dispatch cost, paid once for both, is in neither.",
    "floor: an empty program of the same hook kind as kvmtop's, attached to the same hook for \
     the same window (from kvmtop's own object, monitor-ebpf/src/floor.rs). Its ns/event is what \
     the kernel's statistics charge any program there; ×floor is kvmtop's ns/event over it. A \
     classic tracepoint program also runs on a record the kernel fills first, which is in no \
     program's run time.",
];

#[derive(Serialize)]
pub struct Report {
    pub window_seconds: f64,
    /// Where kvmtop's sources ran, from a short snapshot at the start (unavailable: why not).
    pub hooks: Result<Vec<Hook>, String>,
    /// `/proc/loadavg` (1, 5, 15 min) before and after: other work on the host adds noise.
    pub load_average: [String; 2],
    pub cpus: usize,
    /// kvmtop's programs with a bpftrace counterpart first, then its others.
    pub programs: Vec<Row>,
    pub caveats: [&'static str; 3],
    pub test_run: TestRun,
    pub agent: Agent,
    /// The scheduling, block and TLB phases, each with its own workload, peer and window.
    pub phases: Vec<PhaseReport>,
    pub sched_split: SchedSplit,
    /// Events kvmtop's programs were skipped for with every peer attached at once.
    pub contention: Option<Contention>,
    /// A pinned port-I/O guest's exits/s without and with kvmtop, and the agent's cost.
    pub throughput: Option<Throughput>,
    /// What `kvmtop record` costs beside the demo guests, or why it could not be measured.
    pub recording: Option<Result<super::recording::RecordingCost, String>>,
}

#[derive(Serialize)]
pub struct Row {
    /// The tracepoint's event name.
    pub tracepoint: String,
    /// The hook kind kvmtop's program ran as (`tracepoint`, `raw_tp`, `tp_btf`).
    pub kind: Option<String>,
    pub kvmtop: Side,
    /// An empty program of the same kind on the same hook, over the same window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<Side>,
    /// kvmtop's ns/event divided by the floor's.
    pub floor_ratio: Option<f64>,
    /// Absent for kvmtop programs without a bpftrace counterpart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpftrace: Option<Side>,
    /// kvmtop's ns/event divided by bpftrace's; absent unless both saw events.
    pub ratio: Option<f64>,
}

#[derive(Serialize)]
pub struct Side {
    /// kvmtop: the program's name; bpftrace: the exact one-liner.
    pub program: String,
    #[serde(flatten)]
    pub measured: Measured,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Measured {
    Cost {
        events: u64,
        ns_per_event: Option<f64>,
        /// Events the kernel did not run the program for (its `recursion_misses`), e.g. a
        /// tracepoint hit while another tracing program ran on the same CPU.
        #[serde(skip_serializing_if = "is_zero")]
        missed: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'static str>,
    },
    Unavailable {
        unavailable: String,
    },
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Measured {
    pub(super) fn ns_per_event(&self) -> Option<f64> {
        match self {
            Self::Cost { ns_per_event, .. } => *ns_per_event,
            Self::Unavailable { .. } => None,
        }
    }
}

#[derive(Serialize)]
pub struct Agent {
    pub cpu_ms: f64,
    pub cpu_percent_of_one_cpu: f64,
    pub lifetime_seconds: f64,
    pub peak_rss_kib: u64,
}

pub struct Window<'a> {
    pub start: &'a BTreeMap<u32, Prog>,
    pub end: &'a BTreeMap<u32, Prog>,
    pub kvmtop: &'a Held,
    /// bpftrace's program id → tracepoint.
    pub bpftrace: &'a BTreeMap<u32, String>,
    /// Tracepoint → why its bpftrace program is not measured.
    pub unavailable: &'a BTreeMap<&'static str, String>,
    pub floors: &'a FloorIds,
    pub length: Duration,
}

impl Window<'_> {
    /// A program's cost between the two samples.
    pub(super) fn cost(&self, id: u32) -> Measured {
        let (Some(a), Some(b)) = (self.start.get(&id), self.end.get(&id)) else {
            return Measured::Unavailable {
                unavailable: "not loaded for the whole window".to_owned(),
            };
        };
        let events = b.run_cnt.saturating_sub(a.run_cnt);
        let ns = b.run_time_ns.saturating_sub(a.run_time_ns);
        #[allow(clippy::cast_precision_loss)] // Counters far below 2^52 over a benchmark.
        let ns_per_event = (events > 0).then(|| ns as f64 / events as f64);
        Measured::Cost {
            events,
            ns_per_event,
            missed: b.recursion_misses.saturating_sub(a.recursion_misses),
            note: (events == 0).then_some(NO_EVENTS),
        }
    }

    pub(super) fn name(&self, id: u32) -> &str {
        self.end.get(&id).map_or("", |prog| prog.name.as_str())
    }

    /// kvmtop's program on `event`: by its attachment, else by its name.
    pub(super) fn kvmtop_program(&self, event: &str, program: &str) -> Option<u32> {
        let ids = &self.kvmtop.ids;
        ids.iter()
            .copied()
            .find(|id| {
                self.kvmtop
                    .tracepoints
                    .get(id)
                    .is_some_and(|tp| tp == event)
            })
            .or_else(|| {
                ids.iter().copied().find(|id| {
                    same_name(program, self.name(*id)) || names_event(self.name(*id), event)
                })
            })
    }

    /// The hook kind of kvmtop's program `id` on `event`: as its snapshot said, else by its
    /// program type.
    pub(super) fn kind(&self, event: &str, id: Option<u32>) -> Option<String> {
        self.floors.kinds.get(event).cloned().or_else(|| {
            let prog = self.end.get(&id?)?;
            (!prog.kind.is_empty()).then(|| hook_kind(&prog.kind).to_owned())
        })
    }

    /// The floor on `event`, if one was attached or tried.
    pub(super) fn floor(&self, event: &str) -> Option<Side> {
        if let Some((id, kind)) = self.floors.ids.get(event) {
            return Some(Side {
                program: format!("empty {kind}"),
                measured: self.cost(*id),
            });
        }
        let why = self.floors.unavailable.get(event)?;
        Some(Side {
            program: "empty".to_owned(),
            measured: Measured::Unavailable {
                unavailable: why.clone(),
            },
        })
    }
}

pub fn build(window: &Window<'_>, test_run: TestRun, usage: Usage, lifetime: Duration) -> Report {
    let mut programs = Vec::new();
    let mut seen = BTreeSet::new();
    for peer in &PEERS {
        let id = window.kvmtop_program(peer.event, peer.kvmtop);
        seen.extend(id);
        let kvmtop = Side {
            program: peer.kvmtop.to_owned(),
            measured: id.map_or_else(
                || Measured::Unavailable {
                    unavailable: "not attached by kvmtop".to_owned(),
                },
                |id| window.cost(id),
            ),
        };
        let floor = id.and_then(|_| window.floor(peer.event));
        let twin = window.bpftrace.iter().find(|(_, tp)| *tp == peer.event);
        let measured = match (window.unavailable.get(peer.event), twin) {
            (Some(why), _) => Measured::Unavailable {
                unavailable: why.clone(),
            },
            (None, Some((id, _))) => window.cost(*id),
            (None, None) => Measured::Unavailable {
                unavailable: "not attached by bpftrace".to_owned(),
            },
        };
        let bpftrace = Side {
            program: peer.one_liner(),
            measured,
        };
        programs.push(Row {
            tracepoint: peer.event.to_owned(),
            kind: id.and_then(|id| window.kind(peer.event, Some(id))),
            floor_ratio: ratio(Some(&kvmtop), floor.as_ref()),
            ratio: ratio(Some(&kvmtop), Some(&bpftrace)),
            kvmtop,
            floor,
            bpftrace: Some(bpftrace),
        });
    }
    // kvmtop's other programs, for their share of the cost.
    let mut others: Vec<u32> = window.kvmtop.ids.difference(&seen).copied().collect();
    others.sort_by_key(|id| window.name(*id).to_owned());
    for id in others {
        let name = window.name(id).to_owned();
        let tracepoint = window.kvmtop.tracepoints.get(&id).unwrap_or(&name).clone();
        // The floor's event: the hook the snapshot named whose event this program is named after.
        let event = window
            .floors
            .kinds
            .keys()
            .find(|event| **event == tracepoint || names_event(&name, event))
            .cloned()
            .unwrap_or_else(|| tracepoint.clone());
        let kvmtop = Side {
            program: name,
            measured: window.cost(id),
        };
        let floor = window.floor(&event);
        programs.push(Row {
            kind: window.kind(&event, Some(id)),
            floor_ratio: ratio(Some(&kvmtop), floor.as_ref()),
            tracepoint: event,
            kvmtop,
            floor,
            bpftrace: None,
            ratio: None,
        });
    }
    let lifetime_ms = lifetime.as_secs_f64() * 1000.0;
    Report {
        window_seconds: window.length.as_secs_f64(),
        hooks: Err("not read".to_owned()),
        load_average: [String::new(), String::new()],
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        programs,
        caveats: CAVEATS,
        test_run,
        agent: Agent {
            cpu_ms: usage.cpu_ms,
            cpu_percent_of_one_cpu: if lifetime_ms > 0.0 {
                usage.cpu_ms / lifetime_ms * 100.0
            } else {
                0.0
            },
            lifetime_seconds: lifetime.as_secs_f64(),
            peak_rss_kib: usage.peak_rss_kib,
        },
        phases: Vec::new(),
        sched_split: SchedSplit::default(),
        contention: None,
        throughput: None,
        recording: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(id: u32, name: &str, run_cnt: u64, run_time_ns: u64) -> (u32, Prog) {
        let json = format!(
            r#"{{"id":{id},"name":"{name}","run_cnt":{run_cnt},"run_time_ns":{run_time_ns}}}"#
        );
        (id, serde_json::from_str(&json).unwrap())
    }

    #[test]
    fn pairs_programs_by_tracepoint() {
        let start = BTreeMap::from([
            prog(1, "kvm_run", 0, 0),
            prog(2, "kvm_exit", 0, 0),
            prog(3, "kvm_msr", 0, 0),
            prog(10, "kvm_fpu", 0, 0),
            prog(11, "kvm_exit", 0, 0),
            prog(20, "floor_tp", 0, 0),
        ]);
        let end = BTreeMap::from([
            prog(1, "kvm_run", 100, 5_000),
            prog(2, "kvm_exit", 0, 0),
            prog(3, "kvm_msr", 0, 0),
            prog(10, "kvm_fpu", 100, 10_000),
            prog(11, "kvm_exit", 0, 0),
            prog(20, "floor_tp", 100, 2_500),
        ]);
        let kvmtop = Held {
            ids: BTreeSet::from([1, 2, 3]),
            tracepoints: BTreeMap::from([(1, "kvm_fpu".to_owned())]),
        };
        let bpftrace = BTreeMap::from([(10, "kvm_fpu".to_owned()), (11, "kvm_exit".to_owned())]);
        let unavailable =
            BTreeMap::from([("kvm_pio", "tracepoint kvm:kvm_pio missing".to_owned())]);
        let floors = FloorIds {
            ids: BTreeMap::from([("kvm_fpu".to_owned(), (20, "tracepoint".to_owned()))]),
            unavailable: BTreeMap::from([("kvm_msr".to_owned(), "refused".to_owned())]),
            kinds: BTreeMap::from([("kvm_fpu".to_owned(), "tracepoint".to_owned())]),
        };
        let window = Window {
            start: &start,
            end: &end,
            kvmtop: &kvmtop,
            bpftrace: &bpftrace,
            unavailable: &unavailable,
            floors: &floors,
            length: Duration::from_secs(1),
        };
        let report = build(
            &window,
            TestRun::unavailable(String::new()),
            Usage::default(),
            Duration::ZERO,
        );
        let row = |tp: &str| {
            report
                .programs
                .iter()
                .find(|row| row.tracepoint == tp)
                .unwrap()
        };
        let run = row("kvm_fpu");
        assert_eq!(run.kvmtop.program, "kvm_run");
        // kvmtop 50 ns/event, bpftrace 100, the floor 25.
        assert_eq!(run.ratio, Some(0.5));
        assert_eq!(run.floor_ratio, Some(2.0));
        assert_eq!(run.kind.as_deref(), Some("tracepoint"));
        let exit = serde_json::to_value(&row("kvm_exit").kvmtop).unwrap();
        assert_eq!(exit["note"], NO_EVENTS);
        assert_eq!(exit["ns_per_event"], serde_json::Value::Null);
        let pio = serde_json::to_value(row("kvm_pio")).unwrap();
        assert_eq!(pio["kvmtop"]["unavailable"], "not attached by kvmtop");
        assert_eq!(
            pio["bpftrace"]["unavailable"],
            "tracepoint kvm:kvm_pio missing"
        );
        let msr = row("kvm_msr");
        assert!(msr.bpftrace.is_none());
        let msr = serde_json::to_value(msr).unwrap();
        assert_eq!(msr["floor"]["unavailable"], "refused");
        assert_eq!(msr["floor_ratio"], serde_json::Value::Null);
        // Without a snapshot's word, the kind is bpftool's type.
        assert_eq!(msr["kind"], serde_json::Value::Null);
        assert_eq!(report.programs.len(), PEERS.len() + 1);
    }
}
