//! The TLB maps of the kernel programs, read into running totals: per VMM thread and event
//! (shootdowns sent and received, by reason, per CPU), and every CPU's flushes host-wide.
//!
//! The kernel keeps running totals; this module sums or keeps the CPUs apart as each figure
//! needs, decodes raw keys into domain values at the boundary, and removes the keys of processes
//! and threads that no longer exist.

use foldhash::{HashMap, HashMapExt};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use monitor_common::tlb::{
    self as raw, TLB_DROPS_MAP, TLB_HOST_MAP, TLB_REASON_SLOTS, TLB_VMM_MAP, TlbCount, TlbKey,
    TlbSource,
};
use serde::Serialize;

use crate::{
    bpf::{Kernel, batch::Batched},
    discovery::Vmm,
    families::small_map::inserted,
    host::proc::{status_list, thread_exited},
};

/// Why a CPU flushed (part of) its TLB: the kernel's `enum tlb_flush_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlbReason {
    /// Switching to a task of another mm.
    TaskSwitch,
    /// Told to by another CPU (the receiving side of a shootdown).
    RemoteShootdown,
    /// Ranged flush of the CPU's own mappings.
    LocalShootdown,
    /// Whole-mm flush of the CPU's own mappings.
    LocalMmShootdown,
    /// Sending shootdown IPIs to the other CPUs using the mm (the sending side).
    RemoteSendIpi,
    /// A shootdown that arrived after the CPU had switched to another mm.
    RemoteWrongCpu,
    /// A reason this version does not know.
    Other(u32),
}

impl TlbReason {
    #[must_use]
    pub fn decode(raw: u32) -> Self {
        match raw {
            raw::TLB_FLUSH_ON_TASK_SWITCH => Self::TaskSwitch,
            raw::TLB_REMOTE_SHOOTDOWN => Self::RemoteShootdown,
            raw::TLB_LOCAL_SHOOTDOWN => Self::LocalShootdown,
            raw::TLB_LOCAL_MM_SHOOTDOWN => Self::LocalMmShootdown,
            raw::TLB_REMOTE_SEND_IPI => Self::RemoteSendIpi,
            raw::TLB_REMOTE_WRONG_CPU => Self::RemoteWrongCpu,
            other => Self::Other(other),
        }
    }

    /// The record's value.
    #[must_use]
    pub fn code(self) -> u32 {
        match self {
            Self::TaskSwitch => raw::TLB_FLUSH_ON_TASK_SWITCH,
            Self::RemoteShootdown => raw::TLB_REMOTE_SHOOTDOWN,
            Self::LocalShootdown => raw::TLB_LOCAL_SHOOTDOWN,
            Self::LocalMmShootdown => raw::TLB_LOCAL_MM_SHOOTDOWN,
            Self::RemoteSendIpi => raw::TLB_REMOTE_SEND_IPI,
            Self::RemoteWrongCpu => raw::TLB_REMOTE_WRONG_CPU,
            Self::Other(code) => code,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskSwitch => "task_switch",
            Self::RemoteShootdown => "remote_shootdown",
            Self::LocalShootdown => "local_shootdown",
            Self::LocalMmShootdown => "local_mm_shootdown",
            Self::RemoteSendIpi => "remote_send_ipi",
            Self::RemoteWrongCpu => "remote_wrong_cpu",
            Self::Other(_) => "other",
        }
    }
}

/// What a per-VMM counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlbEvent {
    /// `tlb:tlb_flush` in one of the VMM's threads.
    Flush(TlbReason),
    /// `kvm:kvm_pv_tlb_flush`: KVM saw a vCPU's steal-time record; `flushed` when the guest had
    /// asked for its TLB to be flushed instead of sending IPIs to a preempted vCPU.
    PvFlush { flushed: bool },
}

/// One per-VMM counter, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlbCounterKey {
    pub pid: u32,
    pub tid: u32,
    pub event: TlbEvent,
}

/// Flushes and what they covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flushes {
    pub events: u64,
    /// Pages of the ranged flushes.
    pub pages: u64,
    /// Flushes of a whole address space.
    pub full: u64,
}

crate::running_totals!(Flushes {
    events,
    pages,
    full
});

impl From<&TlbCount> for Flushes {
    fn from(raw: &TlbCount) -> Self {
        Self {
            events: raw.events,
            pages: raw.pages,
            full: raw.full,
        }
    }
}

/// Running totals since the programs were attached.
#[derive(Clone, Debug, Default)]
pub struct TlbTotals {
    /// Per VMM thread and event: CPU → flushes on that CPU (CPUs without any left out).
    pub vmm: HashMap<TlbCounterKey, BTreeMap<u32, Flushes>>,
    /// Every task on the host: CPU → reason → flushes.
    pub host: BTreeMap<u32, BTreeMap<TlbReason, Flushes>>,
    /// Flushes of VMMs not counted because the kernel map was full.
    pub dropped: u64,
    /// The CPUs each VMM's vCPU threads may run on (their affinity), by pid, read with the
    /// totals so "shootdowns received on the VM's CPUs" can be computed from `host`.
    pub vcpu_cpus: HashMap<u32, BTreeSet<u32>>,
}

/// The TLB maps of the running kernel programs.
pub struct TlbCounters {
    vmm: Batched<PerCpuHashMap<MapData, TlbKey, TlbCount>>,
    host: PerCpuArray<MapData, TlbCount>,
    drops: PerCpuArray<MapData, u64>,
    /// Where the threads of the counted processes are looked up, to forget exited ones.
    proc_root: PathBuf,
}

impl TlbCounters {
    /// Takes the maps. The counted threads are looked up under `proc_root` to forget the
    /// exited ones.
    pub fn open(kernel: &mut Kernel, proc_root: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            vmm: kernel.take_map(TLB_VMM_MAP)?,
            host: kernel.take_map(TLB_HOST_MAP)?,
            drops: kernel.take_map(TLB_DROPS_MAP)?,
            proc_root: proc_root.to_owned(),
        })
    }

    /// Reads every counter, removing nothing.
    #[must_use]
    pub fn read(&self) -> TlbTotals {
        self.gather(|_| false).0
    }

    /// Reads the counters and removes those of processes for which `keep(pid)` is false
    /// (exited VMs) and of threads that have exited from the processes kept, in the same read
    /// of the map: a VMM starts and ends worker threads all its life, each with a new tid, and
    /// the map's keys are per thread. A thread `listed(pid, tid)` (discovery has just seen it)
    /// is alive; any other is looked up once.
    pub fn read_retaining(
        &mut self,
        keep: impl Fn(u32) -> bool,
        listed: impl Fn(u32, u32) -> bool,
    ) -> TlbTotals {
        let mut exited: HashMap<(u32, u32), bool> = HashMap::new();
        let proc_root = &self.proc_root;
        let (totals, stale) = self.gather(|k: &TlbKey| {
            !keep(k.tgid)
                || (!listed(k.tgid, k.tid)
                    && *exited
                        .entry((k.tgid, k.tid))
                        .or_insert_with(|| thread_exited(proc_root, k.tgid, k.tid)))
        });
        // Already gone is fine.
        self.vmm.remove_keys(&stale);
        totals
    }

    /// The totals without the keys `stale` picks, and those keys. Entries that vanish while we
    /// iterate are skipped.
    fn gather(&self, mut stale: impl FnMut(&TlbKey) -> bool) -> (TlbTotals, Vec<TlbKey>) {
        let mut totals = TlbTotals::default();
        let mut stale_keys = Vec::new();
        for (raw, per_cpu) in self.vmm.entries() {
            if stale(&raw) {
                stale_keys.push(raw);
            } else if let Some(key) = decode_key(&raw) {
                totals.vmm.insert(key, by_cpu(&per_cpu));
            }
        }
        for slot in 0..TLB_REASON_SLOTS {
            let Ok(per_cpu) = self.host.get(&slot, 0) else {
                continue;
            };
            // The last slot gathers unknown reasons; it keeps its own code.
            let reason = TlbReason::decode(slot);
            for (cpu, flushes) in by_cpu(&per_cpu) {
                totals.host.entry(cpu).or_default().insert(reason, flushes);
            }
        }
        totals.dropped = self.drops.get(&0, 0).map_or(0, |per_cpu| {
            per_cpu.iter().copied().fold(0, u64::wrapping_add)
        });
        (totals, stale_keys)
    }
}

/// Raw key → domain key; unknown sources are dropped here, at the boundary.
fn decode_key(raw: &TlbKey) -> Option<TlbCounterKey> {
    let event = match raw.source {
        s if s == TlbSource::Flush as u32 => TlbEvent::Flush(TlbReason::decode(raw.reason)),
        s if s == TlbSource::PvFlush as u32 => TlbEvent::PvFlush {
            flushed: raw.reason != 0,
        },
        _ => return None,
    };
    Some(TlbCounterKey {
        pid: raw.tgid,
        tid: raw.tid,
        event,
    })
}

/// The CPUs of a per-CPU value that counted anything. The index is the CPU id: aya returns one
/// value per possible CPU, in order.
fn by_cpu(per_cpu: &PerCpuValues<TlbCount>) -> BTreeMap<u32, Flushes> {
    inserted(
        per_cpu
            .iter()
            .enumerate()
            .filter(|(_, c)| c.events > 0)
            .filter_map(|(cpu, c)| Some((u32::try_from(cpu).ok()?, Flushes::from(c)))),
    )
}

/// The CPUs a thread may run on (its affinity), as last read, for each thread it was read for.
/// Affinity changes only when an operator pins a thread, so each thread is read again once every
/// [`AFFINITY_REFRESH_EVERY`] samples (spread over tids) rather than on every sample.
#[derive(Debug, Default)]
pub struct Affinities {
    /// (pid, tid) → (allowed CPUs, the sample it was read at).
    read: HashMap<(u32, u32), AffinityRead>,
    samples: u64,
}

/// A thread's allowed CPUs (`None` when unreadable) and the sample they were read at.
type AffinityRead = (Option<BTreeSet<u32>>, u64);

/// See [`Affinities`]. A thread's `status` (where the kernel prints its affinity) is one of
/// the larger procfs files to format: at every ten samples, 200 vCPU threads cost 20 reads a
/// second. After a vCPU is re-pinned, the shootdowns its VM's CPUs received are counted on its
/// old CPUs until the next read.
pub const AFFINITY_REFRESH_EVERY: u64 = 30;

impl Affinities {
    /// The CPUs the VMM's vCPU threads may run on: the union of their affinity masks. Empty
    /// when no vCPU thread is known yet or none could be read (the process is exiting).
    /// `vmms` are every VMM of this sample: threads of no VMM here are forgotten.
    pub fn vcpu_cpus(&mut self, proc_root: &Path, vmms: &[Vmm]) -> HashMap<u32, BTreeSet<u32>> {
        self.samples += 1;
        let samples = self.samples;
        let mut read = HashMap::new();
        let mut by_pid = HashMap::new();
        for vmm in vmms {
            let pid = vmm.id.pid;
            let mut cpus = BTreeSet::new();
            for tid in vmm.vcpus.iter().filter_map(|v| v.tid) {
                let due = |at: u64| {
                    at == samples
                        || (samples + u64::from(tid)).is_multiple_of(AFFINITY_REFRESH_EVERY)
                };
                let entry = match self.read.remove(&(pid, tid)) {
                    Some((allowed, at)) if !due(at) && allowed.is_some() => (allowed, at),
                    _ => (
                        status_list(proc_root, pid, Some(tid), "Cpus_allowed_list")
                            .map(|l| l.into_iter().collect()),
                        samples,
                    ),
                };
                cpus.extend(entry.0.iter().flatten().copied());
                read.insert((pid, tid), entry);
            }
            by_pid.insert(pid, cpus);
        }
        self.read = read;
        by_pid
    }
}
