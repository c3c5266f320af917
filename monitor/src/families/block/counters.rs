//! The block maps of the kernel programs, read into running totals per (VMM, device,
//! operation), the requests in flight, and each VM's drives mapped to host devices.
//!
//! The kernel keeps running totals; this module decodes raw keys into domain values at the
//! boundary, counts the requests in flight, ages out requests whose completion was never
//! recognised (counting them as expired, see [`super::expiry`]), and removes the totals of
//! processes that no longer exist.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use monitor_common::{
    block::{
        self as raw, BLOCK_DROPS_MAP, BLOCK_PENDING_MAP, BLOCK_STATS_MAP, BlockKey, BlockStats,
        PendingRequest, RequestKey,
    },
    histogram::LatencyHist,
};
use serde::Serialize;

use super::{devices, expiry, sources::Submission};
use crate::{
    bpf::{Kernel, batch::Batched},
    discovery::{Vmm, VmmId},
    host::block::{DevId, SysBlock},
    host::clock::monotonic_ns,
    model::Histogram,
};

/// How often requests are aged between samples (on discovery's rescans), so missed
/// completions do not pile up in the kernel map over a long window. Longer than the usual 1 s
/// window: every sample ages them already, and each aging walks the whole preallocated map
/// (32,768 buckets), which at 1 s the rescan just after a sample did a second time each window.
const AGE_BETWEEN_SAMPLES: Duration = Duration::from_secs(2);

/// The operation of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockOp {
    Read,
    Write,
    Flush,
    /// Discard and secure erase.
    Discard,
    /// Write-zeroes, zone management and newer operations.
    Other,
}

impl BlockOp {
    #[must_use]
    pub fn decode(raw: u32) -> Option<Self> {
        use raw::BlockOp as Raw;
        Some(match raw {
            r if r == Raw::Read as u32 => Self::Read,
            r if r == Raw::Write as u32 => Self::Write,
            r if r == Raw::Flush as u32 => Self::Flush,
            r if r == Raw::Discard as u32 => Self::Discard,
            r if r == Raw::Other as u32 => Self::Other,
            _ => return None,
        })
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Flush => "flush",
            Self::Discard => "discard",
            Self::Other => "other",
        }
    }
}

/// One (VMM, device, operation) counter, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockCounterKey {
    pub pid: u32,
    pub dev: DevId,
    pub op: BlockOp,
}

/// Completed requests of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpTotals {
    pub bytes: u64,
    /// Requests completed without being issued themselves (see `BlockStats::unissued`).
    pub unissued: u64,
    /// Issue → completion; its count is the number of completed requests.
    pub latency: Histogram,
    /// Submission → issue.
    pub queue: Histogram,
}

impl OpTotals {
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.latency.count
    }

}

crate::running_totals!(OpTotals {
    bytes,
    unissued,
    latency,
    queue
});

impl From<&BlockStats> for OpTotals {
    fn from(raw: &BlockStats) -> Self {
        Self {
            bytes: raw.bytes,
            unissued: raw.unissued,
            latency: histogram(&raw.latency),
            queue: histogram(&raw.queue),
        }
    }
}

/// A histogram the kernel shares between CPUs, as a domain value. Completions on other CPUs add
/// to it while the map value is copied out, `count` first and the buckets after, so the copy can
/// hold more in its buckets than in `count`. `count` is raised to the buckets' sum so that the
/// reading is consistent: the request figures come from `count`, and an exported histogram whose
/// buckets hold more than its count is malformed. Both only grow, so the raised count still
/// never goes backwards between readings.
fn histogram(raw: &LatencyHist) -> Histogram {
    let mut histogram = Histogram::from(raw);
    let in_buckets = histogram.buckets.iter().copied().fold(0, u64::wrapping_add);
    histogram.count = histogram.count.max(in_buckets);
    histogram
}

/// A guest drive and the host devices its requests reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveDevices {
    pub id: Option<String>,
    pub interface: String,
    pub file: Option<String>,
    pub cache: &'static str,
    pub aio: String,
    /// The whole disks whose block requests carry this drive's I/O, or why they are not known.
    pub devices: Result<BTreeSet<DevId>, String>,
}

/// Running totals since the programs were attached, and the state around them.
#[derive(Clone, Debug, Default)]
pub struct BlockTotals {
    pub stats: HashMap<BlockCounterKey, OpTotals>,
    /// Requests in flight at the reading, per (VMM, device).
    pub in_flight: HashMap<(u32, DevId), u64>,
    /// Requests removed unfinished because they were pending longer than
    /// [`expiry::EXPIRE_AFTER`], per (VMM, device): running totals of the processes kept.
    pub expired: HashMap<(u32, DevId), u64>,
    /// All requests expired since the programs were attached, of every process.
    pub expired_total: u64,
    /// Requests not tracked because a kernel map was full.
    pub dropped: u64,
    pub submission: Submission,
    /// Each VMM's drives, by pid.
    pub drives: HashMap<u32, Vec<DriveDevices>>,
    /// Kernel names of the devices above (`vda`, `nvme0n1`).
    pub names: HashMap<DevId, String>,
}

/// The block maps of the running kernel programs.
pub struct BlockCounters {
    pending: Batched<BpfHashMap<MapData, RequestKey, PendingRequest>>,
    stats: Batched<BpfHashMap<MapData, BlockKey, BlockStats>>,
    drops: PerCpuArray<MapData, u64>,
    submission: Submission,
    proc_root: PathBuf,
    sys: SysBlock,
    /// Drives per VMM process: its command line does not change while it lives.
    drives: HashMap<VmmId, Vec<DriveDevices>>,
    names: HashMap<DevId, Option<String>>,
    expired: HashMap<(u32, DevId), u64>,
    expired_total: u64,
    aged_at: Instant,
}

impl BlockCounters {
    /// Takes the maps. Drives are mapped to host devices through `proc_root` and `sys_root`.
    pub fn open(
        kernel: &mut Kernel,
        submission: Submission,
        proc_root: &Path,
        sys_root: &Path,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pending: kernel.take_map(BLOCK_PENDING_MAP)?,
            stats: kernel.take_map(BLOCK_STATS_MAP)?,
            drops: kernel.take_map(BLOCK_DROPS_MAP)?,
            submission,
            proc_root: proc_root.to_owned(),
            sys: SysBlock::new(sys_root),
            drives: HashMap::new(),
            names: HashMap::new(),
            expired: HashMap::new(),
            expired_total: 0,
            aged_at: Instant::now(),
        })
    }

    /// Reads every counter and the requests in flight, and maps the drives of `vmms`.
    pub fn read(&mut self, vmms: &[Vmm]) -> BlockTotals {
        self.read_retaining(|_| true, vmms)
    }

    /// [`Self::read`], after removing the totals and the requests in flight of processes for
    /// which `keep(pid)` is false (exited VMs, and pids now another process's), found in the same
    /// one read of each map. A request of theirs that completes later is then counted for no
    /// one: left pending, it would count as in flight for up to [`expiry::EXPIRE_AFTER`], then
    /// as expired, and its completion for whichever process has the pid by then.
    pub fn read_retaining(&mut self, keep: impl Fn(u32) -> bool, vmms: &[Vmm]) -> BlockTotals {
        let mut stats = HashMap::new();
        let mut stale = Vec::new();
        for (raw, value) in self.stats.entries() {
            if !keep(raw.tgid) {
                stale.push(raw);
                continue;
            }
            let Some(op) = BlockOp::decode(raw.op) else {
                continue;
            };
            let key = BlockCounterKey {
                pid: raw.tgid,
                dev: DevId::from_kernel(raw.dev),
                op,
            };
            stats.insert(key, OpTotals::from(&value));
        }
        self.stats.remove_keys(&stale);
        self.expired.retain(|(pid, _), _| keep(*pid));
        let in_flight = self.in_flight(&keep);
        self.drives.retain(|id, _| vmms.iter().any(|v| v.id == *id));
        let mut drives = HashMap::new();
        for vmm in vmms {
            let mapped = self.drives.entry(vmm.id).or_default();
            // Mapped once per process; a drive that could not be resolved (its file was not
            // there yet, say) is tried again.
            if mapped.is_empty() || mapped.iter().any(|d| d.devices.is_err()) {
                *mapped = devices::map_drives(&self.proc_root, &self.sys, vmm);
            }
            drives.insert(vmm.id.pid, mapped.clone());
        }
        let devices: BTreeSet<DevId> = stats
            .keys()
            .map(|k: &BlockCounterKey| k.dev)
            .chain(in_flight.keys().map(|(_, dev)| *dev))
            .chain(self.expired.keys().map(|(_, dev)| *dev))
            .chain(
                drives
                    .values()
                    .flatten()
                    .filter_map(|d: &DriveDevices| d.devices.as_ref().ok())
                    .flatten()
                    .copied(),
            )
            .collect();
        let names = devices
            .into_iter()
            .filter_map(|dev| {
                let name = self
                    .names
                    .entry(dev)
                    .or_insert_with(|| self.sys.name(dev))
                    .clone()?;
                Some((dev, name))
            })
            .collect();
        BlockTotals {
            stats,
            in_flight,
            expired: self.expired.clone(),
            expired_total: self.expired_total,
            dropped: self.drops.get(&0, 0).map_or(0, |per_cpu| {
                per_cpu.iter().copied().fold(0, u64::wrapping_add)
            }),
            submission: self.submission,
            drives,
            names,
        }
    }

    /// Counts the pending requests per (VMM, device), after removing those pending for too
    /// long and those of processes `keep` refuses.
    fn in_flight(&mut self, keep: &impl Fn(u32) -> bool) -> HashMap<(u32, DevId), u64> {
        let mut in_flight: HashMap<(u32, DevId), u64> = HashMap::new();
        let live = self.age(keep);
        let now = monotonic_ns();
        for entry in live {
            // What a request the device no longer has would need to be traced back (how old,
            // issued or not, its address): `RUST_LOG=kvmtop::families::block=debug`.
            log::debug!(
                "in flight: pid {} device {:?} op {} {} bytes, key {:#x}, submitted {} µs ago, {}",
                entry.1.tgid,
                DevId::from_kernel(entry.1.dev),
                entry.1.op,
                entry.1.bytes,
                entry.0.id,
                now.saturating_sub(entry.1.submit_ns) / 1_000,
                match entry.1.issue_ns {
                    0 => "never issued".to_owned(),
                    at => format!("issued {} µs ago", now.saturating_sub(at) / 1_000),
                }
            );
            *in_flight.entry(owner(&entry)).or_default() += 1;
        }
        in_flight
    }

    /// Ages the pending requests between samples, at most every [`AGE_BETWEEN_SAMPLES`]: a
    /// long window (`kvmtop snapshot --duration 600`) must not let missed completions fill the
    /// map. Each map operation briefly keeps classic tracepoint programs from running on that
    /// CPU, so this is not done on every rescan.
    pub fn age_if_due(&mut self) {
        if self.aged_at.elapsed() >= AGE_BETWEEN_SAMPLES {
            self.age(&|_| true);
        }
    }

    /// Removes from the kernel map the requests of processes `keep` refuses (counted for no
    /// one) and those pending longer than [`expiry::EXPIRE_AFTER`] (each counted as expired for
    /// its VMM and device); returns the others.
    fn age(&mut self, keep: &impl Fn(u32) -> bool) -> Vec<(RequestKey, PendingRequest)> {
        self.aged_at = Instant::now();
        let (mut entries, mut orphaned, mut completed) = (Vec::new(), Vec::new(), Vec::new());
        for entry in self.pending.entries() {
            if entry.1.is_completed() {
                completed.push(entry);
            } else if keep(entry.1.tgid) {
                entries.push(entry);
            } else {
                orphaned.push(entry.0);
            }
        }
        // Completed meanwhile is fine.
        self.pending.remove_keys(&orphaned);
        let now = monotonic_ns();
        // Requests counted at their completion, whose entry the kernel refused to remove: in
        // flight for no one, and removed once as old as an expired request, when a new request
        // taking the key between this read and the removal is as unlikely as below.
        let stale: Vec<RequestKey> = expiry::age(completed, now, |(_, done)| done.submit_ns)
            .expired
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        self.pending.remove_keys(&stale);
        let aged = expiry::age(entries, now, |(_, pending)| pending.submit_ns);
        for entry in aged.expired {
            // A request that completed since the map was read was counted as completed: only
            // the ones removed here are lost. (A completion that has read its entry but not yet
            // deleted it when this removes it counts twice; it would have to arrive in the same
            // microsecond as its request turns EXPIRE_AFTER old.) Expired requests are rare, so
            // they are removed one by one, each removal telling whether it was still there.
            if self.pending.remove(&entry.0).is_ok() {
                *self.expired.entry(owner(&entry)).or_default() += 1;
                self.expired_total += 1;
            }
        }
        aged.live
    }

}

/// The (VMM, device) a pending request is counted for: the device is in the entry, as the key
/// names none where requests are known by their address.
fn owner((_, pending): &(RequestKey, PendingRequest)) -> (u32, DevId) {
    (pending.tgid, DevId::from_kernel(pending.dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_copied_before_its_buckets_caught_up_is_raised_to_their_sum() {
        let mut raw = LatencyHist::ZERO;
        raw.count = 3;
        raw.buckets[10] = 2;
        raw.buckets[12] = 2;
        assert_eq!(histogram(&raw).count, 4);
        raw.count = 5;
        assert_eq!(
            histogram(&raw).count,
            5,
            "a count ahead of its buckets is kept"
        );
    }
}
