//! Exit-detail values (ports, MSRs, guest pages, hypercalls, IPI targets, …) as counters whose
//! number is bounded whatever the guest does.
//!
//! A guest chooses which ports, MSRs and addresses it touches, so one series per value would be
//! as many series as the guest likes. Each window, a value among the N largest of its kind by
//! rate (`--metrics-top-n`) that has no series yet gets one, while the VM has fewer than
//! [`Kept::limit`] of that kind; every other event of the kind is added to `value="other"`.
//!
//! Once a value has a series it keeps it until the VM exits, even after leaving the top N. Every
//! exported counter is the sum of the window counts added to it, never recomputed, so none can
//! go down. The alternatives cannot say that: dropping a value that left the top N would either
//! move its past events into `other` (which then jumps) or make its series vanish and come back
//! lower (which Prometheus reads as a reset), and an `other` computed as "all events minus the
//! current top" falls each time a value enters the top. The cost of keeping values is bounded:
//! at most N plus a cap of N more per VM and kind ([`Kept::limit`]), room for values that move
//! in and out of the top, and everything is forgotten when the VM exits, its series with it.
//! Sum of a kind's values plus its `other` is every event of the kind seen since kvmtop started
//! watching the VM.

use std::collections::{BTreeMap, HashMap};

use crate::model::{DetailGroup, Snapshot};

/// The most values per kind `--metrics-top-n` may ask for: the snapshot carries each window's
/// largest values of each kind, this many of them (`families::exits::window::TOP_DETAILS`).
pub const MAX_TOP_N: usize = 5;

/// A value's labels: the sub-kind (direction, access type, …) and the value.
pub type ValueKey = (String, String);

/// The counters of one VM and detail kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindCounters {
    /// Events per value with a series, since the value got it.
    pub values: BTreeMap<ValueKey, u64>,
    /// Every other event of the kind.
    pub other: u64,
}

/// The detail values with a series, and their counters, per VM (pid and start time, so a new
/// process on a reused pid starts afresh) and kind.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    top_n: usize,
    vms: HashMap<(u32, u64), BTreeMap<&'static str, KindCounters>>,
}

impl Kept {
    /// `top_n` is capped at [`MAX_TOP_N`].
    #[must_use]
    pub fn new(top_n: usize) -> Self {
        Self {
            top_n: top_n.min(MAX_TOP_N),
            vms: HashMap::new(),
        }
    }

    /// Most values with a series per VM and kind: the top N plus as many again.
    #[must_use]
    pub fn limit(&self) -> usize {
        2 * self.top_n
    }

    #[must_use]
    pub fn top_n(&self) -> usize {
        self.top_n
    }

    /// Adds one window's detail counts; call once per window, in order. VMs no longer in the
    /// snapshot are forgotten.
    pub fn observe(&mut self, snapshot: &Snapshot) {
        self.vms.retain(|key, _| {
            snapshot
                .vms
                .iter()
                .any(|vm| (vm.pid, vm.start_time) == *key)
        });
        let (top_n, limit) = (self.top_n, self.limit());
        for vm in &snapshot.vms {
            let kinds = self.vms.entry((vm.pid, vm.start_time)).or_default();
            for group in &vm.families.exits.details {
                let counters = kinds.entry(group.kind.as_str()).or_default();
                fold(counters, group, top_n, limit);
            }
        }
    }

    /// The counters of the VM `pid` started at `start_time`, by kind.
    #[must_use]
    pub fn of(&self, pid: u32, start_time: u64) -> Option<&BTreeMap<&'static str, KindCounters>> {
        self.vms.get(&(pid, start_time))
    }
}

/// Adds one window of a kind to its counters (see the module's documentation).
fn fold(counters: &mut KindCounters, group: &DetailGroup, top_n: usize, limit: usize) {
    // `top` is largest first: a value ranked within N may get a series.
    for (rank, detail) in group.top.iter().enumerate() {
        let key = (detail.sub.clone(), detail.value.clone());
        if rank < top_n
            && detail.count > 0
            && counters.values.len() < limit
            && !counters.values.contains_key(&key)
        {
            counters.values.insert(key.clone(), 0);
        }
        match counters.values.get_mut(&key) {
            Some(count) => *count += detail.count,
            None => counters.other += detail.count,
        }
    }
    counters.other += group.other;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::DetailCount, testing::fixture};

    fn detail(value: &str, count: u64) -> DetailCount {
        DetailCount {
            sub: "out".to_owned(),
            value: value.to_owned(),
            sub_code: 1,
            number: None,
            count,
            rate: 0.0,
        }
    }

    /// The fixture with its first VM's port details set to `top` (largest first) and `other`.
    fn window(top: &[(&str, u64)], other: u64) -> Snapshot {
        let mut snapshot = fixture::snapshot();
        let group = snapshot.vms[0]
            .families
            .exits
            .details
            .iter_mut()
            .find(|g| g.kind.as_str() == "pio")
            .expect("the fixture has port details");
        group.top = top.iter().map(|&(v, n)| detail(v, n)).collect();
        group.other = other;
        group.count = group.top.iter().map(|d| d.count).sum::<u64>() + other;
        snapshot
    }

    fn ports(kept: &Kept, snapshot: &Snapshot) -> KindCounters {
        let vm = &snapshot.vms[0];
        kept.of(vm.pid, vm.start_time).unwrap()["pio"].clone()
    }

    fn all_counters(counters: &KindCounters) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = counters
            .values
            .iter()
            .map(|((_, value), n)| (value.clone(), *n))
            .collect();
        all.push(("other".to_owned(), counters.other));
        all
    }

    #[test]
    fn the_top_n_get_series_and_the_rest_is_other() {
        let mut kept = Kept::new(2);
        let snapshot = window(&[("0x80", 100), ("0x71", 50), ("0x70", 20)], 7);
        kept.observe(&snapshot);
        let pio = ports(&kept, &snapshot);
        assert_eq!(
            all_counters(&pio),
            [
                ("0x71".into(), 50),
                ("0x80".into(), 100),
                ("other".into(), 27)
            ]
        );
    }

    #[test]
    fn values_moving_in_and_out_of_the_top_keep_every_counter_monotonic_and_bounded() {
        let mut kept = Kept::new(2);
        let mut previous: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        // A guest whose busiest ports change every window: 0x80 and 0x71 first, then a new pair
        // each window, then 0x80 again.
        let windows: Vec<Vec<(String, u64)>> = (0..12)
            .map(|w| {
                let hot = if w == 11 { 0x80 } else { 0x100 + w };
                vec![
                    (format!("{hot:#x}"), 1_000),
                    (format!("{:#x}", 0x200 + w), 500),
                    ("0x80".to_owned(), 10),
                ]
            })
            .collect();
        for top in &windows {
            let top: Vec<(&str, u64)> = top.iter().map(|(v, n)| (v.as_str(), *n)).collect();
            let snapshot = window(&top, 3);
            total += top.iter().map(|(_, n)| n).sum::<u64>() + 3;
            kept.observe(&snapshot);
            let pio = ports(&kept, &snapshot);
            assert!(pio.values.len() <= kept.limit(), "{pio:?}");
            let now: BTreeMap<String, u64> = all_counters(&pio).into_iter().collect();
            for (value, before) in &previous {
                let after = now.get(value).copied();
                assert!(
                    after.is_some_and(|a| a >= *before),
                    "{value} went from {before} to {after:?}"
                );
            }
            // Every event counted once: the values and other add up to all events seen.
            assert_eq!(now.values().sum::<u64>(), total);
            previous = now;
        }
        // Four windows filled the four places; later hot ports went to other.
        assert_eq!(previous.len(), kept.limit() + 1);
        assert!(previous.contains_key("0x100") && !previous.contains_key("0x105"));
    }

    #[test]
    fn a_vm_that_exits_is_forgotten_and_a_reused_pid_starts_afresh() {
        let mut kept = Kept::new(3);
        let snapshot = window(&[("0x80", 100)], 0);
        kept.observe(&snapshot);
        let vm = &snapshot.vms[0];
        assert!(kept.of(vm.pid, vm.start_time).is_some());
        let mut later = snapshot.clone();
        later.vms[0].start_time += 1;
        kept.observe(&later);
        assert!(kept.of(vm.pid, vm.start_time).is_none());
        assert_eq!(ports(&kept, &later).values.values().sum::<u64>(), 100);
    }

    #[test]
    fn top_n_zero_folds_everything_into_other() {
        let mut kept = Kept::new(0);
        let snapshot = window(&[("0x80", 100), ("0x71", 5)], 1);
        kept.observe(&snapshot);
        assert_eq!(
            all_counters(&ports(&kept, &snapshot)),
            [("other".into(), 106)]
        );
        assert_eq!(Kept::new(99).top_n(), MAX_TOP_N);
    }
}
