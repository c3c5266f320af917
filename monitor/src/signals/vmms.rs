//! The watched-VMM bitmap that the host-wide programs (TLB flushes, block requests) test first,
//! kept in step with discovery.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{Array, MapData};
use monitor_common::vmms::{VMM_WATCH_MAP, VMM_WATCH_WORDS, watch_slot};

use crate::bpf::Kernel;

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

    /// Watches exactly `pids`: sets the new ones, clears the gone ones. Only the words that change
    /// are written. Returns the pids that could not be set (beyond the bitmap), for the log.
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
        let mut failed = Vec::new();
        for (word, bits) in words {
            if word >= VMM_WATCH_WORDS || self.bitmap.set(word, bits, 0).is_err() {
                failed.extend(wanted.iter().filter(|p| watch_slot(**p).0 == word));
            }
        }
        self.watched = wanted;
        failed
    }

    /// Adds one process (tests use it for synthetic pids).
    pub fn insert(&mut self, pid: u32) -> Vec<u32> {
        let mut pids = self.watched.clone();
        pids.insert(pid);
        self.sync(pids)
    }
}
