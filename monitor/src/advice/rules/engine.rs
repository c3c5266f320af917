//! Hysteresis across evaluations: a rule fires only after its condition has held on
//! `fire_after` evaluations in a row, and clears only after `clear_after` evaluations in a row
//! past its clearing threshold (the firing threshold moved by `clear_margin`), so that a value
//! hovering around a threshold neither flickers nor lingers.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{Evaluation, Recommendation, Target, evaluate_unsorted, sort_recommendations};
use crate::advice::config::Thresholds;
use crate::advice::inputs::Inputs;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: &'static str,
    target: Target,
}

impl Key {
    fn of(rec: &Recommendation) -> Self {
        Self {
            rule: rec.id,
            target: rec.target.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    /// Evaluations in a row the firing condition held.
    held: u32,
    active: bool,
    /// Evaluations in a row, while active, the value was past the clearing threshold.
    cleared: u32,
    last: Recommendation,
}

/// The stateful rules engine: call [`Engine::evaluate`] once per observation window.
#[derive(Debug, Clone)]
pub struct Engine {
    thresholds: Thresholds,
    relaxed: Thresholds,
    tracks: HashMap<Key, Track>,
}

impl Engine {
    /// An engine with no history, using `thresholds` (including the hysteresis settings).
    #[must_use]
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            relaxed: thresholds.relaxed(thresholds.clear_margin),
            thresholds,
            tracks: HashMap::new(),
        }
    }

    /// The thresholds in force.
    #[must_use]
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Forgets every recommendation about a process for which `gone(pid)` is true: it has
    /// exited, or its pid now names another process. Its advice is not shown again, not even
    /// while it would otherwise be clearing (about a VM no longer there), and a new process on
    /// the pid starts without the old one's history.
    pub fn forget_processes(&mut self, gone: impl Fn(u32) -> bool) {
        self.tracks
            .retain(|key, _| key.target.pid().is_none_or(|pid| !gone(pid)));
    }

    /// Applies the rules to `inputs` and returns the recommendations in force after
    /// hysteresis. The inputs out of reach are those of this evaluation.
    pub fn evaluate(&mut self, inputs: &Inputs) -> Evaluation {
        let strict = evaluate_unsorted(inputs, &self.thresholds);
        let fire_after = self.thresholds.fire_after.max(1);
        let clear_after = self.thresholds.clear_after.max(1);
        // A set: with a recommendation per vCPU of a hundred VMs, a list made the pass below
        // compare every track with every key.
        let mut seen = HashSet::with_capacity(strict.recommendations.len());
        for rec in strict.recommendations {
            let key = Key::of(&rec);
            match self.tracks.get_mut(&key) {
                Some(track) => {
                    track.held = track.held.saturating_add(1);
                    track.cleared = 0;
                    track.active |= track.held >= fire_after;
                    track.last = rec;
                }
                None => {
                    self.tracks.insert(
                        key.clone(),
                        Track {
                            held: 1,
                            active: fire_after <= 1,
                            cleared: 0,
                            last: rec,
                        },
                    );
                }
            }
            seen.insert(key);
        }
        // The clearing thresholds matter only for a rule in force whose firing condition no
        // longer holds: most windows have none, and the rules are not applied a second time.
        let clearing = self
            .tracks
            .iter()
            .any(|(key, track)| track.active && !seen.contains(key));
        let mut holding: HashMap<Key, Recommendation> = if clearing {
            evaluate_unsorted(inputs, &self.relaxed)
                .recommendations
                .into_iter()
                .map(|r| (Key::of(&r), r))
                .collect()
        } else {
            HashMap::new()
        };
        self.tracks.retain(|key, track| {
            if seen.contains(key) {
                return true;
            }
            if !track.active {
                // The run of holding evaluations is broken before the rule fired.
                return false;
            }
            track.held = 0;
            if let Some(mut rec) = holding.remove(key) {
                rec.set_holding(true);
                track.last = rec;
                track.cleared = 0;
                return true;
            }
            track.last.set_holding(true);
            track.cleared += 1;
            track.cleared < clear_after
        });
        let mut recommendations: Vec<Recommendation> = self
            .tracks
            .values()
            .filter(|t| t.active)
            .map(|t| t.last.clone())
            .collect();
        sort_recommendations(&mut recommendations);
        Evaluation {
            recommendations,
            unavailable: strict.unavailable,
            host: crate::model::HostState::default(),
        }
    }
}
