//! The procfs fallback of the fault figures: NUMA balancing's own statistics of each VMM thread
//! (`/proc/PID/task/TID/sched`, see [`crate::host::proc::numa_sched`]), read only while
//! `task_numa_fault` cannot be hooked.
//!
//! Cost is bounded, because a host may run hundreds of VMs with thousands of threads and every
//! read makes the kernel format a whole sched file (about 2 KiB of text; on the 2-CPU test host
//! a read took about 1.15 times the CPU of a `schedstat` read, both dominated by the system
//! calls):
//! - only the threads discovery lists for VMM processes are read, never other processes;
//! - a VM is read again only once its reading is [`READ_PERIOD`] old. The figures cannot change
//!   faster than that matters: the fault figures move once per scan pass of the VM's memory,
//!   which NUMA balancing makes at most every second (`numa_balancing_scan_period_min_ms`) and,
//!   for a VM of several GiB, every several seconds to a minute;
//! - while NUMA balancing is off (`kernel.numa_balancing` is 0, as it always is on a one-node
//!   host), nothing these statistics hold moves: hinting faults, the migrations they cause and
//!   scan passes all come from balancing. The period is then [`PERIOD_FACTOR_WHILE_OFF`] times
//!   longer; a second reading still tells a VM balanced before from one balanced now
//!   ([`VmBalancing::active`]), and balancing switched on shortens it again at the next pass;
//! - one pass reads at most [`MAX_THREADS_PER_PASS`] threads, the VMs with the oldest readings
//!   first, so on a large host the reads spread over the passes (and the period stretches)
//!   instead of landing in one window. A single VM with more threads is still read whole.
//!
//! `numa_pages_migrated` is a running count, so the pages migrated between a VM's two latest
//! readings are exact for the threads seen in both (a thread that ended takes its count with
//! it). The fault figures are decaying averages and are kept as read.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    discovery::{Vmm, VmmId},
    host::{
        proc::numa_sched::{self, ThreadNumaStats},
        read::read_u64,
    },
};

/// How old a VM's reading gets before it is read again.
pub const READ_PERIOD: Duration = Duration::from_secs(10);
/// How many times longer a VM's reading lasts while NUMA balancing is off (module docs).
pub const PERIOD_FACTOR_WHILE_OFF: u32 = 6;
/// Threads read in one pass at most (unless one VM has more).
pub const MAX_THREADS_PER_PASS: usize = 256;

/// One reading of a VM's threads.
#[derive(Clone, Debug)]
pub struct VmBalancingReading {
    pub at: Instant,
    /// By tid; threads without NUMA statistics or gone before they were read are left out.
    pub threads: HashMap<u32, ThreadNumaStats>,
}

/// What is known of one VM: its latest reading and what changed since the one before.
#[derive(Clone, Debug)]
pub struct VmBalancing {
    pub latest: VmBalancingReading,
    /// Seconds between the two latest readings; `None` after the first.
    pub span: Option<Duration>,
    /// Pages migrated between the two latest readings, by tid (threads seen in both).
    pub migrated_by_thread: Option<HashMap<u32, u64>>,
    /// `mm->numa_scan_seq` advanced by this much between them.
    pub scan_passes: Option<u64>,
    /// Pages migrated since the VM was first read.
    pub migrated_cumulative: u64,
    /// Whether a thread's fault figures moved between the two latest readings.
    pub faults_moved: bool,
}

impl VmBalancing {
    /// Pages migrated between the two latest readings, all threads.
    #[must_use]
    pub fn migrated(&self) -> Option<u64> {
        self.migrated_by_thread
            .as_ref()
            .map(|m| m.values().fold(0u64, |a, b| a.saturating_add(*b)))
    }

    /// Whether the readings show NUMA balancing at work: since the reading before, pages
    /// migrated, a scan pass or fault figures that moved (they only move when NUMA balancing
    /// takes faults); after the first reading, any recent fault.
    #[must_use]
    pub fn active(&self) -> bool {
        if self.span.is_some() {
            return self.faults_moved
                || self.migrated().is_some_and(|m| m > 0)
                || self.scan_passes.is_some_and(|p| p > 0);
        }
        self.latest
            .threads
            .values()
            .any(|t| t.total_faults.is_some_and(|f| f > 0))
    }
}

/// Whether this kernel prints NUMA balancing statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statistics {
    /// Not known yet: nothing has been read.
    Unknown,
    Present,
    /// Threads were read and none had any: a kernel without NUMA balancing.
    Absent,
}

/// The latest readings of every VM, refreshed as they come due.
#[derive(Debug)]
pub struct BalancingReader {
    vms: HashMap<VmmId, VmBalancing>,
    statistics: Statistics,
    period: Duration,
    budget: usize,
}

impl Default for BalancingReader {
    fn default() -> Self {
        Self::new(READ_PERIOD, MAX_THREADS_PER_PASS)
    }
}

impl BalancingReader {
    /// A reader with another period and budget (tests).
    #[must_use]
    pub fn new(period: Duration, budget: usize) -> Self {
        Self {
            vms: HashMap::new(),
            statistics: Statistics::Unknown,
            period,
            budget,
        }
    }

    /// Reads the VMs whose reading is due, oldest first, within the pass's thread budget, and
    /// forgets the VMs that are gone. Returns how many threads were read.
    pub fn refresh(&mut self, proc_root: &Path, vmms: &[Vmm]) -> usize {
        self.vms.retain(|id, _| vmms.iter().any(|v| v.id == *id));
        let now = Instant::now();
        // Unreadable (a procfs root without it) counts as on: the period stays as it is.
        let off = read_u64(&proc_root.join("sys/kernel/numa_balancing")) == Some(0);
        let period = if off {
            self.period * PERIOD_FACTOR_WHILE_OFF
        } else {
            self.period
        };
        let mut due: Vec<(Option<Instant>, &Vmm)> = vmms
            .iter()
            .map(|v| (self.vms.get(&v.id).map(|b| b.latest.at), v))
            .filter(|(at, _)| at.is_none_or(|at| now.duration_since(at) >= period))
            .collect();
        // Never read first, then the oldest readings.
        due.sort_by_key(|(at, vmm)| (*at, vmm.id.pid));
        let mut read = 0;
        for (_, vmm) in due {
            if read > 0 && read + vmm.threads.len() > self.budget {
                break;
            }
            read += vmm.threads.len();
            let reading = self.read_vm(proc_root, vmm);
            self.record(vmm.id, reading);
        }
        read
    }

    fn read_vm(&mut self, proc_root: &Path, vmm: &Vmm) -> VmBalancingReading {
        let mut threads = HashMap::new();
        let mut without = 0;
        for thread in &vmm.threads {
            // A thread that has gone since discovery listed it is no problem.
            match numa_sched::read(proc_root, vmm.id.pid, thread.tid) {
                Ok(Some(stats)) => {
                    threads.insert(thread.tid, stats);
                }
                Ok(None) => without += 1,
                Err(_) => {}
            }
        }
        if !threads.is_empty() {
            self.statistics = Statistics::Present;
        } else if without > 0 && self.statistics == Statistics::Unknown {
            self.statistics = Statistics::Absent;
        }
        VmBalancingReading {
            at: Instant::now(),
            threads,
        }
    }

    fn record(&mut self, id: VmmId, latest: VmBalancingReading) {
        let entry = match self.vms.remove(&id) {
            None => VmBalancing {
                latest,
                span: None,
                migrated_by_thread: None,
                scan_passes: None,
                migrated_cumulative: 0,
                faults_moved: false,
            },
            Some(before) => {
                let migrated: HashMap<u32, u64> = latest
                    .threads
                    .iter()
                    .filter_map(|(tid, now)| {
                        let was = before.latest.threads.get(tid)?.pages_migrated?;
                        Some((*tid, now.pages_migrated?.saturating_sub(was)))
                    })
                    .collect();
                let seq = |r: &VmBalancingReading| r.threads.values().find_map(|t| t.scan_seq);
                let scan_passes = seq(&latest)
                    .zip(seq(&before.latest))
                    .map(|(now, was)| now.saturating_sub(was));
                let added = migrated.values().fold(0u64, |a, b| a.saturating_add(*b));
                let faults_moved = latest.threads.iter().any(|(tid, now)| {
                    before.latest.threads.get(tid).is_some_and(|was| {
                        was.total_faults != now.total_faults || was.by_node != now.by_node
                    })
                });
                VmBalancing {
                    span: Some(latest.at.duration_since(before.latest.at)),
                    migrated_by_thread: Some(migrated),
                    scan_passes,
                    migrated_cumulative: before.migrated_cumulative.saturating_add(added),
                    faults_moved,
                    latest,
                }
            }
        };
        self.vms.insert(id, entry);
    }

    /// Whether this kernel prints the statistics, as far as the readings tell.
    #[must_use]
    pub fn statistics(&self) -> Statistics {
        self.statistics
    }

    /// The latest of every VM, by pid.
    #[must_use]
    pub fn readings(&self) -> HashMap<u32, VmBalancing> {
        self.vms
            .iter()
            .map(|(id, b)| (id.pid, b.clone()))
            .collect()
    }
}
