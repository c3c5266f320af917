//! What happened on the timeline of a recording: VMs coming and going, kernel sources
//! degrading and recovering, advice firing and clearing, events lost, and the operator's marks.
//! All but marks are found by comparing each window's snapshot with the one before
//! ([`EventDetector`]), so a recording needs nothing beyond the snapshots to have them.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde::{Deserialize, Serialize};

use crate::model::{
    Snapshot, SourceState, Untrusted,
    advice::{Evidence, Severity, Target},
};

/// One thing that happened, at the time of the frame that carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A VM appeared after the recording began.
    VmStarted {
        pid: u32,
        start_time: u64,
        name: Untrusted,
    },
    /// A VM was gone from a window.
    VmExited {
        pid: u32,
        start_time: u64,
        name: Untrusted,
    },
    /// A kernel source could not be attached, or its reason changed.
    SourceDegraded {
        family: String,
        source: String,
        why: Untrusted,
    },
    /// A source that was unavailable is attached again.
    SourceRecovered { family: String, source: String },
    /// A recommendation came into force, with the evidence it fired on.
    AdviceFired {
        rule: String,
        title: String,
        severity: Severity,
        target: Target,
        evidence: Vec<Evidence>,
    },
    /// A recommendation is no longer in force.
    AdviceCleared { rule: String, target: Target },
    /// A family's kernel programs missed events (another BPF program was running on the CPU, or
    /// a map was full): its figures undercount. Told when a source starts losing, then at most
    /// once a minute while it goes on, and once more when it stops, each time with what was
    /// lost since the last telling: a source that loses a few events every window (as under a
    /// busy tracer) does not fill the timeline, and the counts still add up to every loss.
    EventsLost {
        family: String,
        source: String,
        count: u64,
        /// The windows `count` was lost over (1 in recordings made before losses were summed).
        #[serde(default = "one_window")]
        windows: u64,
    },
    /// A note the operator or a script put on the timeline.
    Mark { text: Untrusted },
}

impl Event {
    /// A short name of the kind of event, for lists and filters.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VmStarted { .. } => "vm started",
            Self::VmExited { .. } => "vm exited",
            Self::SourceDegraded { .. } => "source degraded",
            Self::SourceRecovered { .. } => "source recovered",
            Self::AdviceFired { .. } => "advice fired",
            Self::AdviceCleared { .. } => "advice cleared",
            Self::EventsLost { .. } => "events lost",
            Self::Mark { .. } => "mark",
        }
    }
}

/// One line, safe for a terminal: every text a guest owner or a local user chose is shown
/// sanitized.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VmStarted { pid, name, .. } => write!(f, "VM {name} (pid {pid}) started"),
            Self::VmExited { pid, name, .. } => write!(f, "VM {name} (pid {pid}) exited"),
            Self::SourceDegraded {
                family,
                source,
                why,
            } => write!(f, "{family}/{source} unavailable: {why}"),
            Self::SourceRecovered { family, source } => write!(f, "{family}/{source} attached"),
            Self::AdviceFired {
                rule,
                title,
                severity,
                target,
                evidence,
            } => {
                write!(f, "{rule} {severity:?} on {target}: {title}")?;
                if let Some(first) = evidence.first() {
                    write!(f, " ({first})")?;
                }
                Ok(())
            }
            Self::AdviceCleared { rule, target } => write!(f, "{rule} cleared on {target}"),
            Self::EventsLost {
                family,
                source,
                count,
                windows,
            } => {
                write!(f, "{family}/{source} lost {count} events")?;
                if *windows > 1 {
                    write!(f, " over {windows} windows")?;
                }
                Ok(())
            }
            Self::Mark { text } => write!(f, "mark: {text}"),
        }
    }
}

/// Finds the events of each window by comparing it with the previous one.
#[derive(Debug, Default)]
pub struct EventDetector {
    /// Whether a window has been seen: what is there at the first is not news.
    started: bool,
    vms: BTreeMap<(u32, u64), Untrusted>,
    /// Unavailable sources and why, by family and source.
    unavailable: BTreeMap<(String, String), String>,
    advice: BTreeSet<(String, Target)>,
    /// Sources losing events, by family and source: what was lost since the last telling.
    losing: BTreeMap<(String, String), Losses>,
}

/// A source's losses not yet told.
#[derive(Debug, Default)]
struct Losses {
    /// Events lost since the last telling.
    count: u64,
    /// Windows with losses since the last telling.
    windows: u64,
    /// Whether the start of this run of losses was told.
    told: bool,
}

/// Windows between two tellings of losses that go on: a minute at the default interval.
const LOSS_REPORT_WINDOWS: u64 = 60;

fn one_window() -> u64 {
    1
}

impl EventDetector {
    /// The events between the previous window and `snapshot`, in a fixed order: VMs, sources,
    /// losses, advice.
    pub fn detect(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let mut events = Vec::new();
        self.vms(snapshot, &mut events);
        self.sources(snapshot, &mut events);
        self.lost(snapshot, &mut events);
        self.advice(snapshot, &mut events);
        self.started = true;
        events
    }

    fn vms(&mut self, snapshot: &Snapshot, events: &mut Vec<Event>) {
        let now: BTreeMap<(u32, u64), Untrusted> = snapshot
            .vms
            .iter()
            .map(|vm| ((vm.pid, vm.start_time), vm.name.clone()))
            .collect();
        if self.started {
            for ((pid, start_time), name) in &now {
                if !self.vms.contains_key(&(*pid, *start_time)) {
                    events.push(Event::VmStarted {
                        pid: *pid,
                        start_time: *start_time,
                        name: name.clone(),
                    });
                }
            }
        }
        for ((pid, start_time), name) in &self.vms {
            if !now.contains_key(&(*pid, *start_time)) {
                events.push(Event::VmExited {
                    pid: *pid,
                    start_time: *start_time,
                    name: name.clone(),
                });
            }
        }
        self.vms = now;
    }

    /// Live and silent are both attached: flapping between them is what an idle VM does, not
    /// news.
    fn sources(&mut self, snapshot: &Snapshot, events: &mut Vec<Event>) {
        let mut now = BTreeMap::new();
        for state in snapshot.families.states() {
            for (source, status) in state.sources {
                if let SourceState::Unavailable(why) = status {
                    now.insert((state.family.to_owned(), source.clone()), why.clone());
                }
            }
        }
        for ((family, source), why) in &now {
            if self.unavailable.get(&(family.clone(), source.clone())) != Some(why) {
                events.push(Event::SourceDegraded {
                    family: family.clone(),
                    source: source.clone(),
                    why: Untrusted::new(why.clone()),
                });
            }
        }
        for (family, source) in self.unavailable.keys() {
            if !now.contains_key(&(family.clone(), source.clone())) {
                events.push(Event::SourceRecovered {
                    family: family.clone(),
                    source: source.clone(),
                });
            }
        }
        self.unavailable = now;
    }

    fn advice(&mut self, snapshot: &Snapshot, events: &mut Vec<Event>) {
        let mut now = BTreeSet::new();
        for rec in &snapshot.recommendations {
            let key = (rec.id.to_owned(), rec.target.clone());
            if !self.advice.contains(&key) {
                events.push(Event::AdviceFired {
                    rule: rec.id.to_owned(),
                    title: rec.title.to_owned(),
                    severity: rec.severity,
                    target: rec.target.clone(),
                    evidence: rec.evidence().to_vec(),
                });
            }
            now.insert(key);
        }
        for (rule, target) in self.advice.difference(&now) {
            events.push(Event::AdviceCleared {
                rule: rule.clone(),
                target: target.clone(),
            });
        }
        self.advice = now;
    }

    /// What is still untold when a recording ends: the losses of each run that goes on, with
    /// the windows they cover, so the counts told add up to every loss recorded.
    pub fn finish(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.losing)
            .into_iter()
            .filter(|(_, losses)| losses.count > 0)
            .map(|((family, source), losses)| Event::EventsLost {
                family,
                source,
                count: losses.count,
                windows: losses.windows,
            })
            .collect()
    }

    /// Losses: told at the first window a source loses in, then every
    /// [`LOSS_REPORT_WINDOWS`] windows while it goes on, and at the first window without.
    fn lost(&mut self, snapshot: &Snapshot, events: &mut Vec<Event>) {
        let mut now: BTreeMap<(String, String), u64> = BTreeMap::new();
        for state in snapshot.families.states() {
            for (source, lost) in state.lost {
                if lost.count > 0 {
                    now.insert((state.family.to_owned(), source.clone()), lost.count);
                }
            }
            if state.dropped.count > 0 {
                let key = (
                    state.family.to_owned(),
                    "(a kernel map was full)".to_owned(),
                );
                now.insert(key, state.dropped.count);
            }
        }
        for key in now.keys() {
            self.losing.entry(key.clone()).or_default();
        }
        // A run of losses ends at the first window without one: what is left is told then, and
        // the source is forgotten until it loses again.
        self.losing.retain(|key, losses| {
            let lost = now.get(key).copied();
            let stopped = lost.is_none();
            losses.count += lost.unwrap_or(0);
            if !stopped {
                losses.windows += 1;
            }
            let tell = !losses.told || stopped || losses.windows >= LOSS_REPORT_WINDOWS;
            if tell && losses.count > 0 {
                events.push(Event::EventsLost {
                    family: key.0.clone(),
                    source: key.1.clone(),
                    count: losses.count,
                    windows: losses.windows,
                });
                losses.count = 0;
                losses.windows = 0;
            }
            losses.told = true;
            !stopped
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LostEvents, advice::Comparison};

    /// The fixture without losses, which would be news in every window.
    fn quiet_snapshot() -> Snapshot {
        let mut snapshot = crate::testing::fixture::snapshot();
        for family in ["exits", "sched", "numa", "tlb", "block"] {
            snapshot.families.lost_mut(family).unwrap().clear();
        }
        let f = &mut snapshot.families;
        for dropped in [
            &mut f.exits.dropped,
            &mut f.sched.dropped,
            &mut f.numa.dropped,
            &mut f.tlb.dropped,
            &mut f.block.dropped,
        ] {
            *dropped = LostEvents::default();
        }
        snapshot
    }

    fn names(events: &[Event]) -> Vec<String> {
        events.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_first_window_is_not_news_but_what_follows_is() {
        let mut detector = EventDetector::default();
        let mut snapshot = quiet_snapshot();
        let first = detector.detect(&snapshot);
        assert!(
            first
                .iter()
                .all(|e| !matches!(e, Event::VmStarted { .. } | Event::VmExited { .. })),
            "{first:?}"
        );
        assert_eq!(detector.detect(&snapshot), [], "nothing changed");

        let gone = snapshot.vms.remove(0);
        let mut newcomer = snapshot.vms[0].clone();
        newcomer.pid = 4242;
        newcomer.name = Untrusted::new("new\u{1b}[2Jvm");
        snapshot.vms.push(newcomer);
        snapshot
            .families
            .sched
            .lost
            .insert("sched_switch".into(), LostEvents { count: 7, total: 7 });
        let events = detector.detect(&snapshot);
        let shown = names(&events);
        assert!(
            shown.contains(&"VM new\u{fffd}[2Jvm (pid 4242) started".to_owned()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&format!("VM {} (pid {}) exited", gone.name, gone.pid)),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"sched/sched_switch lost 7 events".to_owned()),
            "{shown:?}"
        );
    }

    #[test]
    fn sources_and_advice_change_state_once() {
        let mut detector = EventDetector::default();
        let mut snapshot = quiet_snapshot();
        snapshot.recommendations.clear();
        detector.detect(&snapshot);

        snapshot.families.numa.sources.insert(
            "numa_fault".into(),
            SourceState::Unavailable("no such hook".into()),
        );
        let rule = crate::advice::catalog().first().unwrap();
        snapshot
            .recommendations
            .push(crate::model::advice::Recommendation::new(
                rule,
                Severity::Warning,
                Target::Host,
                Evidence::fact("thp", "never", Comparison::Equals, "never"),
            ));
        let events = detector.detect(&snapshot);
        assert!(
            matches!(events[0], Event::SourceDegraded { .. }),
            "{events:?}"
        );
        assert!(matches!(events[1], Event::AdviceFired { .. }), "{events:?}");
        assert_eq!(detector.detect(&snapshot), [], "still in force, still down");

        snapshot.families.numa.sources.remove("numa_fault");
        snapshot.recommendations.clear();
        let shown = names(&detector.detect(&snapshot));
        assert_eq!(
            shown,
            [
                "numa/numa_fault attached".to_owned(),
                format!("{} cleared on host", rule.id)
            ]
        );
    }

    /// A source losing a few events every window is told at the start, once a minute and at
    /// the end, and the counts told add up to every loss.
    #[test]
    fn losses_that_go_on_are_summed_not_told_every_window() {
        let mut detector = EventDetector::default();
        let mut snapshot = quiet_snapshot();
        detector.detect(&snapshot);
        let mut told = Vec::new();
        for window in 1..=132 {
            let lost = &mut snapshot.families.sched.lost;
            if window <= 130 {
                lost.insert("sched_wakeup".into(), LostEvents { count: 3, total: 3 });
            } else {
                lost.clear();
            }
            for event in detector.detect(&snapshot) {
                if let Event::EventsLost { count, windows, .. } = event {
                    told.push((window, count, windows));
                }
            }
        }
        assert_eq!(
            told,
            [(1, 3, 1), (61, 180, 60), (121, 180, 60), (131, 27, 9)]
        );
        let sum: u64 = told.iter().map(|t| t.1).sum();
        assert_eq!(sum, 130 * 3);
        let shown = Event::EventsLost {
            family: "sched".into(),
            source: "sched_wakeup".into(),
            count: 180,
            windows: 60,
        };
        assert_eq!(
            shown.to_string(),
            "sched/sched_wakeup lost 180 events over 60 windows"
        );
    }

    /// A recording that ends while a source is still losing tells what it lost since the last
    /// telling, and nothing when that was told already.
    #[test]
    fn losses_still_going_on_are_told_at_the_end() {
        let mut detector = EventDetector::default();
        let mut snapshot = quiet_snapshot();
        detector.detect(&snapshot);
        snapshot
            .families
            .tlb
            .lost
            .insert("tlb_flush".into(), LostEvents { count: 2, total: 2 });
        let mut told = Vec::new();
        for _ in 0..5 {
            told.extend(detector.detect(&snapshot));
        }
        told.extend(detector.finish());
        let losses: Vec<(u64, u64)> = told
            .iter()
            .filter_map(|event| match event {
                Event::EventsLost { count, windows, .. } => Some((*count, *windows)),
                _ => None,
            })
            .collect();
        assert_eq!(losses, [(2, 1), (8, 4)]);
        assert!(detector.finish().is_empty());
        // Told at its only window: nothing is left for the end.
        detector.detect(&snapshot);
        assert!(detector.finish().is_empty());
    }

    #[test]
    fn a_loss_recorded_without_its_windows_reads_as_one_window() {
        let event: Event = serde_json::from_str(
            r#"{"event":"events_lost","family":"tlb","source":"tlb_flush","count":4}"#,
        )
        .unwrap();
        assert_eq!(event.to_string(), "tlb/tlb_flush lost 4 events");
    }
}
