//! Reading and pruning whole hash maps with the kernel's batch commands.
//!
//! aya 0.14 walks a map one key at a time: a `BPF_MAP_GET_NEXT_KEY` and a
//! `BPF_MAP_LOOKUP_ELEM` per entry, and a `BPF_MAP_DELETE_ELEM` per removed key, which at a
//! hundred VMs is thousands of syscalls a second. [`Batched`] wraps an aya hash map (hash, LRU
//! hash, and their per-CPU kinds) and reads it with `BPF_MAP_LOOKUP_BATCH`, usually in one call,
//! and removes keys with `BPF_MAP_DELETE_BATCH`, using the descriptor aya holds. Everything else
//! goes to the wrapped map, which it dereferences to.
//!
//! Kernels before 5.6 refuse batch commands (`EINVAL`, or `ENOTSUPP` for a map type without
//! them): the first refusal is logged at debug level and that map is read key by key from then
//! on, with the same results.
//!
//! Consistency: see [`buffer::read_all`]. In short, each key present for the whole read comes
//! once, keys added or removed meanwhile may or may not come, none twice. The key-by-key path
//! gives the same promise: the kernel's key walk restarts from the first key when the current
//! one is deleted under it, so its repeats are dropped here.

mod buffer;
mod sys;
#[cfg(test)]
mod tests;

use std::{
    collections::HashSet,
    hash::Hash,
    io,
    ops::{Deref, DerefMut},
    os::fd::AsFd as _,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError, PerCpuHashMap, PerCpuValues},
};

pub use buffer::{RawEntries, ValueLayout};
use sys::{BatchError, ENOTSUPP};

/// The aya map types the batch commands serve, and what is needed to decode them.
pub trait BatchMap {
    type Key: Pod + Eq + Hash;
    type Value;

    /// The map as aya holds it (its descriptor).
    fn data(&self) -> &MapData;

    /// How the kernel lays out one entry's value.
    fn layout() -> io::Result<ValueLayout>;

    /// Bytes of one entry's value in a batch read.
    fn value_size(layout: ValueLayout) -> usize;

    /// The `index`th entry of a batch read.
    fn decode(raw: &RawEntries, index: usize, layout: ValueLayout) -> (Self::Key, Self::Value);

    /// Every entry, key by key (aya's walk).
    fn each_entry(&self) -> impl Iterator<Item = (Self::Key, Self::Value)>;

    /// Every key, key by key (aya's walk).
    fn each_key(&self) -> impl Iterator<Item = Self::Key>;

    /// Removes one key.
    fn remove_one(&mut self, key: &Self::Key) -> Result<(), MapError>;
}

impl<K: Pod + Eq + Hash, V: Pod> BatchMap for HashMap<MapData, K, V> {
    type Key = K;
    type Value = V;

    fn data(&self) -> &MapData {
        aya::maps::IterableMap::map(self)
    }

    fn layout() -> io::Result<ValueLayout> {
        Ok(ValueLayout::Single)
    }

    fn value_size(layout: ValueLayout) -> usize {
        layout.entry_size::<V>()
    }

    fn decode(raw: &RawEntries, index: usize, _: ValueLayout) -> (K, V) {
        (raw.key(index), raw.value(index))
    }

    fn each_entry(&self) -> impl Iterator<Item = (K, V)> {
        self.iter().filter_map(Result::ok)
    }

    fn each_key(&self) -> impl Iterator<Item = K> {
        self.keys().filter_map(Result::ok)
    }

    fn remove_one(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
}

impl<K: Pod + Eq + Hash, V: Pod> BatchMap for PerCpuHashMap<MapData, K, V> {
    type Key = K;
    type Value = PerCpuValues<V>;

    fn data(&self) -> &MapData {
        aya::maps::IterableMap::map(self)
    }

    /// The possible CPUs as aya counts them (`/sys/devices/system/cpu/possible`, the kernel's
    /// `num_possible_cpus()`), so the values fit aya's [`PerCpuValues`].
    fn layout() -> io::Result<ValueLayout> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        Ok(ValueLayout::PerCpu { cpus })
    }

    fn value_size(layout: ValueLayout) -> usize {
        layout.entry_size::<V>()
    }

    fn decode(raw: &RawEntries, index: usize, layout: ValueLayout) -> (K, PerCpuValues<V>) {
        let ValueLayout::PerCpu { cpus } = layout else {
            unreachable!("a per-CPU map's layout is per CPU");
        };
        let values = PerCpuValues::try_from(raw.per_cpu::<V>(index, cpus))
            .expect("one value per possible CPU, counted as aya counts them");
        (raw.key(index), values)
    }

    fn each_entry(&self) -> impl Iterator<Item = (K, PerCpuValues<V>)> {
        self.iter().filter_map(Result::ok)
    }

    fn each_key(&self) -> impl Iterator<Item = K> {
        self.keys().filter_map(Result::ok)
    }

    fn remove_one(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
}

/// A map's entries, as read.
pub type Entries<M> = Vec<(<M as BatchMap>::Key, <M as BatchMap>::Value)>;

/// An aya hash map read and pruned with batch commands where the kernel has them.
#[derive(Debug)]
pub struct Batched<M> {
    map: M,
    /// The kernel refused a batch lookup, or a batch deletion, on this map.
    lookup_refused: AtomicBool,
    delete_refused: AtomicBool,
    /// An unexpected batch error was logged (once per map).
    failure_logged: AtomicBool,
    /// Entries at the last read: the next one starts with room for a few more.
    last_len: AtomicUsize,
    /// Reads (of entries or keys) that went key by key.
    key_by_key_reads: AtomicU64,
}

impl<M: BatchMap> Batched<M> {
    #[must_use]
    pub fn new(map: M) -> Self {
        Self {
            map,
            lookup_refused: AtomicBool::new(false),
            delete_refused: AtomicBool::new(false),
            failure_logged: AtomicBool::new(false),
            last_len: AtomicUsize::new(0),
            key_by_key_reads: AtomicU64::new(0),
        }
    }

    /// A map read and pruned key by key, as on a kernel without batch commands.
    #[must_use]
    pub fn key_by_key(map: M) -> Self {
        let batched = Self::new(map);
        batched.lookup_refused.store(true, Ordering::Relaxed);
        batched.delete_refused.store(true, Ordering::Relaxed);
        batched
    }

    /// Every entry of the map (see the module's note on consistency). A map that cannot be read
    /// (the kernel out of memory) reads as the entries the key-by-key walk gets, as before.
    #[must_use]
    pub fn entries(&self) -> Entries<M> {
        if !self.lookup_refused.load(Ordering::Relaxed) {
            match self.read_batched() {
                Ok(entries) => return entries,
                Err(e) => self.batch_failed(&self.lookup_refused, "lookup", &e),
            }
        }
        self.key_by_key_reads.fetch_add(1, Ordering::Relaxed);
        let mut seen = HashSet::new();
        self.map
            .each_entry()
            .filter(|(key, _)| seen.insert(*key))
            .collect()
    }

    /// Every key of the map, with the same consistency as [`Self::entries`].
    #[must_use]
    pub fn all_keys(&self) -> Vec<M::Key> {
        if !self.lookup_refused.load(Ordering::Relaxed) {
            match self.read_batched() {
                Ok(entries) => return entries.into_iter().map(|(key, _)| key).collect(),
                Err(e) => self.batch_failed(&self.lookup_refused, "lookup", &e),
            }
        }
        self.key_by_key_reads.fetch_add(1, Ordering::Relaxed);
        let mut seen = HashSet::new();
        self.map
            .each_key()
            .filter(|key| seen.insert(*key))
            .collect()
    }

    /// How many reads so far went key by key (the kernel refused batches, or one failed).
    #[must_use]
    pub fn key_by_key_reads(&self) -> u64 {
        self.key_by_key_reads.load(Ordering::Relaxed)
    }

    /// Removes `keys` from the map; keys already gone are skipped.
    pub fn remove_keys(&mut self, keys: &[M::Key]) {
        let mut rest = keys;
        if !self.delete_refused.load(Ordering::Relaxed) {
            let fd = self.map.data().fd().as_fd();
            while !rest.is_empty() {
                match sys::delete_batch(fd, rest) {
                    Ok(()) => return,
                    // The key at `count` was gone: the ones before it are deleted.
                    Err(e) if e.errno() == Some(libc::ENOENT) => {
                        rest = rest.get(e.count + 1..).unwrap_or_default();
                    }
                    // The count means nothing here: the rest are removed key by key.
                    Err(e) => {
                        self.batch_failed(&self.delete_refused, "delete", &e);
                        break;
                    }
                }
            }
        }
        for key in rest {
            // Already gone is fine.
            let _ = self.map.remove_one(key);
        }
    }

    fn read_batched(&self) -> Result<Entries<M>, BatchError> {
        let layout = M::layout().map_err(|error| BatchError { error, count: 0 })?;
        let last = self.last_len.load(Ordering::Relaxed);
        let raw = buffer::read_all(
            self.map.data().fd().as_fd(),
            size_of::<M::Key>(),
            M::value_size(layout),
            last + last / 4 + 16,
        )?;
        self.last_len.store(raw.len, Ordering::Relaxed);
        Ok((0..raw.len)
            .map(|index| M::decode(&raw, index, layout))
            .collect())
    }

    /// Notes a failed batch command: a refusal (an older kernel) turns `refused` on for good,
    /// other errors fall back for this call only. Each is logged once per map.
    fn batch_failed(&self, refused: &AtomicBool, what: &str, e: &BatchError) {
        let refusal = matches!(e.errno(), Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP));
        let first = if refusal {
            !refused.swap(true, Ordering::Relaxed)
        } else {
            !self.failure_logged.swap(true, Ordering::Relaxed)
        };
        if !first {
            return;
        }
        let name = self
            .map
            .data()
            .info()
            .ok()
            .and_then(|info| info.name_as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        if refusal {
            log::debug!(
                "map {name}: batch {what} refused ({}); one key at a time from now on",
                e.error
            );
        } else {
            log::warn!(
                "map {name}: batch {what} failed ({}); one key at a time this time",
                e.error
            );
        }
    }
}

impl<M> Deref for Batched<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.map
    }
}

impl<M> DerefMut for Batched<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.map
    }
}

/// Taken from the loaded object like the map it wraps (`Kernel::take_map`).
impl<M: BatchMap + TryFrom<Map, Error = MapError>> TryFrom<Map> for Batched<M> {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        M::try_from(map).map(Self::new)
    }
}
