//! The exit maps of the kernel programs, read into running totals: counts per (VMM, thread,
//! source, reason), handling-latency histograms, and detail counters.
//!
//! The kernel keeps running totals; this module sums the CPUs of the per-CPU maps, decodes raw keys into domain
//! values at the boundary, and removes the keys of processes that no longer exist.

use foldhash::HashMap;
use std::collections::BTreeSet;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use monitor_common::{
    exits::{
        EXITS_COUNTS_MAP, EXITS_DROPS_MAP, ExitKey, VCPU_ID_UNKNOWN,
        details::{DetailKey, EXITS_DETAILS_MAP, EXITS_DETAILS_OVERFLOW_MAP},
        latency::{EXITS_LATENCY_MAP, EXITS_PENDING_MAP, EXITS_PENDING_USERSPACE_MAP, PendingExit},
        run_fds::{EXITS_FD_ASKING_MAP, EXITS_FD_WANTED_MAP, EXITS_RUN_FDS_MAP, RunFd},
    },
    histogram::LatencyHist,
};

use super::{details::DetailCounterKey, reasons::ExitReason};
use crate::{
    bpf::{Kernel, batch::Batched},
    model::{ExitSource, Histogram},
};

/// One exit counter, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExitCounterKey {
    pub pid: u32,
    pub tid: u32,
    /// KVM's vCPU id, when the source records it (`kvm_exit` does, userspace exits do not).
    pub vcpu_id: Option<u32>,
    pub reason: ExitReason,
}

/// Running totals since the programs were attached.
#[derive(Clone, Debug, Default)]
pub struct ExitTotals {
    /// Exits per key. Halts are counted here too (their histograms' counts).
    pub counts: HashMap<ExitCounterKey, u64>,
    /// Handling latency per key (see [`ExitSource::latency_meaning`]).
    pub latency: HashMap<ExitCounterKey, Histogram>,
    pub details: HashMap<DetailCounterKey, u64>,
    /// Events not counted because a map was full.
    pub dropped: u64,
    /// Processes whose exits were counted while discovery did not know them as VMMs: a VMM
    /// that appeared since the last scan (or one that exited meanwhile).
    pub unknown_vmms: Vec<u32>,
    /// The file each thread of the processes asked about ran `KVM_RUN` on since the last
    /// sample (see [`ExitCounters::ask_about`]).
    pub run_fds: Vec<ThreadRunFd>,
}

/// A thread seen running `KVM_RUN` on file descriptor `fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadRunFd {
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
}

/// The exit maps of the running kernel programs.
pub struct ExitCounters {
    counts: Batched<BpfHashMap<MapData, ExitKey, u64>>,
    drops: PerCpuArray<MapData, u64>,
    latency: Batched<BpfHashMap<MapData, ExitKey, LatencyHist>>,
    pending: [Batched<BpfHashMap<MapData, u32, PendingExit>>; 2],
    details: [Batched<PerCpuHashMap<MapData, DetailKey, u64>>; 2],
    run_fds: Batched<BpfHashMap<MapData, u32, RunFd>>,
    fd_wanted: BpfHashMap<MapData, u32, u8>,
    fd_asking: Array<MapData, u32>,
    /// The processes the kernel programs are asked about, as written to `fd_wanted`.
    asked: BTreeSet<u32>,
    /// Whether any process was asked about at the last [`ExitCounters::take_run_fds`]: the
    /// programs write `run_fds` only while asked, so once a take after the asking stopped has
    /// emptied it, there is nothing to read.
    asked_at_last_take: bool,
    /// Reads since the pending-exit maps were last swept for exited processes.
    reads_since_pending_sweep: u32,
}

/// Every how many reads the pending-exit maps are swept even though no process left: an exit
/// opens its interval also when its counter was dropped (a full map), so a process can leave a
/// pending entry without a counter that would tell of its end.
const PENDING_SWEEP_EVERY: u32 = 30;

impl ExitCounters {
    /// Attaches the programs whose tracepoints this kernel has and takes the maps.
    /// Takes the maps.
    pub fn open(kernel: &mut Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            counts: kernel.take_map(EXITS_COUNTS_MAP)?,
            drops: kernel.take_map(EXITS_DROPS_MAP)?,
            latency: kernel.take_map(EXITS_LATENCY_MAP)?,
            pending: [
                kernel.take_map(EXITS_PENDING_MAP)?,
                kernel.take_map(EXITS_PENDING_USERSPACE_MAP)?,
            ],
            details: [
                kernel.take_map(EXITS_DETAILS_MAP)?,
                kernel.take_map(EXITS_DETAILS_OVERFLOW_MAP)?,
            ],
            run_fds: kernel.take_map(EXITS_RUN_FDS_MAP)?,
            fd_wanted: kernel.take_map(EXITS_FD_WANTED_MAP)?,
            fd_asking: kernel.take_map(EXITS_FD_ASKING_MAP)?,
            asked: BTreeSet::new(),
            asked_at_last_take: false,
            reads_since_pending_sweep: 0,
        })
    }

    /// Asks the kernel programs for the `KVM_RUN` file of every thread of `pids` (VMMs with a
    /// vCPU whose thread is unknown), and no longer for the processes asked about before and
    /// not now. Writes only what changed. Returns what could not be written.
    pub fn ask_about(&mut self, pids: &BTreeSet<u32>) -> Vec<String> {
        if *pids == self.asked {
            return Vec::new();
        }
        let mut problems = Vec::new();
        for &pid in self.asked.difference(pids) {
            // Gone already (only this writes the map) is as good as removed.
            let _ = self.fd_wanted.remove(&pid);
        }
        let mut asked: BTreeSet<u32> = self.asked.intersection(pids).copied().collect();
        for &pid in pids.difference(&self.asked) {
            match self.fd_wanted.insert(pid, 1, 0) {
                Ok(()) => {
                    asked.insert(pid);
                }
                Err(e) => problems.push(format!(
                    "asking the kernel which vCPU each thread of pid {pid} runs: {e}; its vCPUs \
                     are matched to threads by their names and system calls only"
                )),
            }
        }
        self.asked = asked;
        let asking = u32::try_from(self.asked.len()).unwrap_or(u32::MAX);
        if let Err(e) = self.fd_asking.set(0, asking, 0) {
            problems.push(format!(
                "asking the kernel which vCPU each thread runs: {e}"
            ));
        }
        problems
    }

    /// The `KVM_RUN` files seen since the last call, removed from the map as they are read.
    pub fn take_run_fds(&mut self) -> Vec<ThreadRunFd> {
        let asking = !self.asked.is_empty();
        if !asking && !self.asked_at_last_take {
            return Vec::new();
        }
        self.asked_at_last_take = asking;
        let entries = self.run_fds.entries();
        let tids: Vec<u32> = entries.iter().map(|(tid, _)| *tid).collect();
        self.run_fds.remove_keys(&tids);
        entries
            .into_iter()
            .map(|(tid, run)| ThreadRunFd {
                pid: run.tgid,
                tid,
                fd: run.fd,
            })
            .collect()
    }

    /// Reads every counter, summed over the CPUs, removing nothing.
    #[must_use]
    pub fn read(&self) -> ExitTotals {
        self.gather(|_| true).0
    }

    /// Reads every counter of the processes for which `keep(pid)` is true, summed over the
    /// CPUs, and removes every counter of the others (exited VMs), so the maps hold live state
    /// only and a reused pid starts from zero: one read of each map a window serves both.
    /// Also returns the processes whose exit counts it removed. Keys already gone when removed
    /// are skipped.
    pub fn read_retaining(&mut self, keep: impl Fn(u32) -> bool) -> (ExitTotals, BTreeSet<u32>) {
        let (totals, stale) = self.gather(&keep);
        self.counts.remove_keys(&stale.counts);
        self.latency.remove_keys(&stale.latency);
        for (map, stale) in self.details.iter_mut().zip(&stale.details) {
            map.remove_keys(stale);
        }
        // The pending-exit maps are preallocated at their full capacity, and a read walks every
        // bucket: they are swept when a process left (every process with an exit has a counter
        // until it leaves), and on a slow safety net.
        self.reads_since_pending_sweep += 1;
        let left = !stale.counts.is_empty() || !stale.latency.is_empty();
        if left || self.reads_since_pending_sweep >= PENDING_SWEEP_EVERY {
            self.reads_since_pending_sweep = 0;
            for map in &mut self.pending {
                let stale: Vec<u32> = map
                    .entries()
                    .into_iter()
                    .filter(|(_, p)| !keep(p.key.tgid))
                    .map(|(tid, _)| tid)
                    .collect();
                map.remove_keys(&stale);
            }
        }
        let removed = stale.counts.iter().map(|k| k.tgid).collect();
        (totals, removed)
    }

    /// The totals of the processes `keep` keeps, and the keys of the others. Entries that
    /// vanish while we iterate (a concurrent removal) are skipped.
    fn gather(&self, keep: impl Fn(u32) -> bool) -> (ExitTotals, StaleKeys) {
        let mut totals = ExitTotals::default();
        let mut stale = StaleKeys::default();
        for (raw, count) in self.counts.entries() {
            if !keep(raw.tgid) {
                stale.counts.push(raw);
            } else if let Some(key) = decode_key(&raw) {
                *totals.counts.entry(key).or_default() += count;
            }
        }
        for (raw, hist) in self.latency.entries() {
            if !keep(raw.tgid) {
                stale.latency.push(raw);
                continue;
            }
            let Some(key) = decode_key(&raw) else {
                continue;
            };
            if key.reason.source() == ExitSource::Halt {
                totals.counts.insert(key, hist.count);
            }
            totals.latency.insert(key, Histogram::from(&hist));
        }
        for (map, stale) in self.details.iter().zip(&mut stale.details) {
            for (raw, per_cpu) in map.entries() {
                if !keep(raw.tgid) {
                    stale.push(raw);
                } else if let Some(key) = DetailCounterKey::decode(&raw) {
                    *totals.details.entry(key).or_default() += sum(per_cpu.iter());
                }
            }
        }
        totals.dropped = self
            .drops
            .get(&0, 0)
            .map_or(0, |per_cpu| sum(per_cpu.iter()));
        (totals, stale)
    }
}

/// The keys of processes no longer kept, per map, found while reading.
#[derive(Default)]
struct StaleKeys {
    counts: Vec<ExitKey>,
    latency: Vec<ExitKey>,
    details: [Vec<DetailKey>; 2],
}

fn sum<'a>(per_cpu: impl Iterator<Item = &'a u64>) -> u64 {
    per_cpu.copied().fold(0, u64::wrapping_add)
}

/// Raw map key → domain key. Unknown source numbers are dropped here, at the boundary.
fn decode_key(raw: &ExitKey) -> Option<ExitCounterKey> {
    use monitor_common::exits::ExitSource as Raw;
    let source = match raw.source {
        s if s == Raw::KvmExit as u32 => ExitSource::KvmExit,
        s if s == Raw::Userspace as u32 => ExitSource::Userspace,
        s if s == Raw::Halt as u32 => ExitSource::Halt,
        _ => return None,
    };
    Some(ExitCounterKey {
        pid: raw.tgid,
        tid: raw.tid,
        vcpu_id: (raw.vcpu_id != VCPU_ID_UNKNOWN).then_some(raw.vcpu_id),
        reason: ExitReason::decode(source, raw.isa, raw.reason),
    })
}
