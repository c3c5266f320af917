//! The contender lists over a span of several windows.
//!
//! The contender map holds VMs × contenders keys — with every VM waiting behind every other one
//! on a crowded host, the square of the VM count — and reading it whole is the largest part of the agent's
//! work there. A VM's top contenders move slowly, so the map is read only once every few readings
//! (about [`CONTENDER_SPAN`] in the live modes, every reading in a snapshot), each VM's list is
//! ranked once per read, and the windows in between show the list of the last span again. The
//! run-queue wait of each window stays per window: it comes from the per-thread counters.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::{
    sync::Arc,
    time::Duration,
};

use monitor_common::sched::CONTENDER_OTHER;

/// Contenders listed per VM; the rest are summed as "other".
pub const TOP_CONTENDERS: usize = 5;

/// The process that held a CPU until a waiting VMM thread got it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    /// The CPU was idle: the wait was wake-up latency only.
    Idle,
    Process(u32),
    /// Beyond the kernel map's capacity.
    Other,
}

impl Contender {
    /// The kernel's contender field: a process id, 0 for the idle task, or the overflow key.
    #[must_use]
    pub fn decode(raw: u32) -> Self {
        match raw {
            0 => Self::Idle,
            CONTENDER_OTHER => Self::Other,
            pid => Self::Process(pid),
        }
    }

    /// The kernel's contender field for it.
    #[must_use]
    pub fn encode(self) -> u32 {
        match self {
            Self::Idle => 0,
            Self::Other => CONTENDER_OTHER,
            Self::Process(pid) => pid,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContenderTotals {
    pub waits: u64,
    pub wait_ns: u64,
}

/// What the contender lists cover in the live modes: the contender map is read once in about
/// this long (a whole number of readings, at least one).
pub const CONTENDER_SPAN: Duration = Duration::from_secs(5);

/// Readings per reading of the contender map, for readings every `interval`: the whole number
/// nearest [`CONTENDER_SPAN`], at least one.
#[must_use]
pub fn readings_per_span(interval: Duration) -> u64 {
    if interval.is_zero() {
        return 1;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a small positive ratio, rounded"
    )]
    let readings = (CONTENDER_SPAN.as_secs_f64() / interval.as_secs_f64()).round() as u64;
    readings.max(1)
}

/// Which readings read the contender map: the first two (so the first window has its own
/// list), then one every `every` readings.
#[derive(Debug)]
pub struct ReadSchedule {
    every: u64,
    readings: u64,
    /// The reading that last read the map, and how many have.
    last_read: u64,
    reads: u64,
}

impl ReadSchedule {
    #[must_use]
    pub fn new(every: u64) -> Self {
        Self {
            every: every.max(1),
            readings: 0,
            last_read: 0,
            reads: 0,
        }
    }

    /// Counts a reading; whether it reads the contender map.
    pub fn next_reading(&mut self) -> bool {
        self.readings += 1;
        let due = self.reads < 2 || self.readings - self.last_read >= self.every;
        if due {
            self.last_read = self.readings;
            self.reads += 1;
        }
        due
    }

    /// Readings of the contender map so far.
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.reads
    }
}

/// Running totals of each (VM pid, contender).
pub type RunningContenders = HashMap<(u32, Contender), ContenderTotals>;

/// The contender map as last read, and when it is read next.
#[derive(Debug)]
pub struct ContenderReadings {
    pub schedule: ReadSchedule,
    /// The last reading and when it was taken (`CLOCK_MONOTONIC` ns).
    pub running: Arc<RunningContenders>,
    read_at: Option<u64>,
    pub span: Arc<ContenderSpan>,
}

impl ContenderReadings {
    /// Nothing read yet; the map is to be read once every `every` readings.
    #[must_use]
    pub fn new(every: u64) -> Self {
        Self {
            schedule: ReadSchedule::new(every),
            running: Arc::default(),
            read_at: None,
            span: Arc::default(),
        }
    }

    /// Takes a reading of the map made at `at` (`CLOCK_MONOTONIC` ns): the lists become those
    /// between the previous reading and it.
    pub fn record(&mut self, running: RunningContenders, at: u64) {
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds, far below 2^52")]
        let seconds = self
            .read_at
            .map_or(0.0, |was| at.saturating_sub(was) as f64 / 1e9);
        let before = self.read_at.map(|_| self.running.as_ref());
        self.span = Arc::new(ContenderSpan::between(&running, before, seconds));
        self.running = Arc::new(running);
        self.read_at = Some(at);
    }

    /// Drops what is kept of the VMs `pids`, whose keys have left the kernel map.
    pub fn forget(&mut self, pids: &HashSet<u32>) {
        if self.running.keys().any(|(vm, _)| pids.contains(vm)) {
            Arc::make_mut(&mut self.running).retain(|(vm, _), _| !pids.contains(vm));
        }
        if self.span.vms.keys().any(|vm| pids.contains(vm)) {
            Arc::make_mut(&mut self.span).forget(pids);
        }
    }
}

/// Each VM's contenders between two readings of the contender map, ranked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContenderSpan {
    /// Seconds between the two readings (0 before the second).
    pub seconds: f64,
    /// By VM pid: the [`TOP_CONTENDERS`] processes (or the idle CPU) with the most wait, most
    /// first, then [`Contender::Other`] with the rest, if any. Only contenders that ended a wait.
    pub vms: HashMap<u32, Vec<(Contender, ContenderTotals)>>,
}

impl ContenderSpan {
    /// The lists from running totals `now` and `before` (none: every total counts),
    /// `seconds` apart. A total that went back belongs to a key created again since (its
    /// process exited, or the VM's pid was reused): all of it counts.
    #[must_use]
    pub fn between(
        now: &HashMap<(u32, Contender), ContenderTotals>,
        before: Option<&HashMap<(u32, Contender), ContenderTotals>>,
        seconds: f64,
    ) -> Self {
        let mut deltas: HashMap<u32, Vec<(Contender, ContenderTotals)>> = HashMap::new();
        for (key, total) in now {
            let was = before.and_then(|b| b.get(key)).copied().unwrap_or_default();
            let delta = if total.waits < was.waits || total.wait_ns < was.wait_ns {
                *total
            } else {
                ContenderTotals {
                    waits: total.waits - was.waits,
                    wait_ns: total.wait_ns - was.wait_ns,
                }
            };
            if delta.waits > 0 {
                deltas.entry(key.0).or_default().push((key.1, delta));
            }
        }
        let vms = deltas
            .into_iter()
            .map(|(vm, contenders)| (vm, top(contenders)))
            .collect();
        Self { seconds, vms }
    }

    /// Drops the lists of `pids` (VMs gone, or whose pid is another process now).
    pub fn forget(&mut self, pids: &HashSet<u32>) {
        self.vms.retain(|vm, _| !pids.contains(vm));
    }
}

/// The [`TOP_CONTENDERS`] with the most wait, most first (ties by contender), then the rest
/// summed as [`Contender::Other`]: a partial selection, not a sort of every contender.
fn top(mut contenders: Vec<(Contender, ContenderTotals)>) -> Vec<(Contender, ContenderTotals)> {
    let mut other = ContenderTotals::default();
    contenders.retain(|(contender, totals)| {
        let named = *contender != Contender::Other;
        if !named {
            add(&mut other, *totals);
        }
        named
    });
    let most_first = |a: &(Contender, ContenderTotals), b: &(Contender, ContenderTotals)| {
        b.1.wait_ns.cmp(&a.1.wait_ns).then(a.0.cmp(&b.0))
    };
    if contenders.len() > TOP_CONTENDERS {
        contenders.select_nth_unstable_by(TOP_CONTENDERS, most_first);
        for (_, totals) in contenders.drain(TOP_CONTENDERS..) {
            add(&mut other, totals);
        }
    }
    contenders.sort_unstable_by(most_first);
    if other.waits > 0 {
        contenders.push((Contender::Other, other));
    }
    contenders
}

fn add(to: &mut ContenderTotals, more: ContenderTotals) {
    to.waits = to.waits.wrapping_add(more.waits);
    to.wait_ns = to.wait_ns.wrapping_add(more.wait_ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(waits: u64, wait_ns: u64) -> ContenderTotals {
        ContenderTotals { waits, wait_ns }
    }

    #[test]
    fn the_map_is_read_at_the_first_two_readings_then_once_per_span() {
        let mut schedule = ReadSchedule::new(5);
        let reads: Vec<bool> = (0..13).map(|_| schedule.next_reading()).collect();
        assert_eq!(
            reads,
            [
                true, true, false, false, false, false, true, false, false, false, false, true,
                false
            ]
        );
        assert_eq!(schedule.reads(), 4);
        // A snapshot reads it at both ends of its one window.
        let mut snapshot = ReadSchedule::new(1);
        assert!((0..4).all(|_| snapshot.next_reading()));
    }

    #[test]
    fn a_span_is_about_five_seconds_of_readings() {
        let ms = Duration::from_millis;
        assert_eq!(readings_per_span(ms(1_000)), 5);
        assert_eq!(readings_per_span(ms(2_000)), 3, "2.5 rounds up");
        assert_eq!(readings_per_span(ms(300)), 17);
        assert_eq!(readings_per_span(ms(10_000)), 1);
        assert_eq!(readings_per_span(Duration::ZERO), 1);
    }

    #[test]
    fn each_vm_keeps_its_top_contenders_of_the_span_and_the_rest_as_other() {
        let vm = 100;
        let mut before = HashMap::new();
        let mut now = HashMap::new();
        // Eight processes; before the span, process 1 had the most, 8 the least.
        for pid in 1..=8u32 {
            let was = u64::from(9 - pid) * 1_000;
            before.insert((vm, Contender::Process(pid)), totals(9, was));
            // Over the span the order turns over: 8 waits most.
            now.insert(
                (vm, Contender::Process(pid)),
                totals(10, was + u64::from(pid) * 100),
            );
        }
        now.insert((vm, Contender::Idle), totals(3, 50));
        // The kernel's overflow key joins "other"; a key with no wait in the span is left out.
        before.insert((vm, Contender::Other), totals(1, 10));
        now.insert((vm, Contender::Other), totals(2, 30));
        now.insert((vm, Contender::Process(9)), totals(0, 0));
        // Another VM's keys stay its own.
        now.insert((7, Contender::Process(1)), totals(1, 5));
        let span = ContenderSpan::between(&now, Some(&before), 5.0);
        let process = Contender::Process;
        assert_eq!(
            span.vms[&vm],
            [
                (process(8), totals(1, 800)),
                (process(7), totals(1, 700)),
                (process(6), totals(1, 600)),
                (process(5), totals(1, 500)),
                (process(4), totals(1, 400)),
                // 3, 2, 1, idle and the overflow key.
                (Contender::Other, totals(3 + 3 + 1, 300 + 200 + 100 + 50 + 20)),
            ]
        );
        assert_eq!(span.vms[&7], [(process(1), totals(1, 5))]);
        assert!((span.seconds - 5.0).abs() < f64::EPSILON);
    }

    #[test]
    fn totals_that_went_back_count_whole_and_forgotten_vms_leave() {
        let before = HashMap::from_iter([
            ((1, Contender::Process(5)), totals(10, 10_000)),
            ((2, Contender::Idle), totals(4, 400)),
        ]);
        let now = HashMap::from_iter([
            // Its key was removed and created again (a reused pid).
            ((1, Contender::Process(5)), totals(2, 300)),
            ((2, Contender::Idle), totals(6, 700)),
        ]);
        let mut span = ContenderSpan::between(&now, Some(&before), 1.0);
        assert_eq!(span.vms[&1], [(Contender::Process(5), totals(2, 300))]);
        assert_eq!(span.vms[&2], [(Contender::Idle, totals(2, 300))]);
        // Without an earlier reading every total counts.
        let first = ContenderSpan::between(&now, None, 0.0);
        assert_eq!(first.vms[&2], [(Contender::Idle, totals(6, 700))]);
        span.forget(&HashSet::from_iter([1]));
        assert_eq!(span.vms.keys().collect::<Vec<_>>(), [&2]);
    }
}
