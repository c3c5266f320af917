//! The exit maps of the kernel programs, read into running totals: counts per (VMM, thread,
//! source, reason), handling-latency histograms, and detail counters.
//!
//! The kernel keeps running totals; this module sums the CPUs, decodes raw keys into domain
//! values at the boundary, and removes the keys of processes that no longer exist.

use std::collections::{BTreeSet, HashMap};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use monitor_common::{
    exits::{
        EXITS_COUNTS_MAP, EXITS_DROPS_MAP, ExitKey, VCPU_ID_UNKNOWN,
        details::{DetailKey, EXITS_DETAILS_MAP, EXITS_DETAILS_OVERFLOW_MAP},
        latency::{EXITS_LATENCY_MAP, EXITS_PENDING_MAP, EXITS_PENDING_USERSPACE_MAP, PendingExit},
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
}

/// The exit maps of the running kernel programs.
pub struct ExitCounters {
    counts: Batched<PerCpuHashMap<MapData, ExitKey, u64>>,
    drops: PerCpuArray<MapData, u64>,
    latency: Batched<BpfHashMap<MapData, ExitKey, LatencyHist>>,
    pending: [Batched<BpfHashMap<MapData, u32, PendingExit>>; 2],
    details: [Batched<PerCpuHashMap<MapData, DetailKey, u64>>; 2],
}

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
        })
    }

    /// Reads every counter, summed over the CPUs. Entries that vanish while we iterate (a
    /// concurrent removal) are skipped.
    pub fn read(&self) -> ExitTotals {
        let mut totals = ExitTotals::default();
        for (raw, per_cpu) in self.counts.entries() {
            if let Some(key) = decode_key(&raw) {
                *totals.counts.entry(key).or_default() += sum(per_cpu.iter());
            }
        }
        for (raw, hist) in self.latency.entries() {
            let Some(key) = decode_key(&raw) else {
                continue;
            };
            if key.reason.source() == ExitSource::Halt {
                totals.counts.insert(key, hist.count);
            }
            totals.latency.insert(key, Histogram::from(&hist));
        }
        for map in &self.details {
            for (raw, per_cpu) in map.entries() {
                if let Some(key) = DetailCounterKey::decode(&raw) {
                    *totals.details.entry(key).or_default() += sum(per_cpu.iter());
                }
            }
        }
        totals.dropped = self
            .drops
            .get(&0, 0)
            .map_or(0, |per_cpu| sum(per_cpu.iter()));
        totals
    }

    /// Removes every counter of processes for which `keep(pid)` is false (exited VMs), so the
    /// maps hold live state only and a reused pid starts from zero.
    /// Returns the processes whose exit counts it removed.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) -> BTreeSet<u32> {
        // Keys already gone are skipped, here and below.
        let stale: Vec<ExitKey> = self
            .counts
            .all_keys()
            .into_iter()
            .filter(|k| !keep(k.tgid))
            .collect();
        self.counts.remove_keys(&stale);
        let removed = stale.iter().map(|k| k.tgid).collect();
        let stale: Vec<ExitKey> = self
            .latency
            .all_keys()
            .into_iter()
            .filter(|k| !keep(k.tgid))
            .collect();
        self.latency.remove_keys(&stale);
        for map in &mut self.pending {
            let stale: Vec<u32> = map
                .entries()
                .into_iter()
                .filter(|(_, p)| !keep(p.key.tgid))
                .map(|(tid, _)| tid)
                .collect();
            map.remove_keys(&stale);
        }
        for map in &mut self.details {
            let stale: Vec<DetailKey> = map
                .all_keys()
                .into_iter()
                .filter(|k| !keep(k.tgid))
                .collect();
            map.remove_keys(&stale);
        }
        removed
    }
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
