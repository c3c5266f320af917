//! Batch reads of real kernel maps against aya's key-by-key walk: the hash, LRU hash and per-CPU
//! kinds kvmtop's programs use, with thousands of keys, a per-CPU value whose size is not a
//! multiple of 8, changes between reads, removals of keys partly gone already, and a writer
//! changing the map during the reads.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    thread,
};

use aya::maps::{HashMap, Map, MapData, PerCpuHashMap, PerCpuValues};
use aya_obj::generated::bpf_map_type;
use kvmtop::bpf::batch::{BatchMap, Batched};

type Key = [u32; 3];
/// 24 bytes: a plain map's value.
type Value = [u64; 3];
/// 12 bytes: each CPU's value sits at a 16-byte stride in a batch read.
type CpuValue = [u32; 3];

const CAPACITY: u32 = 16_384;
const KEYS: u32 = 5_000;

fn key(i: u32) -> Key {
    [i, i.wrapping_mul(2_654_435_761), !i]
}

fn value(i: u32, generation: u64) -> Value {
    [u64::from(i), generation, u64::from(i) << 32 | generation]
}

fn cpu_value(i: u32, cpu: usize, generation: u32) -> CpuValue {
    [i, u32::try_from(cpu).unwrap(), generation]
}

fn cpus() -> usize {
    aya::util::nr_cpus().expect("possible CPUs")
}

/// A new map of `map_type`, and a second handle on it (its own descriptor) for the reader that
/// is compared or for a concurrent writer.
fn create(map_type: bpf_map_type, value_size: usize) -> (MapData, MapData) {
    let obj = aya_obj::Map::new_from_params(
        map_type as u32,
        u32::try_from(size_of::<Key>()).unwrap(),
        u32::try_from(value_size).unwrap(),
        CAPACITY,
        0,
    );
    let first = MapData::create(obj, "batch_test", None).expect("creating a map");
    let id = first.info().expect("map info").id();
    let second = MapData::from_id(id).expect("a second handle on the map");
    (first, second)
}

/// What the test needs of a map kind: opening it, writing it, and its entries as comparable
/// values.
trait TestMap: BatchMap<Key = Key> + Sized {
    type Plain: PartialEq + std::fmt::Debug;
    fn open(data: MapData) -> Self;
    fn plain(value: &Self::Value) -> Self::Plain;
    fn put(&mut self, i: u32, generation: u32);
    fn expected(i: u32, generation: u32) -> Self::Plain;
    /// Whether `value` is one written for key `i` (of any generation).
    fn written_for(i: u32, value: &Self::Plain) -> bool;
}

impl TestMap for HashMap<MapData, Key, Value> {
    type Plain = Value;
    fn open(data: MapData) -> Self {
        HashMap::try_from(Map::from_map_data(data).unwrap()).expect("a hash map")
    }
    fn plain(value: &Value) -> Value {
        *value
    }
    fn put(&mut self, i: u32, generation: u32) {
        self.insert(key(i), Self::expected(i, generation), 0)
            .expect("inserting");
    }
    fn expected(i: u32, generation: u32) -> Value {
        value(i, u64::from(generation))
    }
    fn written_for(i: u32, value: &Value) -> bool {
        value[0] == u64::from(i) && value[2] == u64::from(i) << 32 | value[1]
    }
}

impl TestMap for PerCpuHashMap<MapData, Key, CpuValue> {
    type Plain = Vec<CpuValue>;
    fn open(data: MapData) -> Self {
        PerCpuHashMap::try_from(Map::from_map_data(data).unwrap()).expect("a per-CPU hash map")
    }
    fn plain(value: &PerCpuValues<CpuValue>) -> Vec<CpuValue> {
        value.to_vec()
    }
    fn put(&mut self, i: u32, generation: u32) {
        let values = PerCpuValues::try_from(Self::expected(i, generation)).expect("one per CPU");
        self.insert(key(i), values, 0).expect("inserting");
    }
    fn expected(i: u32, generation: u32) -> Vec<CpuValue> {
        (0..cpus())
            .map(|cpu| cpu_value(i, cpu, generation))
            .collect()
    }
    /// Each CPU's value on its own: a lookup copies the CPUs one after the other.
    fn written_for(i: u32, value: &Vec<CpuValue>) -> bool {
        value.len() == cpus() && (0u32..).zip(value).all(|(cpu, v)| v[0] == i && v[1] == cpu)
    }
}

/// One read, checked for repeated keys.
fn read<M: TestMap>(map: &Batched<M>) -> BTreeMap<Key, M::Plain> {
    let entries = map.entries();
    let n = entries.len();
    let read: BTreeMap<Key, M::Plain> = entries.iter().map(|(k, v)| (*k, M::plain(v))).collect();
    assert_eq!(read.len(), n, "a key came twice in one read");
    read
}

fn skipped(test: &str) -> bool {
    let reason = support::missing_prerequisite(false, &[]);
    if let Some(reason) = &reason {
        support::skip(test, reason);
    }
    reason.is_some()
}

/// Fills a map, reads it with batches and key by key, changes it (updates, removals through
/// both readers, some of the keys already gone, new keys) and reads again; both readers must
/// agree with each other and with what was written, every time.
fn batch_reads_match_key_by_key_reads<M: TestMap>(map_type: bpf_map_type, value_size: usize) {
    let (first, second) = create(map_type, value_size);
    let mut batched = Batched::new(M::open(first));
    let mut by_key = Batched::key_by_key(M::open(second));

    let mut expected: BTreeMap<Key, M::Plain> = BTreeMap::new();
    for i in 0..KEYS {
        by_key.put(i, 1);
        expected.insert(key(i), M::expected(i, 1));
    }
    let check = |batched: &Batched<M>, by_key: &Batched<M>, expected: &BTreeMap<_, _>, when| {
        let from_batches = read(batched);
        assert_eq!(from_batches.len(), expected.len(), "{when}: entries read");
        assert!(from_batches == *expected, "{when}: batch read differs");
        assert!(
            read(by_key) == from_batches,
            "{when}: key-by-key read differs"
        );
        let keys: BTreeSet<Key> = batched.all_keys().into_iter().collect();
        assert!(keys == expected.keys().copied().collect(), "{when}: keys");
        let keys: BTreeSet<Key> = by_key.all_keys().into_iter().collect();
        assert!(
            keys == expected.keys().copied().collect(),
            "{when}: keys key by key"
        );
    };
    check(&batched, &by_key, &expected, "filled");

    // Changed between reads: every third key updated, every fifth removed through the batch
    // reader, every seventh through the key-by-key one, the lists overlapping and holding keys
    // that were never there, and new keys added.
    for i in (0..KEYS).step_by(3) {
        batched.put(i, 2);
        expected.insert(key(i), M::expected(i, 2));
    }
    let fifths: Vec<Key> = (0..KEYS + 200).step_by(5).map(key).collect();
    let sevenths: Vec<Key> = (0..KEYS + 200).step_by(7).map(key).collect();
    batched.remove_keys(&fifths);
    by_key.remove_keys(&sevenths);
    batched.remove_keys(&sevenths);
    for k in fifths.iter().chain(&sevenths) {
        expected.remove(k);
    }
    for i in KEYS..KEYS + 1_000 {
        batched.put(i, 3);
        expected.insert(key(i), M::expected(i, 3));
    }
    check(&batched, &by_key, &expected, "changed");

    // Emptied through the batch reader's removal.
    let all = batched.all_keys();
    batched.remove_keys(&all);
    expected.clear();
    check(&batched, &by_key, &expected, "emptied");
    assert_eq!(batched.key_by_key_reads(), 0, "a batch read fell back");
    assert!(by_key.key_by_key_reads() > 0);
}

/// Reads while another descriptor's writer keeps removing and re-adding the odd keys: the even
/// keys, never touched, come exactly once with their values in every read; odd keys at most
/// once, with a value written for them.
fn reads_during_changes<M: TestMap + Send>(
    map_type: bpf_map_type,
    value_size: usize,
    batches: bool,
) {
    let (first, second) = create(map_type, value_size);
    let reader = if batches {
        Batched::new(M::open(first))
    } else {
        Batched::key_by_key(M::open(first))
    };
    let mut writer = M::open(second);
    for i in 0..KEYS {
        writer.put(i, 1);
    }
    let stop = AtomicBool::new(false);
    let rounds = AtomicU32::new(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            for generation in 2.. {
                for i in (1..KEYS).step_by(2) {
                    if generation % 2 == 0 {
                        let _ = writer.remove_one(&key(i));
                    } else {
                        writer.put(i, generation);
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        let mut overlapped = 0;
        for _ in 0..10 {
            let before = rounds.load(Ordering::Relaxed);
            let read = read(&reader);
            for i in (0..KEYS).step_by(2) {
                assert_eq!(
                    read.get(&key(i)),
                    Some(&M::expected(i, 1)),
                    "stable key {i}"
                );
            }
            for i in (1..KEYS).step_by(2) {
                if let Some(value) = read.get(&key(i)) {
                    assert!(M::written_for(i, value), "key {i}: {value:?}");
                }
            }
            assert!(read.keys().all(|k| k[0] < KEYS && *k == key(k[0])));
            overlapped += usize::from(rounds.load(Ordering::Relaxed) != before);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(overlapped > 0, "no read overlapped a change");
        assert_eq!(reader.key_by_key_reads() == 0, batches);
    });
}

#[test]
fn hash_map_batch_reads_match_key_by_key_reads() {
    if skipped("hash_map_batch_reads_match_key_by_key_reads") {
        return;
    }
    batch_reads_match_key_by_key_reads::<HashMap<MapData, Key, Value>>(
        bpf_map_type::BPF_MAP_TYPE_HASH,
        size_of::<Value>(),
    );
}

#[test]
fn lru_hash_map_batch_reads_match_key_by_key_reads() {
    if skipped("lru_hash_map_batch_reads_match_key_by_key_reads") {
        return;
    }
    batch_reads_match_key_by_key_reads::<HashMap<MapData, Key, Value>>(
        bpf_map_type::BPF_MAP_TYPE_LRU_HASH,
        size_of::<Value>(),
    );
}

#[test]
fn per_cpu_hash_map_batch_reads_match_key_by_key_reads() {
    if skipped("per_cpu_hash_map_batch_reads_match_key_by_key_reads") {
        return;
    }
    batch_reads_match_key_by_key_reads::<PerCpuHashMap<MapData, Key, CpuValue>>(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
        size_of::<CpuValue>(),
    );
}

#[test]
fn lru_per_cpu_hash_map_batch_reads_match_key_by_key_reads() {
    if skipped("lru_per_cpu_hash_map_batch_reads_match_key_by_key_reads") {
        return;
    }
    batch_reads_match_key_by_key_reads::<PerCpuHashMap<MapData, Key, CpuValue>>(
        bpf_map_type::BPF_MAP_TYPE_LRU_PERCPU_HASH,
        size_of::<CpuValue>(),
    );
}

#[test]
fn batch_reads_during_changes_return_each_key_at_most_once() {
    if skipped("batch_reads_during_changes_return_each_key_at_most_once") {
        return;
    }
    reads_during_changes::<HashMap<MapData, Key, Value>>(
        bpf_map_type::BPF_MAP_TYPE_HASH,
        size_of::<Value>(),
        true,
    );
    reads_during_changes::<PerCpuHashMap<MapData, Key, CpuValue>>(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
        size_of::<CpuValue>(),
        true,
    );
}

#[test]
fn key_by_key_reads_during_changes_return_each_key_at_most_once() {
    if skipped("key_by_key_reads_during_changes_return_each_key_at_most_once") {
        return;
    }
    reads_during_changes::<HashMap<MapData, Key, Value>>(
        bpf_map_type::BPF_MAP_TYPE_HASH,
        size_of::<Value>(),
        false,
    );
    reads_during_changes::<PerCpuHashMap<MapData, Key, CpuValue>>(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
        size_of::<CpuValue>(),
        false,
    );
}
