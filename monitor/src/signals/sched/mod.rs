//! Scheduling of VMM threads — run-queue wait (steal), on-CPU time, voluntary and involuntary
//! switches, migrations by topology class, the CPU each runs on, and which processes held the
//! CPU while they waited — plus the NUMA hinting faults of their VMs.
//!
//! Userspace decides which threads are watched (every thread of every VM discovery finds) and
//! tells the kernel through a bitmap; the kernel keeps running totals per thread; this module
//! sums the CPUs, adds the interval in progress, and decodes raw keys at the boundary.

pub mod contenders;
mod layout;
pub mod places;
mod probes;
pub mod totals;
pub mod watch;
pub mod window;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use monitor_common::{
    numa::{NUMA_FAULTS_MAP, NumaFaultKey, NumaFaultStat},
    sched::{
        CPU_PLACES_MAP, ContenderKey, ContenderStat, CpuPlace, SCHED_CONTENDERS_MAP,
        SCHED_CONTENDERS_OVERFLOW_MAP, SCHED_CPU_TIME_MAP, SCHED_DROPS_MAP, SCHED_THREADS_MAP,
        SCHED_WATCH_MAP, SCHED_WATCHED_EVENTS_MAP, ThreadCpuKey, ThreadSched, WATCH_WORDS,
    },
};

pub use self::{
    contenders::{Contender, ContenderTotals, ExitedContenders},
    probes::{Hooks, SchedPlan, SchedProbe},
    totals::{MigrationCounts, ThreadTotals},
    watch::{VhostScan, WatchedThread},
};
use super::numa::{NumaFaultCounts, NumaFaultId};
use crate::model::Attachment;
use crate::{bpf::Kernel, host::topology::Topology};

/// Running totals since the programs were attached.
#[derive(Clone, Debug, Default)]
pub struct SchedTotals {
    /// Per watched thread, by tid.
    pub threads: HashMap<u32, ThreadTotals>,
    /// On-CPU ns per tid and CPU id (of intervals that ended).
    pub cpu_time: HashMap<u32, BTreeMap<u32, u64>>,
    /// Run-queue wait of each VM (by pid) ended by each contender.
    pub contenders: HashMap<(u32, Contender), ContenderTotals>,
    pub numa_faults: HashMap<NumaFaultId, NumaFaultCounts>,
    /// Events of watched threads each source handled.
    pub watched_events: BTreeMap<SchedProbe, u64>,
    /// Events not counted because a map was full.
    pub dropped: u64,
}

/// The scheduler and NUMA maps of the running kernel programs.
pub struct SchedCounters {
    watch_words: Array<MapData, u64>,
    threads: BpfHashMap<MapData, u32, ThreadSched>,
    cpu_time: BpfHashMap<MapData, ThreadCpuKey, u64>,
    contenders: [PerCpuHashMap<MapData, ContenderKey, ContenderStat>; 2],
    numa_faults: PerCpuHashMap<MapData, NumaFaultKey, NumaFaultStat>,
    drops: PerCpuArray<MapData, u64>,
    watched_events: PerCpuArray<MapData, u64>,
    places: Array<MapData, CpuPlace>,
    sources: BTreeMap<SchedProbe, Attachment>,
    hooks: Hooks,
    /// The threads the kernel watches now, and the bitmap words written for them.
    watched: HashMap<u32, WatchedThread>,
    words: HashMap<u32, u64>,
    /// When each watched thread's entry was created (`CLOCK_MONOTONIC` ns).
    watched_since: HashMap<u32, u64>,
    /// The processes of the watched threads.
    watched_pids: HashSet<u32>,
    /// Where contender processes are looked up to tell which have exited.
    proc_root: PathBuf,
    /// Readings taken so far: a contender's keys are removed only once a reading has seen its
    /// final totals.
    reads: AtomicU64,
    exited: ExitedContenders,
}

impl SchedCounters {
    /// Attaches the programs this kernel supports, takes the maps, and describes the host's
    /// CPUs to the programs (without a topology every migration is of unknown class).
    pub fn start(
        kernel: &mut Kernel,
        plan: &SchedPlan,
        topology: Option<&Topology>,
    ) -> anyhow::Result<Self> {
        let (sources, hooks) = plan.attach(kernel);
        let mut counters = Self {
            watch_words: kernel.take_map(SCHED_WATCH_MAP)?,
            threads: kernel.take_map(SCHED_THREADS_MAP)?,
            cpu_time: kernel.take_map(SCHED_CPU_TIME_MAP)?,
            contenders: [
                kernel.take_map(SCHED_CONTENDERS_MAP)?,
                kernel.take_map(SCHED_CONTENDERS_OVERFLOW_MAP)?,
            ],
            numa_faults: kernel.take_map(NUMA_FAULTS_MAP)?,
            drops: kernel.take_map(SCHED_DROPS_MAP)?,
            watched_events: kernel.take_map(SCHED_WATCHED_EVENTS_MAP)?,
            places: kernel.take_map(CPU_PLACES_MAP)?,
            sources,
            hooks,
            watched: HashMap::new(),
            words: HashMap::new(),
            watched_since: HashMap::new(),
            watched_pids: HashSet::new(),
            proc_root: PathBuf::from("/proc"),
            reads: AtomicU64::new(0),
            exited: ExitedContenders::default(),
        };
        // A CPU whose place cannot be written stays unknown: its migrations are still counted,
        // as of unknown class, and the other signal families are unaffected.
        if let Some(topology) = topology
            && let Err(e) = counters.set_topology(topology)
        {
            log::warn!("describing the host CPUs to the scheduler programs: {e:#}");
        }
        Ok(counters)
    }

    /// The procfs in which contender processes are looked up (`/proc` unless set): it must show
    /// the host's initial pid namespace, whose pids the kernel programs record.
    pub fn set_proc_root(&mut self, proc_root: &Path) {
        proc_root.clone_into(&mut self.proc_root);
    }

    /// Whether each source could be attached.
    #[must_use]
    pub fn sources(&self) -> &BTreeMap<SchedProbe, Attachment> {
        &self.sources
    }

    /// Where each source is hooked.
    #[must_use]
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Describes the CPUs of `topology` to the programs, which classify migrations with it.
    /// Every CPU that can be written is; the error names those that could not (their
    /// migrations are of unknown class).
    pub fn set_topology(&mut self, topology: &Topology) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        let mut first_error = None;
        for (cpu, place) in places::cpu_places(topology) {
            if let Err(e) = self.places.set(cpu, place, 0) {
                failed.push(cpu);
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(anyhow::Error::new(e).context(format!(
                "cannot write the place of {} CPU(s) (first: {}); their migrations are of \
                 unknown class",
                failed.len(),
                failed[0]
            ))),
        }
    }

    /// Makes `threads` the watched set: new threads start from zero (so does a thread whose
    /// VM identity changed, i.e. a reused pid), gone ones are forgotten with their CPU times,
    /// and a VM none of whose threads is watched any more loses its contenders and faults.
    /// `runnable` says whether a thread is runnable right now (running or waiting for a CPU):
    /// such a thread's first interval counts from now instead of from its next switch.
    /// Once per reading, contender processes that have exited leave the contender map (see
    /// [`ExitedContenders`]).
    /// Returns what could not be done (a full map, a tid beyond the bitmap).
    pub fn watch(
        &mut self,
        threads: &[WatchedThread],
        runnable: impl Fn(&WatchedThread) -> bool,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let desired: HashMap<u32, WatchedThread> = threads.iter().map(|t| (t.tid, *t)).collect();
        let same_thread =
            |a: &WatchedThread, b: &WatchedThread| (a.pid, a.vm_start) == (b.pid, b.vm_start);
        let gone: HashSet<u32> = self
            .watched
            .iter()
            .filter(|(tid, old)| desired.get(tid).is_none_or(|new| !same_thread(old, new)))
            .map(|(tid, _)| *tid)
            .collect();
        // Clear the bits first so no event updates an entry being removed.
        let staying = words_for(self.watched.keys().filter(|tid| !gone.contains(tid)));
        self.write_words(&staying, &mut problems);
        let mut gone_threads = Vec::new();
        for tid in &gone {
            gone_threads.extend(self.watched.remove(tid));
            self.watched_since.remove(tid);
            // Already gone is fine, here and below.
            let _ = self.threads.remove(tid);
        }
        if !gone.is_empty() {
            let stale: Vec<ThreadCpuKey> = self
                .cpu_time
                .keys()
                .filter_map(Result::ok)
                .filter(|k| gone.contains(&k.tid))
                .collect();
            for key in &stale {
                let _ = self.cpu_time.remove(key);
            }
        }
        for (tid, thread) in &desired {
            if let Some(known) = self.watched.get_mut(tid) {
                known.class = thread.class;
                continue;
            }
            if *tid >= WATCH_WORDS * 64 {
                problems.push(format!("thread {tid} is beyond the watched-thread bitmap"));
                continue;
            }
            let now = crate::host::clock::monotonic_ns();
            let fresh = if runnable(thread) {
                ThreadSched::runnable(thread.pid, now)
            } else {
                ThreadSched::new(thread.pid)
            };
            match self.threads.insert(tid, fresh, 0) {
                Ok(()) => {
                    self.watched.insert(*tid, *thread);
                    self.watched_since.insert(*tid, now);
                }
                Err(e) => problems.push(format!("cannot watch thread {tid}: {e}")),
            }
        }
        // Entries exist before their bits are set.
        let words = words_for(self.watched.keys());
        self.write_words(&words, &mut problems);
        // A process keeps its contenders and faults while it has a watched thread and the same
        // identity (a new process on a reused pid starts from zero).
        let renewed: HashSet<u32> = gone_threads
            .iter()
            .filter(|old| {
                desired
                    .values()
                    .any(|new| new.pid == old.pid && new.vm_start != old.vm_start)
            })
            .map(|old| old.pid)
            .collect();
        let keep: HashSet<u32> = self
            .watched
            .values()
            .map(|t| t.pid)
            .filter(|pid| !renewed.contains(pid))
            .collect();
        if keep != self.watched_pids {
            self.forget_processes(&keep);
        }
        self.watched_pids = self.watched.values().map(|t| t.pid).collect();
        self.forget_exited_contenders();
        problems
    }

    /// Removes the contender keys of processes that have exited, so that short-lived processes
    /// do not fill the map and push every later wait into "other". Runs at most once per
    /// reading, with one procfs lookup per distinct contender (and per watched process).
    fn forget_exited_contenders(&mut self) {
        let reads = self.reads.load(Ordering::Relaxed);
        if !self.exited.due(reads) {
            return;
        }
        let root = &self.proc_root;
        let exists = |pid: u32| root.join(pid.to_string()).exists();
        // The programs record pids of the initial namespace: a procfs that does not show the
        // watched processes belongs to another one, where a missing pid proves nothing.
        if self.watched_pids.is_empty() || !self.watched_pids.iter().all(|&pid| exists(pid)) {
            self.exited.clear();
            return;
        }
        let [map, _] = &mut self.contenders;
        let keys: Vec<ContenderKey> = map.keys().filter_map(Result::ok).collect();
        let exited = self
            .exited
            .check(keys.iter().map(|k| k.contender).collect(), exists);
        for key in keys.iter().filter(|k| exited.contains(&k.contender)) {
            // Already gone is fine.
            let _ = map.remove(key);
        }
    }

    /// Writes the bitmap words that differ from what the kernel has.
    fn write_words(&mut self, words: &HashMap<u32, u64>, problems: &mut Vec<String>) {
        let indexes: HashSet<u32> = words.keys().chain(self.words.keys()).copied().collect();
        for index in indexes {
            let word = words.get(&index).copied().unwrap_or(0);
            if self.words.get(&index).copied().unwrap_or(0) == word {
                continue;
            }
            match self.watch_words.set(index, word, 0) {
                Ok(()) if word == 0 => {
                    self.words.remove(&index);
                }
                Ok(()) => {
                    self.words.insert(index, word);
                }
                Err(e) => problems.push(format!("watched-thread bitmap word {index}: {e}")),
            }
        }
    }

    /// Removes the per-process counters of processes not in `keep`.
    fn forget_processes(&mut self, keep: &HashSet<u32>) {
        for map in &mut self.contenders {
            let stale: Vec<ContenderKey> = map
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !keep.contains(&k.tgid))
                .collect();
            for key in &stale {
                let _ = map.remove(key);
            }
        }
        let stale: Vec<NumaFaultKey> = self
            .numa_faults
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.contains(&k.tgid))
            .collect();
        for key in &stale {
            let _ = self.numa_faults.remove(key);
        }
    }

    /// The watched threads.
    #[must_use]
    pub fn watched(&self) -> &HashMap<u32, WatchedThread> {
        &self.watched
    }

    /// Reads every counter, summed over the CPUs.
    #[must_use]
    pub fn read(&self) -> SchedTotals {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let now = crate::host::clock::monotonic_ns();
        let mut out = SchedTotals::default();
        for (tid, raw) in self.threads.iter().filter_map(Result::ok) {
            let Some(thread) = self.watched.get(&tid) else {
                continue;
            };
            let mut totals = ThreadTotals::decode(tid, thread.class, &raw, now);
            totals.watched_ns = self
                .watched_since
                .get(&tid)
                .map_or(0, |&since| now.saturating_sub(since));
            out.threads.insert(tid, totals);
        }
        for (key, ns) in self.cpu_time.iter().filter_map(Result::ok) {
            out.cpu_time.entry(key.tid).or_default().insert(key.cpu, ns);
        }
        for map in &self.contenders {
            for (key, per_cpu) in map.iter().filter_map(Result::ok) {
                let contender = Contender::decode(key.contender);
                let slot = out.contenders.entry((key.tgid, contender)).or_default();
                for stat in per_cpu.iter() {
                    slot.waits = slot.waits.wrapping_add(stat.waits);
                    slot.wait_ns = slot.wait_ns.wrapping_add(stat.wait_ns);
                }
            }
        }
        for (key, per_cpu) in self.numa_faults.iter().filter_map(Result::ok) {
            let slot = out
                .numa_faults
                .entry(NumaFaultId::decode(&key))
                .or_default();
            for stat in per_cpu.iter() {
                slot.add_raw(stat);
            }
        }
        out.dropped = self.drops.get(&0, 0).map_or(0, |per_cpu| {
            per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        });
        out.watched_events = self.watched_events();
        out
    }

    /// Events each source handled for a watched thread, summed over the CPUs (for benchmarks:
    /// see `monitor_common::sched::SCHED_WATCHED_EVENTS_MAP`).
    #[must_use]
    pub fn watched_events(&self) -> BTreeMap<SchedProbe, u64> {
        SchedProbe::ALL
            .iter()
            .map(|probe| {
                let n = self
                    .watched_events
                    .get(&(probe.watched_event() as u32), 0)
                    .map_or(0, |per_cpu| {
                        per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                    });
                (*probe, n)
            })
            .collect()
    }
}

/// The bitmap words with the bits of `tids` set.
fn words_for<'a>(tids: impl Iterator<Item = &'a u32>) -> HashMap<u32, u64> {
    let mut words: HashMap<u32, u64> = HashMap::new();
    for tid in tids {
        *words.entry(tid / 64).or_default() |= 1 << (tid % 64);
    }
    words
}
