//! The watched-VMM bitmap that the host-wide programs (NUMA faults, TLB flushes, block requests,
//! process lifecycle) test first, kept in step with discovery, and what the lifecycle programs
//! keep for discovery: the VMMs' change counters and the ring of processes that exec'd.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aya::maps::{Array, MapData, RingBuf};
use monitor_common::vmms::{
    PROCESS_EXECS_LOST_MAP, PROCESS_EXECS_MAP, VMM_CHANGE_SLOTS, VMM_CHANGES_MAP, VMM_WATCH_MAP,
    VMM_WATCH_WORDS, change_slot, watch_slot,
};

use crate::{
    bpf::{Kernel, mapped::MappedArray},
    discovery::Vmm,
};

/// The bitmap, and the processes currently set in it.
pub struct VmmWatch {
    bitmap: Array<MapData, u64>,
    watched: BTreeSet<u32>,
}

impl VmmWatch {
    pub fn start(kernel: &mut Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            bitmap: kernel.take_map(VMM_WATCH_MAP)?,
            watched: BTreeSet::new(),
        })
    }

    /// The processes watched now.
    #[must_use]
    pub fn watched(&self) -> &BTreeSet<u32> {
        &self.watched
    }

    /// Watches exactly the processes of `vmms`; returns what could not be done.
    pub fn follow(&mut self, vmms: &[Vmm]) -> Vec<String> {
        self.sync(vmms.iter().map(|v| v.id.pid))
            .into_iter()
            .map(|pid| format!("cannot watch VMM process {pid} for NUMA, TLB and block figures"))
            .collect()
    }

    /// Watches exactly `pids`: sets the new ones, clears the gone ones. Only the words that change
    /// are written. Returns the pids that could not be set (beyond the bitmap, or the write
    /// failed), for the log. A word that could not be written keeps its old bits, and so do the
    /// watched pids recorded for it, so the next call writes it again.
    pub fn sync(&mut self, pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let wanted: BTreeSet<u32> = pids.into_iter().collect();
        if wanted == self.watched {
            return Vec::new();
        }
        let mut words: BTreeMap<u32, u64> = BTreeMap::new();
        for &pid in self.watched.symmetric_difference(&wanted) {
            words.entry(watch_slot(pid).0).or_insert(0);
        }
        for &pid in &wanted {
            let (word, bit) = watch_slot(pid);
            if let Some(bits) = words.get_mut(&word) {
                *bits |= bit;
            }
        }
        let mut failed_words = BTreeSet::new();
        for (word, bits) in words {
            if word >= VMM_WATCH_WORDS || self.bitmap.set(word, bits, 0).is_err() {
                failed_words.insert(word);
            }
        }
        let watched = written(&self.watched, &wanted, &failed_words);
        let failed = wanted.difference(&watched).copied().collect();
        self.watched = watched;
        failed
    }

    /// Adds one process (tests use it for synthetic pids).
    pub fn insert(&mut self, pid: u32) -> Vec<u32> {
        let mut pids = self.watched.clone();
        pids.insert(pid);
        self.sync(pids)
    }
}

/// What the bitmap holds after a sync from `old` to `wanted` in which the words `failed` could not
/// be written: `wanted`, except that those words still hold `old`'s pids.
fn written(old: &BTreeSet<u32>, wanted: &BTreeSet<u32>, failed: &BTreeSet<u32>) -> BTreeSet<u32> {
    let in_failed = |pid: &u32| failed.contains(&watch_slot(*pid).0);
    wanted
        .iter()
        .copied()
        .filter(|pid| !in_failed(pid))
        .chain(old.iter().copied().filter(in_failed))
        .collect()
}

/// The change counters the process lifecycle programs add to (`VMM_CHANGES`), read for
/// discovery: which VMMs created or ended a thread, ended or exec'd since the last scan. They
/// are mapped into the agent: reading them is a load per VMM, no system call.
pub struct VmmChanges {
    counters: Result<MappedArray, String>,
    /// `Ok` while every lifecycle source is attached, else why discovery cannot rely on them.
    live: Result<(), String>,
    execs: Result<ExecRing, String>,
}

/// The ring of processes that exec'd (`PROCESS_EXECS`) and the count of those it had no room
/// for; both are read through memory mappings.
struct ExecRing {
    ring: RingBuf<MapData>,
    lost: MappedArray,
    /// The lost count as last read.
    lost_seen: u64,
}

impl VmmChanges {
    /// Takes the counters, not relied on until [`Self::set_live`] says the programs run.
    pub fn start(kernel: &mut Kernel) -> anyhow::Result<Self> {
        let counters = MappedArray::new(kernel.take_map(VMM_CHANGES_MAP)?, VMM_CHANGE_SLOTS)
            .map_err(|e| format!("the change counters ({VMM_CHANGES_MAP}) cannot be mapped: {e}"));
        let execs = kernel
            .take_map::<RingBuf<MapData>>(PROCESS_EXECS_MAP)
            .map_err(|e| format!("{e:#}"))
            .and_then(|ring| {
                let lost = kernel
                    .take_map(PROCESS_EXECS_LOST_MAP)
                    .map_err(|e| format!("{e:#}"))?;
                let lost = MappedArray::new(lost, 1)
                    .map_err(|e| format!("{PROCESS_EXECS_LOST_MAP} cannot be mapped: {e}"))?;
                let lost_seen = lost.get(0).unwrap_or(0);
                Ok(ExecRing {
                    ring,
                    lost,
                    lost_seen,
                })
            });
        if let Err(why) = &execs {
            log::info!("discovery lists /proc on every scan: the exec ring: {why}");
        }
        Ok(Self {
            counters,
            live: Err("the lifecycle sources are not attached yet".to_owned()),
            execs,
        })
    }

    /// Whether the programs that count are attached (see
    /// [`crate::family::Family::DISCOVERY_SOURCES`]), or why not.
    pub fn set_live(&mut self, live: Result<(), String>) {
        self.live = match &self.counters {
            Ok(_) => live,
            Err(why) => Err(why.clone()),
        };
    }

    /// Whether discovery can follow changes, or why not.
    pub fn live(&self) -> &Result<(), String> {
        &self.live
    }

    /// The processes that exec'd since the last call, or `None` when some may be missing: the
    /// programs are not attached, the ring cannot be read, or it overflowed since the last
    /// call. Discovery then lists `/proc`.
    pub fn execs(&mut self) -> Option<Vec<u32>> {
        self.live.as_ref().ok()?;
        let execs = self.execs.as_mut().ok()?;
        let mut pids = Vec::new();
        while let Some(record) = execs.ring.next() {
            if let Some(tgid) = record.first_chunk::<4>() {
                pids.push(u32::from_ne_bytes(*tgid));
            }
        }
        // Read after the drain: an exec lost from now on is counted for the next call.
        let lost = execs.lost.get(0)?;
        let complete = lost == execs.lost_seen;
        execs.lost_seen = lost;
        complete.then_some(pids)
    }

    /// The counter of each of `pids` (by pid), or `None` when the counters do not count (a
    /// lifecycle source is unavailable) or cannot be read, when discovery reads every VMM.
    pub fn read(&mut self, pids: impl IntoIterator<Item = u32>) -> Option<HashMap<u32, u64>> {
        self.live.as_ref().ok()?;
        let counters = self.counters.as_ref().ok()?;
        let pids = pids.into_iter();
        // Sized up front: collected through `Option`, the map grew from nothing, a rehash and
        // an allocation at every doubling, every window.
        let mut changes = HashMap::with_capacity(pids.size_hint().0);
        for pid in pids {
            changes.insert(pid, counters.get(change_slot(pid) as usize)?);
        }
        Some(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_that_could_not_be_written_keeps_its_old_pids() {
        // Word 0 holds pids 0–63, word 1 pids 64–127.
        let old: BTreeSet<u32> = [3, 70].into();
        let wanted: BTreeSet<u32> = [5, 70, 130].into();
        assert_eq!(written(&old, &wanted, &BTreeSet::new()), wanted);
        // Word 0 failed: 3 is still set there and 5 is not, so the next sync differs and retries.
        let after = written(&old, &wanted, &[0].into());
        assert_eq!(after, [3, 70, 130].into());
        assert_ne!(after, wanted);
    }
}
