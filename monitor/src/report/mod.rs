//! `kvmtop report`: what changed in an incident, against a baseline, from a recording.
//!
//! Each window's figures ([`figures`]) are averaged over the baseline and over the incident;
//! every figure that moved by more than its floor is a deviation, ranked by how far it moved
//! (see [`magnitude`]) times the figure's weight, largest first. The onset of a deviation is the first
//! incident window whose value is past half-way from the baseline mean to the incident mean:
//! for a step change, the window the step happened in. The advice in force during the
//! incident, the timeline of events and the marks come with it; [`render`] writes it as JSON,
//! Markdown or HTML.

pub mod figures;
pub mod render;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    model::advice::{Evidence, Severity, Target},
    recording::{
        events::Event,
        playback::{Recording, TimedEvent, format_time},
    },
};
use figures::{Entity, Figure};

/// How a report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Deviations largest first, for scripts.
    Json,
    /// To paste into a ticket.
    Md,
    /// One self-contained page with charts.
    Html,
}

/// A time range, unix ns, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Range {
    fn contains(self, time_ns: u64) -> bool {
        (self.from_ns..=self.to_ns).contains(&time_ns)
    }
}

/// One figure that moved.
#[derive(Clone, Debug, Serialize)]
pub struct Deviation {
    pub entity: Entity,
    pub figure: Figure,
    pub baseline: f64,
    pub incident: f64,
    /// `incident / baseline`; null when the baseline is 0.
    pub ratio: Option<f64>,
    /// How far it moved (see [`magnitude`]) times the figure's weight: the rank.
    pub score: f64,
    /// The first incident window past half-way from baseline to incident, RFC 3339.
    pub onset: Option<String>,
    #[serde(skip)]
    pub onset_ns: Option<u64>,
}

/// A recommendation in force during the incident.
#[derive(Clone, Debug, Serialize)]
pub struct AdviceSeen {
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    pub target: Target,
    pub first: String,
    pub last: String,
    pub windows: usize,
    /// As it was when first seen.
    pub evidence: Vec<Evidence>,
}

/// An event or mark on the report's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    pub time: String,
    #[serde(skip)]
    pub time_ns: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub hostname: String,
    pub kvmtop_version: String,
    pub incident: Range,
    pub baseline: Range,
    pub incident_windows: usize,
    pub baseline_windows: usize,
    /// Largest first.
    pub deviations: Vec<Deviation>,
    pub advice: Vec<AdviceSeen>,
    /// Events and marks from the start of the first window read to the end of the incident.
    pub timeline: Vec<TimelineEntry>,
    /// Damage stepped over while reading.
    pub problems: Vec<String>,
    /// Per window of both ranges, the figures charts are drawn from.
    #[serde(skip)]
    pub series: Vec<(u64, Vec<figures::Value>)>,
}

/// The figures of one entity over a range.
#[derive(Default)]
struct Sums {
    baseline: Vec<f64>,
    incident: Vec<(u64, f64)>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0_u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

impl Report {
    /// Reads the windows of both ranges and compares them. `progress` is told each window
    /// read, with the number to read.
    pub fn build(
        recording: &Recording,
        incident: Range,
        baseline: Range,
        mut progress: impl FnMut(usize, usize),
    ) -> Self {
        let mut problems: Vec<String> = recording.problems().to_vec();
        let times: Vec<u64> = recording.window_times().collect();
        let wanted: Vec<usize> = (0..times.len())
            .filter(|&i| incident.contains(times[i]) || baseline.contains(times[i]))
            .collect();
        let mut sums: BTreeMap<(Entity, Figure), Sums> = BTreeMap::new();
        let mut advice: BTreeMap<(String, Target), AdviceSeen> = BTreeMap::new();
        let mut series = Vec::new();
        let (mut hostname, mut version) = (String::new(), String::new());
        let (mut incident_windows, mut baseline_windows) = (0, 0);
        // Where the first window read began: events from then on belong to the report.
        let mut first_start_ns = u64::MAX;
        for (done, &index) in wanted.iter().enumerate() {
            progress(done, wanted.len());
            let time = times[index];
            let snapshot = match recording.window(index) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("window skipped: {e}"));
                    continue;
                }
            };
            hostname.clone_from(&snapshot.host.hostname);
            // Seconds since 1970 to ns: positive and far from overflowing.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let start_ns = (snapshot.window.start_unix_seconds * 1e9) as u64;
            first_start_ns = first_start_ns.min(start_ns);
            version.clone_from(&snapshot.kvmtop_version);
            let in_incident = incident.contains(time);
            if in_incident {
                incident_windows += 1;
                for rec in &snapshot.recommendations {
                    let seen = advice
                        .entry((rec.id.to_owned(), rec.target.clone()))
                        .or_insert_with(|| AdviceSeen {
                            rule: rec.id.to_owned(),
                            title: rec.title.to_owned(),
                            severity: rec.severity,
                            target: rec.target.clone(),
                            first: format_time(time),
                            last: String::new(),
                            windows: 0,
                            evidence: rec.evidence().to_vec(),
                        });
                    seen.last = format_time(time);
                    seen.windows += 1;
                }
            } else {
                baseline_windows += 1;
            }
            let window = figures::of_window(&snapshot);
            for (entity, figure, value) in &window {
                let s = sums.entry((entity.clone(), *figure)).or_default();
                if in_incident {
                    s.incident.push((time, *value));
                } else {
                    s.baseline.push(*value);
                }
            }
            series.push((time, window));
        }
        progress(wanted.len(), wanted.len());
        // What happened before the recording's first window (a mark made while kvmtop was
        // starting) belongs to that window.
        if wanted.first() == Some(&0) {
            first_start_ns = 0;
        }
        let mut deviations: Vec<Deviation> = sums
            .into_iter()
            .filter_map(|((entity, figure), s)| deviation(entity, figure, &s))
            .collect();
        deviations.sort_by(|a, b| b.score.total_cmp(&a.score));
        let timeline = recording
            .events()
            .iter()
            .filter(|e| (first_start_ns..=incident.to_ns).contains(&e.time_ns))
            .map(|TimedEvent { time_ns, event }| TimelineEntry {
                time: format_time(*time_ns),
                time_ns: *time_ns,
                event: event.clone(),
            })
            .collect();
        let mut advice: Vec<AdviceSeen> = advice.into_values().collect();
        advice.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.first.cmp(&b.first)));
        Self {
            hostname,
            kvmtop_version: version,
            incident,
            baseline,
            incident_windows,
            baseline_windows,
            deviations,
            advice,
            timeline,
            problems,
            series,
        }
    }
}

/// How far a figure moved, on a scale common to all figures. Shares of time (steal, time on a
/// CPU) are the guest's time itself: they count in points, [`SHARE_POINTS`] of a vCPU's time
/// scoring 1. Every other figure counts by how many times it moved beyond its usual size, on a
/// log scale: a doubling scores 1, a thousandfold rise 10, so that a quiet figure waking up
/// (0.3 → 300 requests/s) or a noisy tail (a 25× p99) cannot bury the guest losing most of its
/// time.
fn magnitude(figure: Figure, baseline: f64, change: f64) -> f64 {
    if figure.unit == "share" {
        change.abs() / SHARE_POINTS
    } else {
        (change.abs() / baseline.abs().max(figure.floor)).ln_1p() / std::f64::consts::LN_2
    }
}

/// The change of a share of time that scores 1.
const SHARE_POINTS: f64 = 0.05;

/// The deviation of one figure, if it moved by more than its floor.
fn deviation(entity: Entity, figure: Figure, s: &Sums) -> Option<Deviation> {
    let baseline = mean(s.baseline.iter().copied())?;
    let incident = mean(s.incident.iter().map(|(_, v)| *v))?;
    let change = incident - baseline;
    if change.abs() < figure.floor {
        return None;
    }
    let score = figure.weight * magnitude(figure, baseline, change);
    let halfway = baseline + change / 2.0;
    let onset_ns = s
        .incident
        .iter()
        .find(|(_, v)| {
            if change > 0.0 {
                *v > halfway
            } else {
                *v < halfway
            }
        })
        .map(|(t, _)| *t);
    Some(Deviation {
        entity,
        figure,
        baseline,
        incident,
        ratio: (baseline != 0.0).then(|| incident / baseline),
        score,
        onset: onset_ns.map(format_time),
        onset_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_found_with_its_onset_and_noise_below_the_floor_is_not() {
        let entity = Entity::Vm {
            vm: "web".into(),
            pid: 1,
            start_time: 1,
        };
        let step = Sums {
            baseline: vec![0.01, 0.0, 0.02],
            incident: vec![(10, 0.01), (11, 0.45), (12, 0.5), (13, 0.48)],
        };
        let d = deviation(entity.clone(), figures::STEAL, &step).unwrap();
        assert_eq!(d.onset_ns, Some(11));
        assert!((d.baseline - 0.01).abs() < 1e-9 && d.score > 5.0, "{d:?}");
        let noise = Sums {
            baseline: vec![0.01, 0.0],
            incident: vec![(10, 0.02), (11, 0.015)],
        };
        assert!(deviation(entity, figures::STEAL, &noise).is_none());
    }

    #[test]
    fn lost_guest_time_outranks_a_waking_figure_and_a_noisy_tail() {
        let entity = Entity::Vm {
            vm: "db".into(),
            pid: 2,
            start_time: 1,
        };
        let step = |before: f64, after: f64| Sums {
            baseline: vec![before; 10],
            incident: vec![(20, after); 10],
        };
        let score = |figure, before, after| {
            deviation(entity.clone(), figure, &step(before, after))
                .unwrap()
                .score
        };
        let steal = score(figures::STEAL, 0.3, 0.96);
        assert!(steal > score(figures::WAIT_P99, 0.014, 0.37), "{steal}");
        assert!(steal > score(figures::IOPS, 0.36, 296.0), "{steal}");
        assert!(steal > score(figures::ON_CPU, 0.7, 0.04), "{steal}");
        // A doubling of a rate scores about as much as 5 points of steal.
        let doubling = score(figures::EXITS, 1_000.0, 2_000.0);
        assert!((doubling - 1.0).abs() < 1e-9, "{doubling}");
    }

    /// A recording is handed from one person to another: whatever names and marks it holds,
    /// the report printed to a terminal carries nothing a terminal acts on, and the JSON still
    /// means the exact text.
    #[test]
    fn hostile_names_and_marks_reach_no_terminal_raw() {
        use crate::{
            model::{Untrusted, untrusted::is_unsafe},
            recording::{recorder::Recorder, store},
        };
        let hostile = "evil\u{1b}]0;owned\u{7}\u{202e}vm\u{85}";
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::open(dir.path(), store::Config::default()).unwrap();
        let mut snapshot = crate::testing::fixture::snapshot();
        snapshot.vms[0].name = Untrusted::new(hostile);
        recorder.mark(Untrusted::new(hostile)).unwrap();
        for _ in 0..3 {
            snapshot.window.start_unix_seconds += 1.0;
            recorder.record(&snapshot).unwrap();
        }
        recorder.close().unwrap();
        let recording = Recording::open(dir.path()).unwrap();
        let all = Range {
            from_ns: 0,
            to_ns: u64::MAX,
        };
        let report = Report::build(&recording, all, all, |_, _| {});
        assert!(!report.timeline.is_empty());
        let json = render::json(&report).unwrap();
        let markdown = render::markdown(&report);
        for (format, text) in [("json", &json), ("markdown", &markdown)] {
            let bad: Vec<char> = text
                .chars()
                .filter(|&c| c != '\n' && is_unsafe(c))
                .collect();
            assert!(bad.is_empty(), "{format} carries {bad:?}");
        }
        assert!(
            json.contains(r"\u202e"),
            "the JSON keeps the text, escaped: {json}"
        );
    }
}
