//! The cost of an unwatched and of a watched scheduling event, solved from two phases.
//!
//! `bpf_stats` gives one program's total run time over all its events, not per branch. kvmtop's
//! `SCHED_WATCHED_EVENTS` says how many of those events took the watched branch. With two phases
//! whose watched shares differ, `total = unwatched · c_u + watched · c_w` holds twice and gives
//! both costs, assuming each is the same in both phases.

use serde::Serialize;

use super::{
    phase_report::{Observed, PhaseReport},
    phases::{SCHED_GUESTS, SCHED_HOST},
};

pub const METHOD: &str = "For each program, phase A (a rate-limited context-switch load of host \
    tasks, no bench guest) and phase B (the same load plus two busy port-I/O guests and a \
    disk-reading guest, whose threads kvmtop watches) each give total run_time_ns = u·c_u + w·c_w, \
    where w is the growth of the program's SCHED_WATCHED_EVENTS slot over the window (the events \
    that passed the bitmap test), and u = run_cnt − w. The two equations are solved for c_u (an \
    unwatched event: read the record, test the bitmap, return) and c_w (a watched one: the test \
    plus the accounting). Assumptions: each path costs the same in both phases (the guests change \
    which tasks run and what is in the caches, which this cannot see); c_w is an average over \
    phase B's watched events (switches with one or both sides watched, wakeups of sleeping and of \
    preempted threads); the map is read at the same polls as run_cnt. `sensitivity` is how many \
    ns c_w moves for each ns by which phase B's unwatched cost differs from phase A's; the range \
    is c_w if that difference were ±10% of c_u.";

#[derive(Default, Serialize)]
pub struct SchedSplit {
    pub method: &'static str,
    /// Phase A (unwatched-heavy) and phase B (with watched threads).
    pub phases: [&'static str; 2],
    pub programs: Vec<ProgramSplit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize)]
pub struct ProgramSplit {
    pub program: &'static str,
    /// The program's counters in phases A and B.
    pub observed: [Observed; 2],
    #[serde(flatten)]
    pub solved: Solved,
}

#[derive(Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Solved {
    Costs {
        unwatched_ns_per_event: f64,
        watched_ns_per_event: f64,
        sensitivity: f64,
        /// `watched_ns_per_event` if phase B's unwatched cost were 10% below or above phase A's.
        watched_range_10pct: [f64; 2],
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'static str>,
    },
    Unavailable {
        unavailable: String,
    },
}

const NEGATIVE: &str = "a negative cost: the two phases are not consistent with one pair of \
    constants (noise, or the unwatched cost changed between them)";

/// The split for every scheduling program measured in both sched phases.
pub fn sched(phases: &[PhaseReport]) -> SchedSplit {
    let find = |name: &str| phases.iter().find(|phase| phase.name == name);
    let mut split = SchedSplit {
        method: METHOD,
        phases: [SCHED_HOST, SCHED_GUESTS],
        programs: Vec::new(),
        notes: Vec::new(),
    };
    let (Some(a), Some(b)) = (find(SCHED_HOST), find(SCHED_GUESTS)) else {
        return split;
    };
    for (label, phase) in [("A", a), ("B", b)] {
        let others: Vec<&str> = phase
            .vmms
            .iter()
            .filter(|vmm| !vmm.bench)
            .map(|vmm| vmm.name.as_str())
            .collect();
        if !others.is_empty() {
            split.notes.push(format!(
                "during phase {label} kvmtop also watched VMMs the bench did not start ({}): \
                 their threads' events count as watched too, so the solve also assumes a \
                 watched event costs the same whichever VM it concerns",
                others.join(", ")
            ));
        }
    }
    for (program, observed_a) in &a.sched {
        let Some(observed_b) = b.sched.get(program) else {
            continue;
        };
        split.programs.push(ProgramSplit {
            program,
            observed: [*observed_a, *observed_b],
            solved: solve(observed_a, observed_b),
        });
    }
    split
}

/// Solves `T = u·c_u + w·c_w` for the two phases.
#[allow(clippy::cast_precision_loss)] // Counters far below 2^52 over a benchmark.
pub fn solve(a: &Observed, b: &Observed) -> Solved {
    let unavailable = |why: &str| Solved::Unavailable {
        unavailable: why.to_owned(),
    };
    let (Some(w_a), Some(w_b)) = (a.watched, b.watched) else {
        return unavailable("SCHED_WATCHED_EVENTS could not be read in both phases");
    };
    if a.events == 0 || b.events == 0 {
        return unavailable("no events in one of the phases");
    }
    let (t_a, t_b) = (a.run_time_ns as f64, b.run_time_ns as f64);
    let (u_a, u_b) = (
        a.events.saturating_sub(w_a) as f64,
        b.events.saturating_sub(w_b) as f64,
    );
    let (w_a, w_b) = (w_a as f64, w_b as f64);
    let det = u_a * w_b - w_a * u_b;
    // The watched shares must differ: det / (n_a · n_b) is share_b − share_a.
    let shares_apart = det / (a.events as f64 * b.events as f64);
    if shares_apart.abs() < 1e-4 {
        return unavailable("the watched shares of the two phases are too close to separate");
    }
    let unwatched = (t_a * w_b - t_b * w_a) / det;
    let watched = (u_a * t_b - u_b * t_a) / det;
    let sensitivity = u_a * u_b / det;
    let swing = (sensitivity * unwatched * 0.1).abs();
    Solved::Costs {
        unwatched_ns_per_event: unwatched,
        watched_ns_per_event: watched,
        sensitivity,
        watched_range_10pct: [watched - swing, watched + swing],
        note: (unwatched < 0.0 || watched < 0.0).then_some(NEGATIVE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{peer_tools::PeerSpec, vmms::Vmm};

    fn observed(events: u64, watched: u64, c_u: u64, c_w: u64) -> Observed {
        Observed {
            events,
            run_time_ns: (events - watched) * c_u + watched * c_w,
            watched: Some(watched),
        }
    }

    fn costs(solved: &Solved) -> (f64, f64, f64) {
        match solved {
            Solved::Costs {
                unwatched_ns_per_event,
                watched_ns_per_event,
                sensitivity,
                ..
            } => (*unwatched_ns_per_event, *watched_ns_per_event, *sensitivity),
            Solved::Unavailable { unavailable } => panic!("{unavailable}"),
        }
    }

    #[test]
    fn recovers_both_costs() {
        // No watched events at all in phase A.
        let (c_u, c_w, sensitivity) = costs(&solve(
            &observed(1_000_000, 0, 40, 0),
            &observed(500_000, 100_000, 40, 250),
        ));
        assert!((c_u - 40.0).abs() < 1e-9 && (c_w - 250.0).abs() < 1e-9);
        // u_b / w_b when phase A has no watched events.
        assert!((sensitivity - 4.0).abs() < 1e-9);
        // Some watched events in both.
        let (c_u, c_w, _) = costs(&solve(
            &observed(800_000, 1_000, 35, 300),
            &observed(600_000, 200_000, 35, 300),
        ));
        assert!((c_u - 35.0).abs() < 1e-9 && (c_w - 300.0).abs() < 1e-9);
    }

    #[test]
    fn sensitivity_is_the_shift_per_ns_of_drift() {
        let a = observed(900_000, 9_000, 50, 200);
        let drifted = Observed {
            run_time_ns: observed(300_000, 60_000, 50, 200).run_time_ns + 240_000,
            ..observed(300_000, 60_000, 50, 200)
        };
        // Phase B's unwatched events cost 1 ns more: c_w moves by the sensitivity.
        let (_, c_w, sensitivity) = costs(&solve(&a, &drifted));
        assert!(
            (c_w - 200.0 - sensitivity).abs() < 1e-6,
            "{c_w} {sensitivity}"
        );
    }

    #[test]
    fn pairs_programs_across_the_two_phases() {
        let spec = PeerSpec::Tool {
            path: "/usr/sbin/runqlat",
            attaches: &[],
        };
        let mut a = PhaseReport::new(SCHED_HOST, "", &spec);
        let mut b = PhaseReport::new(SCHED_GUESTS, "", &spec);
        a.sched.insert("sched_switch", observed(1_000, 0, 40, 0));
        a.sched.insert("sched_wakeup", observed(10, 0, 100, 0));
        b.sched
            .insert("sched_switch", observed(1_000, 500, 40, 140));
        b.vmms.push(Vmm {
            pid: 7,
            name: "someone-else".to_owned(),
            bench: false,
        });
        let split = sched(&[b, a]);
        assert_eq!(split.programs.len(), 1);
        assert_eq!(split.programs[0].program, "sched_switch");
        let (c_u, c_w, _) = costs(&split.programs[0].solved);
        assert!((c_u - 40.0).abs() < 1e-9 && (c_w - 140.0).abs() < 1e-9);
        assert_eq!(split.notes.len(), 1);
        assert!(
            split.notes[0].starts_with("during phase B") && split.notes[0].contains("someone-else")
        );
        assert!(sched(&[]).programs.is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_separate() {
        let same = observed(1_000, 100, 40, 200);
        assert!(matches!(solve(&same, &same), Solved::Unavailable { .. }));
        let unread = Observed {
            watched: None,
            ..same
        };
        assert!(matches!(solve(&unread, &same), Solved::Unavailable { .. }));
        let empty = Observed::default();
        assert!(matches!(
            solve(
                &Observed {
                    watched: Some(0),
                    ..empty
                },
                &same
            ),
            Solved::Unavailable { .. }
        ));
        // Inconsistent totals give a negative cost, flagged.
        let mut low = observed(1_000, 500, 40, 200);
        low.run_time_ns = 10_000;
        match solve(&observed(1_000, 0, 40, 0), &low) {
            Solved::Costs { note, .. } => assert_eq!(note, Some(NEGATIVE)),
            Solved::Unavailable { unavailable } => panic!("{unavailable}"),
        }
    }
}
