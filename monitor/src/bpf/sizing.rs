//! The kernel maps at scale: every map of the programs, what its keys are, how many entries a
//! reference host needs, and the kernel memory each takes. The single source of truth for the
//! README's "Kernel maps at scale" table; tests hold it to the compiled object (kinds, sizes,
//! capacities, flags) and to the README.

mod readme;

pub use readme::markdown;

use std::mem::size_of;

use monitor_common::{
    block::{
        BLOCK_DROPS_MAP, BLOCK_PENDING_CAPACITY, BLOCK_PENDING_MAP, BLOCK_STATS_CAPACITY,
        BLOCK_STATS_MAP, BlockKey, BlockStats, PendingRequest, RequestKey,
    },
    diagnostics::DIAGNOSTICS_LOGGED_MAP,
    exits::{
        EXITS_COUNTS_CAPACITY, EXITS_COUNTS_MAP, EXITS_DROPS_MAP, ExitKey,
        details::{
            DetailKey, EXITS_DETAILS_CAPACITY, EXITS_DETAILS_MAP, EXITS_DETAILS_OVERFLOW_CAPACITY,
            EXITS_DETAILS_OVERFLOW_MAP,
        },
        latency::{
            EXITS_LATENCY_CAPACITY, EXITS_LATENCY_MAP, EXITS_PENDING_MAP,
            EXITS_PENDING_USERSPACE_MAP, PENDING_CAPACITY, PendingExit,
        },
        run_fds::{
            EXITS_FD_ASKING_MAP, EXITS_FD_WANTED_CAPACITY, EXITS_FD_WANTED_MAP,
            EXITS_RUN_FDS_CAPACITY, EXITS_RUN_FDS_MAP, RunFd,
        },
    },
    histogram::LatencyHist,
    numa::{
        NUMA_DROPS_MAP, NUMA_FAULTS_CAPACITY, NUMA_FAULTS_MAP, NUMA_MOVES_CAPACITY, NUMA_MOVES_MAP,
        NumaFaultKey, NumaFaultStat, NumaMoveKey,
    },
    places::{CPU_PLACES_MAP, CpuPlace, MAX_CPUS},
    sched::{
        ContenderKey, ContenderStat, SCHED_CONTENDERS_CAPACITY, SCHED_CONTENDERS_MAP,
        SCHED_CONTENDERS_OVERFLOW_CAPACITY, SCHED_CONTENDERS_OVERFLOW_MAP, SCHED_CPU_TIME_CAPACITY,
        SCHED_CPU_TIME_MAP, SCHED_DROPS_MAP, SCHED_THREADS_CAPACITY, SCHED_THREADS_MAP,
        SCHED_WATCH_MAP, SCHED_WATCHED_EVENTS_MAP, ThreadCpuKey, ThreadSched, WATCH_WORDS,
        WATCHED_EVENT_KINDS,
    },
    tlb::{
        TLB_DROPS_MAP, TLB_HOST_MAP, TLB_REASON_SLOTS, TLB_VMM_CAPACITY, TLB_VMM_MAP, TlbCount,
        TlbKey,
    },
    vmms::{
        PROCESS_EXECS_BYTES, PROCESS_EXECS_LOST_MAP, PROCESS_EXECS_MAP, VMM_CHANGE_SLOTS,
        VMM_CHANGES_MAP, VMM_WATCH_MAP, VMM_WATCH_WORDS,
    },
};

/// The host the capacities are chosen for: a 2 × 64-core machine running 1,000 VMs.
pub const REFERENCE_VMS: u64 = 1_000;
pub const REFERENCE_VCPUS_PER_VM: u64 = 16;
/// Helper threads per VM (I/O threads, workers): 5–20, the most taken.
pub const REFERENCE_HELPERS_PER_VM: u64 = 20;
pub const REFERENCE_CPUS: u64 = 128;
const VCPU_THREADS: u64 = REFERENCE_VMS * REFERENCE_VCPUS_PER_VM;
const THREADS: u64 = VCPU_THREADS + REFERENCE_VMS * REFERENCE_HELPERS_PER_VM;

/// How the kernel keeps a map, as far as its memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Array,
    /// An array created with `BPF_F_MMAPABLE`, which the agent reads through a memory mapping.
    MappedArray,
    PerCpuArray,
    /// A hash map; `preallocated` unless created with `BPF_F_NO_PREALLOC`.
    Hash {
        preallocated: bool,
    },
    PerCpuHash,
    /// A ring buffer: `capacity` is its size in bytes.
    RingBuf,
}

impl Kind {
    /// The kernel's `bpf_map_type` number.
    #[must_use]
    pub const fn map_type(self) -> u32 {
        match self {
            Self::Hash { .. } => 1,
            Self::Array | Self::MappedArray => 2,
            Self::PerCpuHash => 5,
            Self::PerCpuArray => 6,
            Self::RingBuf => 27,
        }
    }

    /// `BPF_F_NO_PREALLOC`, `BPF_F_MMAPABLE` or nothing.
    #[must_use]
    pub const fn flags(self) -> u32 {
        match self {
            Self::Hash {
                preallocated: false,
            } => 1,
            Self::MappedArray => 1 << 10,
            _ => 0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Array => "array",
            Self::MappedArray => "array, mapped by the agent",
            Self::PerCpuArray => "per-CPU array",
            Self::Hash { preallocated: true } => "hash",
            Self::Hash {
                preallocated: false,
            } => "hash, not preallocated",
            Self::PerCpuHash => "per-CPU hash",
            Self::RingBuf => "ring buffer (capacity in bytes)",
        }
    }
}

/// One kernel map.
#[derive(Clone, Copy, Debug)]
pub struct MapSize {
    pub name: &'static str,
    pub kind: Kind,
    pub key_size: usize,
    pub value_size: usize,
    pub capacity: u32,
    /// What one entry stands for.
    pub key: &'static str,
    /// Entries the reference host needs.
    pub needed: u64,
    /// How `needed` follows from the reference host.
    pub basis: &'static str,
    /// For a map keyed by thread × CPU: the CPUs a thread is counted on in `needed`. A host with
    /// fewer CPUs gives a thread fewer entries, and the map is loaded that much smaller.
    pub cpus_per_thread: Option<u64>,
}

const fn map<K, V>(name: &'static str, kind: Kind, capacity: u32, key: &'static str) -> MapSize {
    MapSize {
        name,
        kind,
        key_size: size_of::<K>(),
        value_size: size_of::<V>(),
        capacity,
        key,
        needed: capacity as u64,
        basis: "fixed",
        cpus_per_thread: None,
    }
}

const fn needs(mut map: MapSize, needed: u64, basis: &'static str) -> MapSize {
    map.needed = needed;
    map.basis = basis;
    map
}

/// `map`, keyed by thread × CPU with `needed` counting each thread on `cpus` CPUs.
const fn by_thread_and_cpu(mut map: MapSize, cpus: u64) -> MapSize {
    map.cpus_per_thread = Some(cpus);
    map
}

const HASH: Kind = Kind::Hash { preallocated: true };
const HASH_ON_DEMAND: Kind = Kind::Hash {
    preallocated: false,
};

/// Every map of the kernel programs (the loader's own `AYA_LOGS` ring and `.rodata` aside).
pub const MAPS: &[MapSize] = &[
    needs(
        map::<ExitKey, u64>(
            EXITS_COUNTS_MAP,
            HASH_ON_DEMAND,
            EXITS_COUNTS_CAPACITY,
            "vCPU thread × exit reason",
        ),
        VCPU_THREADS * 16,
        "16,000 vCPU threads × 16 reasons",
    ),
    needs(
        map::<ExitKey, LatencyHist>(
            EXITS_LATENCY_MAP,
            HASH_ON_DEMAND,
            EXITS_LATENCY_CAPACITY,
            "vCPU thread × exit reason",
        ),
        VCPU_THREADS * 16,
        "16,000 vCPU threads × 16 reasons",
    ),
    needs(
        map::<u32, PendingExit>(EXITS_PENDING_MAP, HASH, PENDING_CAPACITY, "vCPU thread"),
        VCPU_THREADS,
        "16,000 vCPU threads",
    ),
    needs(
        map::<u32, PendingExit>(
            EXITS_PENDING_USERSPACE_MAP,
            HASH,
            PENDING_CAPACITY,
            "vCPU thread",
        ),
        VCPU_THREADS,
        "16,000 vCPU threads",
    ),
    needs(
        map::<DetailKey, u64>(
            EXITS_DETAILS_MAP,
            Kind::PerCpuHash,
            EXITS_DETAILS_CAPACITY,
            "VM × detail kind × value (port, MSR, …)",
        ),
        REFERENCE_VMS * 8,
        "1,000 VMs × 8 values; beyond: the overflow map",
    ),
    needs(
        map::<DetailKey, u64>(
            EXITS_DETAILS_OVERFLOW_MAP,
            Kind::PerCpuHash,
            EXITS_DETAILS_OVERFLOW_CAPACITY,
            "VM × detail kind",
        ),
        REFERENCE_VMS * 8,
        "1,000 VMs × 8 kinds",
    ),
    needs(
        map::<u32, RunFd>(
            EXITS_RUN_FDS_MAP,
            HASH_ON_DEMAND,
            EXITS_RUN_FDS_CAPACITY,
            "thread of a VM asked about",
        ),
        THREADS,
        "36,000 threads, all VMs asked about at start",
    ),
    needs(
        map::<u32, u8>(
            EXITS_FD_WANTED_MAP,
            HASH,
            EXITS_FD_WANTED_CAPACITY,
            "VM asked about",
        ),
        REFERENCE_VMS,
        "1,000 VMs",
    ),
    map::<u32, u32>(
        EXITS_FD_ASKING_MAP,
        Kind::Array,
        1,
        "count of VMs asked about",
    ),
    map::<u32, u64>(EXITS_DROPS_MAP, Kind::PerCpuArray, 1, "drop counter"),
    needs(
        map::<u32, ThreadSched>(
            SCHED_THREADS_MAP,
            HASH_ON_DEMAND,
            SCHED_THREADS_CAPACITY,
            "watched thread",
        ),
        THREADS,
        "36,000 vCPU and helper threads",
    ),
    by_thread_and_cpu(
        needs(
            map::<ThreadCpuKey, u64>(
                SCHED_CPU_TIME_MAP,
                HASH_ON_DEMAND,
                SCHED_CPU_TIME_CAPACITY,
                "watched thread × CPU it ran on",
            ),
            THREADS * 8,
            "36,000 threads × 8 CPUs",
        ),
        8,
    ),
    needs(
        map::<ContenderKey, ContenderStat>(
            SCHED_CONTENDERS_MAP,
            HASH,
            SCHED_CONTENDERS_CAPACITY,
            "VM × process that held its CPU",
        ),
        REFERENCE_VMS * 16,
        "1,000 VMs × 16 contenders; beyond: the overflow map",
    ),
    needs(
        map::<ContenderKey, ContenderStat>(
            SCHED_CONTENDERS_OVERFLOW_MAP,
            HASH,
            SCHED_CONTENDERS_OVERFLOW_CAPACITY,
            "VM (other contenders)",
        ),
        REFERENCE_VMS,
        "1,000 VMs",
    ),
    map::<u32, u64>(
        SCHED_WATCH_MAP,
        Kind::Array,
        WATCH_WORDS,
        "64 thread ids (bitmap)",
    ),
    map::<u32, u64>(SCHED_DROPS_MAP, Kind::PerCpuArray, 1, "drop counter"),
    map::<u32, u64>(
        SCHED_WATCHED_EVENTS_MAP,
        Kind::PerCpuArray,
        WATCHED_EVENT_KINDS,
        "event counter",
    ),
    needs(
        map::<TlbKey, TlbCount>(
            TLB_VMM_MAP,
            Kind::PerCpuHash,
            TLB_VMM_CAPACITY,
            "thread × reason",
        ),
        THREADS * 3,
        "36,000 threads × 3 reasons",
    ),
    map::<u32, TlbCount>(TLB_HOST_MAP, Kind::PerCpuArray, TLB_REASON_SLOTS, "reason"),
    map::<u32, u64>(TLB_DROPS_MAP, Kind::PerCpuArray, 1, "drop counter"),
    needs(
        map::<NumaFaultKey, NumaFaultStat>(
            NUMA_FAULTS_MAP,
            Kind::PerCpuHash,
            NUMA_FAULTS_CAPACITY,
            "VM × CPU node × memory node",
        ),
        REFERENCE_VMS * 4,
        "1,000 VMs × 2 × 2 nodes",
    ),
    needs(
        map::<NumaMoveKey, u64>(
            NUMA_MOVES_MAP,
            Kind::PerCpuHash,
            NUMA_MOVES_CAPACITY,
            "VM × kind × node pair",
        ),
        REFERENCE_VMS * 4,
        "1,000 VMs × 4 (kind, node pair)",
    ),
    map::<u32, u64>(NUMA_DROPS_MAP, Kind::PerCpuArray, 1, "drop counter"),
    needs(
        map::<RequestKey, PendingRequest>(
            BLOCK_PENDING_MAP,
            HASH,
            BLOCK_PENDING_CAPACITY,
            "block request in flight",
        ),
        REFERENCE_VMS * 2 * 16,
        "1,000 VMs × 2 disks × 16 in flight",
    ),
    needs(
        map::<BlockKey, BlockStats>(
            BLOCK_STATS_MAP,
            HASH_ON_DEMAND,
            BLOCK_STATS_CAPACITY,
            "VM × device × operation",
        ),
        REFERENCE_VMS * 2 * 3,
        "1,000 VMs × 2 disks × 3 operations",
    ),
    map::<u32, u64>(BLOCK_DROPS_MAP, Kind::PerCpuArray, 1, "drop counter"),
    map::<u32, CpuPlace>(CPU_PLACES_MAP, Kind::Array, MAX_CPUS, "CPU"),
    map::<u32, u64>(
        VMM_WATCH_MAP,
        Kind::Array,
        VMM_WATCH_WORDS,
        "64 process ids (bitmap)",
    ),
    map::<u32, u64>(
        VMM_CHANGES_MAP,
        Kind::MappedArray,
        VMM_CHANGE_SLOTS,
        "change counter (processes by pid modulo)",
    ),
    map::<(), ()>(
        PROCESS_EXECS_MAP,
        Kind::RingBuf,
        PROCESS_EXECS_BYTES,
        "16 bytes: a process that exec'd, until the next scan",
    ),
    map::<u32, u64>(
        PROCESS_EXECS_LOST_MAP,
        Kind::MappedArray,
        1,
        "execs the ring had no room for",
    ),
    map::<u32, u32>(
        DIAGNOSTICS_LOGGED_MAP,
        Kind::Array,
        monitor_common::diagnostics::Condition::COUNT,
        "logged condition",
    ),
];

const fn round8(n: usize) -> u64 {
    n.div_ceil(8) as u64 * 8
}

/// The kernel's `struct htab_elem` before the key (hash node, free-list node, hash).
const HTAB_ELEM_HEADER: u64 = 48;
/// A hash bucket: its list head and lock.
const HTAB_BUCKET: u64 = 16;
/// The page size mappable arrays are rounded up to (x86-64).
const PAGE: u64 = 4096;

impl MapSize {
    /// Kernel memory with `entries` in use, on a host with `cpus` possible CPUs, as the kernel
    /// reckons it (`htab_map_mem_usage`, `array_map_mem_usage`; the few hundred bytes of the map
    /// structure itself left out). A preallocated map costs its capacity whatever `entries` is.
    #[must_use]
    pub fn memory(&self, entries: u64, cpus: u64) -> u64 {
        let key = round8(self.key_size);
        let value = round8(self.value_size);
        let capacity = u64::from(self.capacity);
        match self.kind {
            Kind::Array => capacity * value,
            // Page-aligned so that it can be mapped.
            Kind::MappedArray => (capacity * value).next_multiple_of(PAGE),
            Kind::PerCpuArray => capacity * (8 + value * cpus),
            Kind::Hash { preallocated } => {
                let buckets = capacity.next_power_of_two() * HTAB_BUCKET;
                let element = HTAB_ELEM_HEADER + key + value;
                if preallocated {
                    // One spare element per CPU for updates in place.
                    buckets + element * (capacity + cpus)
                } else {
                    buckets + element * entries.min(capacity)
                }
            }
            // The data pages and the two pages of the producer and consumer positions.
            Kind::RingBuf => capacity.next_multiple_of(PAGE) + 2 * PAGE,
            Kind::PerCpuHash => {
                let buckets = capacity.next_power_of_two() * HTAB_BUCKET;
                buckets + capacity * (HTAB_ELEM_HEADER + key + 8 + value * cpus)
            }
        }
    }

    /// Memory on the reference host with the entries it needs (at most the capacity).
    #[must_use]
    pub fn reference_memory(&self) -> u64 {
        self.memory(self.needed, REFERENCE_CPUS)
    }

    /// Whether the map is loaded smaller on a host smaller than the reference: the hash maps
    /// that are not preallocated. The agent reads them whole every window, and a batch read
    /// walks every bucket of the capacity whether it holds an entry or not — at the reference
    /// capacities about a million buckets a window: the agent took 5.3 % of a core on a 2-CPU
    /// host with 100 VMs, 3.5 % with the maps sized for the host. The preallocated maps keep
    /// their size: the pending exits are walked only when a process left (and every 30 reads),
    /// the block requests in flight once a window.
    #[must_use]
    pub fn scales(&self) -> bool {
        matches!(
            self.kind,
            Kind::Hash {
                preallocated: false
            }
        )
    }

    /// The capacity the map is loaded with on a host of `cpus` CPUs: the reference capacity
    /// for [`REFERENCE_CPUS`] or more, in proportion below, and never less than for
    /// [`SMALLEST_SIZED_CPUS`] — a small host may still run many small VMs. A map keyed by
    /// thread × CPU is smaller still on a host with fewer CPUs than it counts a thread on: a
    /// thread there has at most an entry per CPU of the host.
    #[must_use]
    pub fn loaded_capacity(&self, cpus: u64) -> u32 {
        if !self.scales() {
            return self.capacity;
        }
        let clamped = cpus.clamp(SMALLEST_SIZED_CPUS, REFERENCE_CPUS);
        let mut scaled = (u64::from(self.capacity) * clamped).div_ceil(REFERENCE_CPUS);
        if let Some(per_thread) = self.cpus_per_thread.filter(|n| cpus.max(1) < *n) {
            scaled = (scaled * cpus.max(1)).div_ceil(per_thread);
        }
        u32::try_from(scaled).unwrap_or(self.capacity)
    }
}

/// Below this many CPUs, a host's scaling maps keep this size ([`MapSize::loaded_capacity`]):
/// an eighth of the reference host's, room for 125 VMs of 16 vCPUs.
pub const SMALLEST_SIZED_CPUS: u64 = 16;

/// The host's online CPUs, as the loader sizes the maps for them; the reference host's count
/// when they cannot be read (the maps are then as compiled).
#[must_use]
pub fn host_cpus() -> u64 {
    aya::util::online_cpus().map_or(REFERENCE_CPUS, |cpus| cpus.len() as u64)
}

/// The capacity the map named `name` is loaded with on this host.
#[must_use]
pub fn loaded_capacity_of(name: &str) -> Option<u32> {
    let cpus = host_cpus();
    MAPS.iter()
        .find(|m| m.name == name)
        .map(|m| m.loaded_capacity(cpus))
}

#[cfg(test)]
mod tests;
