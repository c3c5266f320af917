//! Running scheduling totals of watched threads, decoded from the kernel's entries.

use foldhash::HashMap;
use monitor_common::{
    places::MIGRATION_CLASSES,
    sched::{CPU_UNKNOWN, ThreadSched},
};

use crate::{
    families::places::decode_class,
    host::topology::MigrationClass,
    model::{Histogram, running::Running, sched::ThreadClass},
};

/// Migrations by what they crossed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationCounts([u64; MIGRATION_CLASSES]);

impl MigrationCounts {
    /// The classes a migration can have (a move to the same CPU is not a migration).
    pub const CLASSES: [MigrationClass; MIGRATION_CLASSES] = [
        MigrationClass::SameCore,
        MigrationClass::SameLlc,
        MigrationClass::CrossLlc,
        MigrationClass::CrossNode,
        MigrationClass::Unknown,
    ];

    #[must_use]
    pub fn from_raw(raw: &[u64; MIGRATION_CLASSES]) -> Self {
        let mut counts = [0; MIGRATION_CLASSES];
        for (index, &n) in raw.iter().enumerate() {
            if let Some(slot) = Self::slot(decode_class(index)) {
                counts[slot] += n;
            }
        }
        Self(counts)
    }

    fn slot(class: MigrationClass) -> Option<usize> {
        Self::CLASSES.iter().position(|c| *c == class)
    }

    #[must_use]
    pub fn get(&self, class: MigrationClass) -> u64 {
        Self::slot(class).map_or(0, |slot| self.0[slot])
    }

    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each class with its count, in [`Self::CLASSES`] order.
    pub fn iter(&self) -> impl Iterator<Item = (MigrationClass, u64)> + '_ {
        Self::CLASSES.into_iter().zip(self.0)
    }
}

impl Running for MigrationCounts {
    fn since(&self, earlier: &Self) -> Self {
        Self(self.0.since(&earlier.0))
    }

    fn merge(&mut self, other: &Self) {
        self.0.merge(&other.0);
    }
}

/// One watched thread's running totals. Times include the interval in progress when read, so
/// that a thread waiting (or running) across a whole window shows it in that window.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadTotals {
    pub tid: u32,
    /// The VMM process.
    pub pid: u32,
    pub class: ThreadClass,
    /// The CPU it runs on or last ran on.
    pub cpu: Option<u32>,
    pub running: bool,
    pub waiting: bool,
    pub run_ns: u64,
    /// Run-queue wait: the completed waits of `wait` and the one in progress.
    pub wait_ns: u64,
    /// Completed run-queue waits.
    pub wait: Histogram,
    pub voluntary: u64,
    pub involuntary: u64,
    pub migrations: MigrationCounts,
    /// How long the thread had been watched when read, in ns (0 when not known): a thread
    /// watched for part of a window has its shares taken over that part.
    pub watched_ns: u64,
}

impl ThreadTotals {
    /// Decodes a kernel entry read at `now_ns` (`CLOCK_MONOTONIC`, the clock of
    /// `bpf_ktime_get_ns`). The entry does not say since when the thread is watched: the
    /// caller sets `watched_ns`.
    #[must_use]
    pub fn decode(tid: u32, class: ThreadClass, raw: &ThreadSched, now_ns: u64) -> Self {
        // Both starts set: runnable when watching began, not known yet whether on a CPU.
        let known = raw.run_start_ns == 0 || raw.queue_start_ns == 0;
        let open = |start: u64| {
            if start == 0 || !known {
                0
            } else {
                now_ns.saturating_sub(start)
            }
        };
        Self {
            tid,
            pid: raw.tgid,
            class,
            cpu: (raw.cpu != CPU_UNKNOWN).then_some(raw.cpu),
            running: known && raw.run_start_ns != 0,
            waiting: known && raw.queue_start_ns != 0,
            run_ns: raw.run_ns + open(raw.run_start_ns),
            wait_ns: raw.wait.sum_ns + open(raw.queue_start_ns),
            wait: Histogram::from(&raw.wait),
            voluntary: raw.voluntary,
            involuntary: raw.involuntary,
            migrations: MigrationCounts::from_raw(&raw.migrations),
            watched_ns: 0,
        }
    }
}

// What happened between two readings of the same thread; its identity, CPU and state come from
// the later one.
crate::running_totals!(ThreadTotals {
    run_ns,
    wait_ns,
    wait,
    voluntary,
    involuntary,
    migrations,
});

/// Keeps each thread's times from stepping back between readings.
///
/// A time includes the interval in progress, estimated from when the kernel saw the thread start
/// running or waiting. When the event that ended that interval was skipped (the kernel skips
/// tracepoint programs on a CPU where another BPF program, or a BPF map syscall, is running),
/// the estimate runs on until the thread's next event files the true figure, which is lower.
/// Exported as a counter, that step down reads as a reset, and `rate()` counts the whole total
/// again. Held at its highest value instead, the time pauses until the kernel's figure catches
/// up: a window may show too little, never a negative time or a spike.
#[derive(Default)]
pub struct Monotonic {
    last: HashMap<u32, Highest>,
}

struct Highest {
    pid: u32,
    /// A new entry for the tid (a reused tid, watched afresh) starts a shorter watch.
    watched_ns: u64,
    run_ns: u64,
    wait_ns: u64,
}

impl Monotonic {
    /// Raises each thread's times to at least what the previous reading showed, and forgets
    /// threads no longer read.
    pub fn apply(&mut self, threads: &mut HashMap<u32, ThreadTotals>) {
        self.last.retain(|tid, _| threads.contains_key(tid));
        for (tid, t) in threads.iter_mut() {
            if let Some(before) = self.last.get(tid)
                && before.pid == t.pid
                && t.watched_ns >= before.watched_ns
            {
                t.run_ns = t.run_ns.max(before.run_ns);
                t.wait_ns = t.wait_ns.max(before.wait_ns);
            }
            self.last.insert(
                *tid,
                Highest {
                    pid: t.pid,
                    watched_ns: t.watched_ns,
                    run_ns: t.run_ns,
                    wait_ns: t.wait_ns,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{histogram::LatencyHist, places::MigrationClass as Raw};

    use foldhash::HashMapExt;

    use super::*;

    #[test]
    fn intervals_in_progress_count_up_to_now() {
        let mut raw = ThreadSched::new(10);
        raw.run_ns = 1_000;
        raw.run_start_ns = 5_000;
        raw.wait = LatencyHist {
            count: 1,
            sum_ns: 300,
            ..LatencyHist::ZERO
        };
        raw.migrations[Raw::CrossNode as usize] = 2;
        let t = ThreadTotals::decode(11, ThreadClass::Vcpu, &raw, 5_500);
        assert_eq!((t.run_ns, t.wait_ns, t.cpu), (1_500, 300, None));
        assert!(t.running && !t.waiting);
        assert_eq!(t.migrations.get(MigrationClass::CrossNode), 2);
        raw.run_start_ns = 0;
        raw.queue_start_ns = 5_200;
        raw.cpu = 3;
        let later = ThreadTotals::decode(11, ThreadClass::Vcpu, &raw, 6_000);
        assert_eq!((later.wait_ns, later.cpu), (1_100, Some(3)));
        let window = later.since(&t);
        assert_eq!((window.run_ns, window.wait_ns), (0, 800));
        assert_eq!(window.migrations.total(), 0);
    }

    #[test]
    fn an_overestimated_interval_in_progress_never_steps_a_time_back() {
        let thread = |run_ns, watched_ns| {
            let mut raw = ThreadSched::new(10);
            raw.run_ns = run_ns;
            let mut t = ThreadTotals::decode(11, ThreadClass::Vcpu, &raw, 0);
            t.watched_ns = watched_ns;
            HashMap::from_iter([(11, t)])
        };
        let mut monotonic = Monotonic::default();
        let run_of = |m: &mut Monotonic, run_ns, watched_ns| {
            let mut threads = thread(run_ns, watched_ns);
            m.apply(&mut threads);
            threads[&11].run_ns
        };
        assert_eq!(run_of(&mut monotonic, 100, 1), 100);
        // A missed switch-out left the interval open: 276 was an overestimate.
        assert_eq!(run_of(&mut monotonic, 276, 2), 276);
        assert_eq!(run_of(&mut monotonic, 152, 3), 276);
        assert_eq!(run_of(&mut monotonic, 300, 4), 300);
        // The tid watched afresh (a new thread): its own, smaller time counts.
        assert_eq!(run_of(&mut monotonic, 5, 1), 5);
        // A reading without the thread forgets it.
        monotonic.apply(&mut HashMap::new());
        assert_eq!(run_of(&mut monotonic, 1, 9), 1);
    }
}
