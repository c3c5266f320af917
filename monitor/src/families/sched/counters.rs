//! The scheduler maps of the kernel programs: which threads are watched (a bitmap userspace
//! keeps in step with discovery), and their running totals per thread, per CPU and per
//! contender.
//!
//! The kernel keeps running totals per thread; this module sums the CPUs, adds the interval in
//! progress, and decodes raw keys at the boundary.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use monitor_common::sched::{
    ContenderKey, ContenderStat, SCHED_CONTENDERS_MAP, SCHED_CONTENDERS_OVERFLOW_MAP,
    SCHED_CPU_TIME_MAP, SCHED_DROPS_MAP, SCHED_THREADS_MAP, SCHED_WATCH_MAP,
    SCHED_WATCHED_EVENTS_MAP, ThreadCpuKey, ThreadSched, WATCH_WORDS,
};

use super::{
    contender_span::{ContenderReadings, ContenderSpan, RunningContenders},
    contenders::{Contender, ExitedContenders},
    sources::SOURCES,
    totals::ThreadTotals,
    watch::WatchedThread,
};
use crate::{
    bpf::{Kernel, batch::Batched},
    host::{clock::monotonic_ns, proc::is_process},
};

/// Running totals since the programs were attached.
#[derive(Clone, Debug, Default)]
pub struct SchedTotals {
    /// Per watched thread, by tid.
    pub threads: HashMap<u32, ThreadTotals>,
    /// On-CPU ns per tid and CPU id (of intervals that ended).
    pub cpu_time: HashMap<u32, BTreeMap<u32, u64>>,
    /// Run-queue wait of each VM (by pid) ended by each contender, as of the last reading of the
    /// contender map (see [`super::contender_span`]): not every reading reads it.
    pub contenders: Arc<RunningContenders>,
    /// Each VM's top contenders between the last two readings of the contender map.
    pub contender_span: Arc<ContenderSpan>,
    /// Events of watched threads each source handled, by source name.
    pub watched_events: BTreeMap<&'static str, u64>,
    /// Events not counted because a map was full.
    pub dropped: u64,
}

/// The scheduler maps of the running kernel programs.
pub struct SchedCounters {
    watch_words: Array<MapData, u64>,
    threads: Batched<BpfHashMap<MapData, u32, ThreadSched>>,
    cpu_time: Batched<BpfHashMap<MapData, ThreadCpuKey, u64>>,
    contenders: [Batched<BpfHashMap<MapData, ContenderKey, ContenderStat>>; 2],
    drops: PerCpuArray<MapData, u64>,
    watched_events: PerCpuArray<MapData, u64>,
    /// The threads the kernel watches now, and the bitmap words written for them.
    watched: HashMap<u32, WatchedThread>,
    words: HashMap<u32, u64>,
    /// When each watched thread's entry was created (`CLOCK_MONOTONIC` ns).
    watched_since: HashMap<u32, u64>,
    /// The processes of the watched threads.
    watched_pids: HashSet<u32>,
    /// Where contender processes are looked up to tell which have exited.
    proc_root: PathBuf,
    /// The contender map as last read; a contender's keys are removed only once a reading of
    /// the map has seen its final totals.
    contender_readings: Mutex<ContenderReadings>,
    exited: ExitedContenders,
    /// Exited contenders are looked for once every this many readings of the contender map.
    contender_check_every: u64,
}

impl SchedCounters {
    /// Takes the maps. Contender processes are looked up under `proc_root`, which must show the
    /// host's initial pid namespace, whose pids the kernel programs record. The contender map is
    /// read once every `contender_readings` readings (see [`super::contender_span`]).
    pub fn open(
        kernel: &mut Kernel,
        proc_root: &Path,
        contender_readings: u64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            watch_words: kernel.take_map(SCHED_WATCH_MAP)?,
            threads: kernel.take_map(SCHED_THREADS_MAP)?,
            cpu_time: kernel.take_map(SCHED_CPU_TIME_MAP)?,
            contenders: [
                kernel.take_map(SCHED_CONTENDERS_MAP)?,
                kernel.take_map(SCHED_CONTENDERS_OVERFLOW_MAP)?,
            ],
            drops: kernel.take_map(SCHED_DROPS_MAP)?,
            watched_events: kernel.take_map(SCHED_WATCHED_EVENTS_MAP)?,
            watched: HashMap::new(),
            words: HashMap::new(),
            watched_since: HashMap::new(),
            watched_pids: HashSet::new(),
            proc_root: proc_root.to_owned(),
            contender_readings: Mutex::new(ContenderReadings::new(contender_readings)),
            exited: ExitedContenders::default(),
            contender_check_every: 1,
        })
    }

    /// Looks for exited contenders once every `reads` readings of the contender map (at least
    /// one) instead of at every one.
    pub fn set_contender_check_every(&mut self, reads: u64) {
        self.contender_check_every = reads.max(1);
    }

    /// Makes `threads` the watched set: new threads start from zero (so does a thread whose
    /// VM identity changed, i.e. a reused pid), gone ones are forgotten with their CPU times,
    /// and a VM none of whose threads is watched any more loses its contenders.
    /// `runnable` says whether a thread is runnable right now (running or waiting for a CPU):
    /// such a thread's first interval counts from now instead of from its next switch.
    /// After each reading of the contender map, contender processes that have exited leave it
    /// (see [`ExitedContenders`]).
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
                .all_keys()
                .into_iter()
                .filter(|k| gone.contains(&k.tid))
                .collect();
            self.cpu_time.remove_keys(&stale);
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
            let now = monotonic_ns();
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
    /// reading of the contender map, on the keys that reading found, with one procfs lookup per
    /// distinct contender that is not a VMM discovery sees now.
    fn forget_exited_contenders(&mut self) {
        let contenders: HashSet<u32> = {
            let readings = self
                .contender_readings
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !self
                .exited
                .due(readings.schedule.reads() / self.contender_check_every)
            {
                return;
            }
            readings
                .running
                .keys()
                .filter_map(|(_, contender)| match contender {
                    Contender::Process(pid) => Some(*pid),
                    Contender::Idle | Contender::Other => None,
                })
                .collect()
        };
        let root = &self.proc_root;
        // Not merely `/proc/PID` being there: it is also there when the pid has since gone to a
        // thread of another process.
        let exists = |pid: u32| is_process(root, pid);
        // The programs record pids of the initial namespace: a procfs that does not show the
        // watched processes belongs to another one, where a missing pid proves nothing.
        // One watched process tells: discovery has just seen them all.
        if !self.watched_pids.iter().next().is_some_and(|&pid| exists(pid)) {
            self.exited.clear();
            return;
        }
        // Discovery has just seen the VMMs it knows: only the other contenders are looked up.
        let exited = self.exited.check(contenders, &self.watched_pids, exists);
        if exited.is_empty() {
            return;
        }
        let stale: Vec<ContenderKey> = {
            let readings = self
                .contender_readings
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            readings
                .running
                .keys()
                .filter(|(_, c)| matches!(c, Contender::Process(pid) if exited.contains(pid)))
                .map(|&(tgid, contender)| ContenderKey {
                    tgid,
                    contender: contender.encode(),
                })
                .collect()
        };
        // Already gone is fine.
        let [map, _] = &mut self.contenders;
        map.remove_keys(&stale);
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

    /// Removes the per-process counters of processes not in `keep`, in the kernel and as last
    /// read.
    fn forget_processes(&mut self, keep: &HashSet<u32>) {
        let mut forgotten = HashSet::new();
        for map in &mut self.contenders {
            let stale: Vec<ContenderKey> = map
                .all_keys()
                .into_iter()
                .filter(|k| !keep.contains(&k.tgid))
                .collect();
            forgotten.extend(stale.iter().map(|k| k.tgid));
            map.remove_keys(&stale);
        }
        forgotten.extend(self.watched_pids.iter().filter(|pid| !keep.contains(pid)));
        self.contender_readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(&forgotten);
    }

    /// The watched threads.
    #[must_use]
    pub fn watched(&self) -> &HashMap<u32, WatchedThread> {
        &self.watched
    }

    /// Reads every counter, summed over the CPUs; the contender map only when its schedule says
    /// so (the totals then carry the last reading of it).
    #[must_use]
    pub fn read(&self) -> SchedTotals {
        let now = monotonic_ns();
        let mut out = SchedTotals::default();
        for (tid, raw) in self.threads.entries() {
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
        for (key, ns) in self.cpu_time.entries() {
            out.cpu_time.entry(key.tid).or_default().insert(key.cpu, ns);
        }
        (out.contenders, out.contender_span) = self.read_contenders(now);
        out.dropped = self.drops.get(&0, 0).map_or(0, |per_cpu| {
            per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        });
        out.watched_events = self.watched_events();
        out
    }

    /// The contender map's running totals and each VM's lists: read now if the schedule says so,
    /// else as last read.
    fn read_contenders(&self, now: u64) -> (Arc<RunningContenders>, Arc<ContenderSpan>) {
        let mut readings = self
            .contender_readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if readings.schedule.next_reading() {
            let mut running = RunningContenders::with_capacity(readings.running.len());
            for map in &self.contenders {
                for (key, stat) in map.entries() {
                    let contender = Contender::decode(key.contender);
                    let slot = running.entry((key.tgid, contender)).or_default();
                    slot.waits = slot.waits.wrapping_add(stat.waits);
                    slot.wait_ns = slot.wait_ns.wrapping_add(stat.wait_ns);
                }
            }
            readings.record(running, now);
        }
        (
            Arc::clone(&readings.running),
            Arc::clone(&readings.span),
        )
    }

    /// Events each source handled for a watched thread, summed over the CPUs, by source name
    /// (for benchmarks: see `monitor_common::sched::SCHED_WATCHED_EVENTS_MAP`).
    #[must_use]
    pub fn watched_events(&self) -> BTreeMap<&'static str, u64> {
        SOURCES
            .iter()
            .map(|&(name, slot)| {
                let n = self
                    .watched_events
                    .get(&(slot as u32), 0)
                    .map_or(0, |per_cpu| {
                        per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                    });
                (name, n)
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
