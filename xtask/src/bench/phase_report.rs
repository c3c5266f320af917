//! One phase's figures: per tracepoint, kvmtop's program and the peer's, with their events and
//! cost over the phase's window, and the raw counts the scheduling split is solved from.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    floors::FloorIds,
    peer_tools::PeerSpec,
    report::{Measured, Side, Window},
    sampling::Sampled,
    vmms::Vmm,
};

#[derive(Serialize)]
pub struct PhaseReport {
    pub name: &'static str,
    pub purpose: &'static str,
    /// What ran on the host: guests and exact commands.
    pub workload: Vec<String>,
    /// The peer's exact command.
    pub peer: String,
    /// What the comparison with the peer does not show.
    pub caveat: &'static str,
    pub window_seconds: f64,
    /// `/proc/loadavg` (1, 5, 15 min) before and after the phase.
    pub load_average: [String; 2],
    pub rows: Vec<PhaseRow>,
    /// kvmtop's scheduling programs over the window, for the watched/unwatched split.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sched: BTreeMap<&'static str, Observed>,
    pub agent_cpu_percent_of_one_cpu: f64,
    /// The VMMs in kvmtop's snapshot: their threads are the watched ones.
    pub vmms: Vec<Vmm>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the phase could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Serialize)]
pub struct PhaseRow {
    pub tracepoint: &'static str,
    /// The hook kind kvmtop's program ran as (`tracepoint`, `raw_tp`, `tp_btf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Absent where kvmtop has no program on the tracepoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kvmtop: Option<Side>,
    /// An empty program of the same kind on the same hook, over the same window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<Side>,
    /// kvmtop's ns/event divided by the floor's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_ratio: Option<f64>,
    /// Events kvmtop's program handled for a watched thread (scheduling programs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watched_events: Option<u64>,
    /// Absent where the peer has no program on the tracepoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Side>,
    /// kvmtop's ns/event divided by the peer's; absent unless both saw events.
    pub ratio: Option<f64>,
}

/// One program's counters over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Observed {
    pub events: u64,
    pub run_time_ns: u64,
    /// Of `events`, those that concerned a watched thread.
    pub watched: Option<u64>,
}

/// A tracepoint a phase reports.
pub struct RowSpec {
    pub tracepoint: &'static str,
    /// kvmtop's program on it, if any.
    pub kvmtop: Option<&'static str>,
    /// Whether the peer has a program on it.
    pub peer: bool,
    /// The `SCHED_WATCHED_EVENTS` slot counting this program's watched events.
    pub watched: Option<usize>,
}

/// The peer of a phase as it ran.
pub struct PeerRun<'a> {
    pub spec: &'a PeerSpec,
    /// Program id → tracepoint.
    pub tracepoints: &'a BTreeMap<u32, String>,
    /// Why it is not measured.
    pub unavailable: Option<&'a str>,
}

impl PhaseReport {
    pub fn new(name: &'static str, purpose: &'static str, peer: &PeerSpec) -> Self {
        Self {
            name,
            purpose,
            workload: Vec::new(),
            peer: peer.command(),
            caveat: "",
            window_seconds: 0.0,
            load_average: [String::new(), String::new()],
            rows: Vec::new(),
            sched: BTreeMap::new(),
            agent_cpu_percent_of_one_cpu: 0.0,
            vmms: Vec::new(),
            notes: Vec::new(),
            unavailable: None,
        }
    }

    /// Fills the rows and counts from a measured window.
    pub fn fill(
        &mut self,
        specs: &[RowSpec],
        sampled: &Sampled,
        peer: &PeerRun<'_>,
        floors: &FloorIds,
    ) {
        let (none, nothing) = (BTreeMap::new(), BTreeMap::new());
        let window = Window {
            start: &sampled.start,
            end: &sampled.end,
            kvmtop: &sampled.kvmtop,
            bpftrace: &none,
            unavailable: &nothing,
            floors,
            length: sampled.length,
        };
        self.window_seconds = sampled.length.as_secs_f64();
        let lifetime_ms = sampled.lifetime.as_secs_f64() * 1000.0;
        if lifetime_ms > 0.0 {
            self.agent_cpu_percent_of_one_cpu = sampled.usage.cpu_ms / lifetime_ms * 100.0;
        }
        for spec in specs {
            let mut row = PhaseRow {
                tracepoint: spec.tracepoint,
                kind: None,
                kvmtop: None,
                floor: None,
                floor_ratio: None,
                watched_events: None,
                peer: None,
                ratio: None,
            };
            if let Some(program) = spec.kvmtop {
                let id = window.kvmtop_program(spec.tracepoint, program);
                let watched = spec
                    .watched
                    .zip(sampled.watched)
                    .map(|(slot, [a, b])| b[slot].saturating_sub(a[slot]));
                if let Some(id) = id {
                    let observed = observe(sampled, id, watched);
                    if spec.watched.is_some() {
                        self.sched.insert(program, observed);
                        row.watched_events = observed.watched;
                    }
                }
                row.kvmtop = Some(Side {
                    program: program.to_owned(),
                    measured: id.map_or_else(
                        || unavailable("not attached by kvmtop"),
                        |id| window.cost(id),
                    ),
                });
                if id.is_some() {
                    row.kind = window.kind(spec.tracepoint, id);
                    row.floor = window.floor(spec.tracepoint);
                    row.floor_ratio = ratio(row.kvmtop.as_ref(), row.floor.as_ref());
                }
            }
            if spec.peer {
                let id = peer
                    .tracepoints
                    .iter()
                    .find(|(_, tp)| *tp == spec.tracepoint)
                    .map(|(id, _)| *id);
                let measured = match (peer.unavailable, id) {
                    (Some(why), _) => unavailable(why),
                    (None, Some(id)) => window.cost(id),
                    (None, None) => unavailable("not attached by the peer"),
                };
                row.peer = Some(Side {
                    program: peer.spec.program(id.map(|id| window.name(id))),
                    measured,
                });
            }
            row.ratio = ratio(row.kvmtop.as_ref(), row.peer.as_ref());
            self.rows.push(row);
        }
    }
}

fn unavailable(why: &str) -> Measured {
    Measured::Unavailable {
        unavailable: why.to_owned(),
    }
}

fn observe(sampled: &Sampled, id: u32, watched: Option<u64>) -> Observed {
    let counter = |pick: fn(&super::progs::Prog) -> u64| {
        let start = sampled.start.get(&id).map_or(0, pick);
        sampled.end.get(&id).map_or(0, pick).saturating_sub(start)
    };
    Observed {
        events: counter(|prog| prog.run_cnt),
        run_time_ns: counter(|prog| prog.run_time_ns),
        watched,
    }
}

/// `ours` ns/event divided by `theirs`; absent unless both saw events.
pub fn ratio(ours: Option<&Side>, theirs: Option<&Side>) -> Option<f64> {
    let ns = |side: Option<&Side>| side?.measured.ns_per_event();
    match (ns(ours), ns(theirs)) {
        (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::{
        agent::Usage,
        progs::{Held, Prog},
    };

    /// A program as bpftool shows it, with a tenth of its runs missed.
    fn prog(id: u32, name: &str, run_cnt: u64, run_time_ns: u64) -> (u32, Prog) {
        let json = format!(
            r#"{{"id":{id},"name":"{name}","run_cnt":{run_cnt},"run_time_ns":{run_time_ns},
            "recursion_misses":{}}}"#,
            run_cnt / 10
        );
        (id, serde_json::from_str(&json).unwrap())
    }

    #[test]
    fn pairs_kvmtop_and_peer_and_counts_watched_events() {
        let sampled = Sampled {
            start: BTreeMap::from([
                prog(1, "sched_switch", 10, 1_000),
                prog(7, "x", 0, 0),
                prog(9, "floor_tp_btf", 0, 0),
            ]),
            end: BTreeMap::from([
                prog(1, "sched_switch", 110, 6_000),
                prog(7, "x", 50, 5_000),
                prog(9, "floor_tp_btf", 200, 4_000),
            ]),
            kvmtop: Held {
                ids: [1].into(),
                tracepoints: BTreeMap::from([(1, "sched_switch".to_owned())]),
            },
            watched: Some([[5, 0], [25, 3]]),
            length: Duration::from_secs(2),
            usage: Usage {
                cpu_ms: 20.0,
                peak_rss_kib: 1,
            },
            lifetime: Duration::from_secs(2),
        };
        let spec = PeerSpec::Tool {
            path: "/usr/sbin/runqlat",
            attaches: &[],
        };
        let tracepoints = BTreeMap::from([(7, "sched_switch".to_owned())]);
        let mut report = PhaseReport::new("sched-host", "", &spec);
        let specs = [
            RowSpec {
                tracepoint: "sched_switch",
                kvmtop: Some("sched_switch"),
                peer: true,
                watched: Some(0),
            },
            RowSpec {
                tracepoint: "sched_wakeup_new",
                kvmtop: None,
                peer: true,
                watched: None,
            },
            RowSpec {
                tracepoint: "sched_wakeup",
                kvmtop: Some("sched_wakeup"),
                peer: false,
                watched: Some(1),
            },
        ];
        let peer = PeerRun {
            spec: &spec,
            tracepoints: &tracepoints,
            unavailable: None,
        };
        let floors = FloorIds {
            ids: BTreeMap::from([(String::from("sched_switch"), (9, "tp_btf".to_owned()))]),
            unavailable: BTreeMap::from([(
                "sched_wakeup".to_owned(),
                "no empty program".to_owned(),
            )]),
            kinds: BTreeMap::from([("sched_switch".to_owned(), "tp_btf".to_owned())]),
        };
        report.fill(&specs, &sampled, &peer, &floors);
        let switch = &report.rows[0];
        assert_eq!(switch.watched_events, Some(20));
        // kvmtop 50 ns/event, the peer 100, the floor 20.
        assert_eq!(switch.ratio, Some(0.5));
        assert_eq!(switch.floor_ratio, Some(2.5));
        assert_eq!(switch.kind.as_deref(), Some("tp_btf"));
        assert_eq!(switch.floor.as_ref().unwrap().program, "empty tp_btf");
        assert_eq!(switch.peer.as_ref().unwrap().program, "runqlat x");
        let observed = report.sched["sched_switch"];
        assert_eq!(
            observed,
            Observed {
                events: 100,
                run_time_ns: 5_000,
                watched: Some(20)
            }
        );
        let json = serde_json::to_value(&report.rows).unwrap();
        // Misses grew by 10 for kvmtop's program and by 5 for the peer's.
        assert_eq!(json[0]["kvmtop"]["missed"], 10);
        assert_eq!(json[0]["peer"]["missed"], 5);
        assert_eq!(json[0]["floor"]["ns_per_event"], 20.0);
        assert!(json[1].get("kvmtop").is_none());
        assert!(json[1].get("floor").is_none());
        assert_eq!(json[1]["peer"]["unavailable"], "not attached by the peer");
        assert_eq!(json[2]["kvmtop"]["unavailable"], "not attached by kvmtop");
        assert!(json[2].get("peer").is_none());
        assert!((report.agent_cpu_percent_of_one_cpu - 1.0).abs() < 1e-9);
    }
}
