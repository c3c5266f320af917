//! Finds the KVM virtual machines on the host: every process holding an `anon_inode:kvm-vm`
//! file descriptor, whatever the VMM (QEMU, Firecracker, Cloud Hypervisor, a small
//! `kvm-ioctls` program), with its vCPUs and the thread running each.
//!
//! [`Discovery`] is stateful: it reports VMMs that appeared and exited since the last scan,
//! remembers vCPU→thread evidence that is only sometimes visible, and keeps the work of a scan
//! proportional to what changed rather than to everything on the host:
//!
//! - a scan lists `/proc` (one directory read, whose cost grows with every process of the
//!   host) only when it cannot tell what is new otherwise: while the kernel programs say which
//!   processes exec'd a program ([`Discovery::note_execs`]; a VMM starts so) and count the
//!   known VMMs' changes, the listing is the safety net, once every [`LIST_EVERY`] scans and
//!   while a VMM is new (its pre-6.4 vhost kernel threads are found by listing); a VMM gone
//!   from the listing, or whose `stat` is gone when its counter moved, has exited;
//! - each known VMM's `stat` and thread list are read on every scan, unless the kernel programs
//!   say what changed ([`Discovery::scan_following`]): the process lifecycle programs count,
//!   per watched process, the threads it created and ended, its end and its execs, and a VMM is
//!   then read only when its count moved (on that scan and the next: the exit tracepoint fires
//!   before the process leaves `/proc`), while it has young threads (to read their names),
//!   when the kernel saw it run a vCPU, and on its slow refresh every [`REFRESH_VMM_EVERY`]
//!   scans (the safety net). A pid reused by a new process is noticed by the old process's
//!   exit, counted for the pid;
//! - a process is inspected (its `stat` and file descriptors) when it is new in the listing,
//!   when the kernel programs saw it exec, while it is young (less than 5 s since it started,
//!   by its start time, or since it was seen to exec another program), when the kernel
//!   programs saw it run a vCPU ([`Discovery::note_kvm_activity`]), and otherwise, in a
//!   listing, once every [`RECHECK_OTHERS_EVERY`] scans, or about [`RECHECK_OTHERS_PER_SCAN`]
//!   processes a scan on a host with many, spread over pids (the safety net for a process that
//!   creates a VM long after it started and has not run it yet);
//! - kernel threads are inspected like other processes (only their `stat`); the pre-6.4 vhost
//!   workers among them are handed to their VMMs ([`ScanResult::vhost_workers`]);
//! - a known VMM's file descriptors (its vCPUs) are re-read when its thread list changes (a
//!   vCPU is a thread) and otherwise every [`REFRESH_VMM_EVERY`] scans; a thread's `stat` is
//!   read while the thread is young (VMMs name threads just after creating them) and then on
//!   the same slow refresh; `syscall` files only while a vCPU has no better evidence.
//!
//! A process is identified by its pid *and* start time, so a reused pid is a new process.
//! Processes vanish at any moment; that is never an error, only absence.

mod inspect;
mod proc_parse;
mod procfs;
pub mod qemu;
#[cfg(test)]
mod tests;
mod threads;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::model::Untrusted;

use procfs::{KvmFds, MAX_FDS, ProcStat};
pub use procfs::{ProcError, ProcRoot};
pub use qemu::QemuCommandLine;
use threads::{TaskInfo, VcpuMemory};
pub use threads::{ThreadRole, TidSource, VmmThread};

/// A process for its whole life: the pid plus its start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct VmmId {
    pub pid: u32,
    pub start_time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmmKind {
    Qemu,
    /// Any other VMM; `exe` is `/proc/PID/exe`, else `argv[0]`, else the comm.
    Other {
        exe: Untrusted,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vcpu {
    /// KVM's vcpu id, as in `anon_inode:kvm-vcpu:N` and in KVM tracepoints. For QEMU on x86
    /// this is the APIC id, equal to QEMU's CPU index unless a topology level count is not a
    /// power of two.
    pub index: u32,
    /// Its `kvm-vcpu` file descriptor in the VMM (the lowest, should the VMM hold several),
    /// which the kernel sees a thread pass to `KVM_RUN`.
    #[serde(skip)]
    pub fd: u32,
    /// The thread running this vCPU, when known.
    pub tid: Option<u32>,
    pub tid_source: Option<TidSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vmm {
    pub id: VmmId,
    pub kind: VmmKind,
    /// QEMU's `-name` (the libvirt domain name under libvirt), else `<comm>-<pid>`.
    pub name: Untrusted,
    /// QEMU's `-uuid`, lowercase; `None` when absent or malformed.
    pub uuid: Option<String>,
    pub comm: Untrusted,
    /// Shared rather than owned: every window hands each VMM to the families and advice, and a
    /// libvirt command line took 2.8–4.4 µs to copy (the fixtures' 31–48 arguments).
    pub qemu: Option<Arc<QemuCommandLine>>,
    /// Sorted by index; one per `kvm-vcpu` fd.
    pub vcpus: Vec<Vcpu>,
    /// Every thread of the process, sorted by tid.
    pub threads: Vec<VmmThread>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanResult {
    /// Sorted by pid.
    pub vmms: Vec<Vmm>,
    pub appeared: Vec<VmmId>,
    pub exited: Vec<VmmId>,
    /// What could not be read or understood this scan, for the log. Vanished processes are
    /// not problems.
    pub problems: Vec<String>,
    /// Each VMM's vhost kernel threads (by pid; every VMM has an entry, empty or not). Before
    /// Linux 6.4 a vhost worker is a kernel thread of its own, named `vhost-<owner pid>`,
    /// outside the VMM process (since, it is one of the VMM's threads); the listing finds kernel
    /// threads like any other process, so no extra read finds these.
    pub vhost_workers: BTreeMap<u32, Vec<u32>>,
}

/// A process found not to be a VMM.
#[derive(Debug, Clone)]
struct NotVmm {
    start_time: u64,
    comm: Untrusted,
    /// When the process started (its start time against the uptime), or, when that cannot
    /// be told, when it was first seen.
    since: Instant,
    /// Whether it was young when first seen: a process that was already running when kvmtop
    /// started is not checked again on each of the first scans.
    seen_young: bool,
    scans: u64,
    /// The VMM pid a vhost kernel thread names (`vhost-<pid>`).
    vhost_owner: Option<u32>,
}

#[derive(Debug, Clone)]
struct Known {
    vmm: Vmm,
    memory: VcpuMemory,
    /// The KVM file descriptors as last read.
    fds: KvmFds,
    /// Every thread as last read, with the scan it was first seen in.
    tasks: Vec<(TaskInfo, u64)>,
    /// Its lifecycle counter as last read, when discovery follows the kernel's counts.
    changes: Option<u64>,
    /// The scan in which it appeared or its counter last moved.
    changed_in: u64,
}

/// A non-VMM process is inspected again once every this many scans, spread over pids: the
/// safety net behind the listing and the kernel's sightings (module docs)…
pub const RECHECK_OTHERS_EVERY: u64 = 60;
/// …or less often on a host with more than this many times as many other processes, so that a
/// scan inspects about this many of them, however many there are: with 2,000 idle processes,
/// rechecking every 60 scans cost a third of a percent of a core.
pub const RECHECK_OTHERS_PER_SCAN: u64 = 8;
/// A known VMM's file descriptors and thread names are all read again once every this many
/// scans, spread over pids, whatever else says they changed. Everything that changes them is
/// seen sooner (a new thread moves the VMM's counter, a young thread's name is read until it
/// settles), so this is only the safety net: at every ten scans, 100 VMMs cost 85 `readlink`s,
/// 36 thread `stat`s and 27 `syscall` reads a second.
pub const REFRESH_VMM_EVERY: u64 = 30;
/// While the kernel programs say what exec'd and what changed, `/proc` is listed once every
/// this many scans (module docs). Listing 2,100 processes took 0.8 ms of system time, every
/// window; what the listing alone finds is a process that neither exec'd nor ran a vCPU (a VMM
/// forked by a daemon, paused), and every process's exit, already seen in the kernel's counts
/// for a VMM.
pub const LIST_EVERY: u64 = 10;

/// What one scan has seen so far.
#[derive(Debug, Default)]
struct Pass {
    /// Known VMMs still running.
    alive: HashSet<VmmId>,
    /// Pids of other processes still running.
    others: HashSet<u32>,
    /// Permission problems are summarised: without privileges there is one per process.
    denied: Vec<String>,
    appeared: Vec<VmmId>,
    problems: Vec<String>,
    /// The thread list of the process being scanned, when it has been read already.
    tids: Option<Vec<u32>>,
}

/// Hints kept for a pid not (yet) known as a VMM, until the next scan.
const MAX_PENDING_HINTS: usize = 4096;

#[derive(Debug)]
pub struct Discovery {
    proc: ProcRoot,
    known: HashMap<VmmId, Known>,
    /// By pid: a process is not `stat`ed on every scan, so its start time is what was read last.
    not_vmm: HashMap<u32, NotVmm>,
    pending_hints: Vec<(u32, u32, u32)>,
    /// Pids the kernel programs saw running a vCPU, to inspect at the next scan.
    active: HashSet<u32>,
    /// The processes that exec'd since the last scan, when the kernel programs said
    /// ([`Self::note_execs`]); `None` when they could not, and the next scan lists `/proc`.
    execs: Option<Vec<u32>>,
    /// Processes not known as VMMs that were young when last seen: inspected on each scan
    /// whether `/proc` is listed or not, until they are not young any more.
    young: HashSet<u32>,
    scans: u64,
    /// Scans that listed `/proc`; the safety net's turns are counted in these.
    listings: u64,
    /// The scan that last listed `/proc`, and the last one in which a VMM appeared.
    listed_in: Option<u64>,
    appeared_in: Option<u64>,
    /// When this scan started: how young a process is, is measured against one instant.
    now: Instant,
    /// The host's uptime at the start of this scan, which dates processes' start times.
    uptime: Option<f64>,
    /// A process that is not a VMM is checked again on every scan while it is this young
    /// (a VMM creates its VM shortly after it starts)…
    young_for: Duration,
    young_scans: u64,
    /// …and after that once every this many scans, spread over pids…
    recheck_every: u64,
    /// …or this many, when there are many processes ([`RECHECK_OTHERS_PER_SCAN`]).
    recheck_period: u64,
    /// See [`REFRESH_VMM_EVERY`].
    refresh_every: u64,
    /// This scan's lifecycle counters of the known VMMs, by pid, when the kernel counts them.
    changes: Option<HashMap<u32, u64>>,
}

impl Discovery {
    #[must_use]
    pub fn new(proc: ProcRoot) -> Self {
        Self {
            proc,
            known: HashMap::new(),
            not_vmm: HashMap::new(),
            pending_hints: Vec::new(),
            active: HashSet::new(),
            execs: None,
            young: HashSet::new(),
            scans: 0,
            listings: 0,
            listed_in: None,
            appeared_in: None,
            now: Instant::now(),
            uptime: None,
            young_for: Duration::from_secs(5),
            young_scans: 3,
            recheck_every: RECHECK_OTHERS_EVERY,
            recheck_period: RECHECK_OTHERS_EVERY,
            refresh_every: REFRESH_VMM_EVERY,
            changes: None,
        }
    }

    /// The pids of the VMMs known now: whose lifecycle counters [`Self::scan_following`] wants.
    #[must_use]
    pub fn vmm_pids(&self) -> Vec<u32> {
        self.known.keys().map(|id| id.pid).collect()
    }

    #[must_use]
    pub fn proc_root(&self) -> &Path {
        self.proc.path()
    }

    /// Records that thread `tid` of process `pid` was seen running vCPU `vcpu_index` (KVM's
    /// vcpu id), e.g. by the eBPF programs. Checked against the process's threads and vCPUs
    /// at the next scan.
    pub fn note_vcpu_thread(&mut self, pid: u32, tid: u32, vcpu_index: u32) {
        if let Some(known) = self.known.values_mut().find(|k| k.vmm.id.pid == pid) {
            known.memory.record(vcpu_index, tid, TidSource::Hint);
        } else if self.pending_hints.len() < MAX_PENDING_HINTS {
            self.pending_hints.push((pid, tid, vcpu_index));
        }
    }

    /// Records that the kernel programs saw process `pid` run a vCPU (a `KVM_RUN` returned to
    /// it, or a hardware exit in one of its threads): if it is not a known VMM, it is inspected
    /// at the next scan instead of waiting for the periodic recheck.
    pub fn note_kvm_activity(&mut self, pid: u32) {
        if self.active.len() < MAX_PENDING_HINTS {
            self.active.insert(pid);
        }
    }

    /// Records the processes that exec'd a program since the last scan, as the kernel
    /// programs saw them, or `None` when some may be missing (the programs are not attached,
    /// their ring overflowed): the next scan inspects these instead of listing `/proc`, unless
    /// the listing is due anyway ([`LIST_EVERY`]).
    pub fn note_execs(&mut self, pids: Option<Vec<u32>>) {
        self.execs = pids;
    }

    /// Whether a process not known as a VMM is inspected this scan, before anything of it is
    /// read: when it is new, exec'd, young, seen by the kernel, or (in a listing) its turn has
    /// come.
    fn due_for_check(&mut self, pid: u32, listing: bool) -> bool {
        let Some(entry) = self.not_vmm.get_mut(&pid) else {
            return true;
        };
        entry.scans += 1;
        let entry = &self.not_vmm[&pid];
        self.is_young(entry)
            || self.active.contains(&pid)
            || self.execs.as_ref().is_some_and(|e| e.contains(&pid))
            || (listing && (self.listings + u64::from(pid)).is_multiple_of(self.recheck_period))
    }

    /// Whether this scan lists `/proc`: always, unless the kernel programs said what exec'd and
    /// count the VMMs' changes; then on the safety net's turn and while a VMM is new.
    fn listing_due(&self) -> bool {
        let young_scans = self.young_scans.max(1);
        self.execs.is_none()
            || self.changes.is_none()
            || self
                .listed_in
                .is_none_or(|at| self.scans.saturating_sub(at) >= LIST_EVERY)
            || self
                .appeared_in
                .is_some_and(|at| self.scans.saturating_sub(at) <= young_scans)
    }

    /// Whether the process `stat` shows is not the one `not_vmm` remembers for its pid: the pid
    /// was reused (a process young or old by its start time), or the process exec'd another
    /// program, which is young from now (a wrapper that runs long before `exec qemu`).
    fn restart_if_new(&mut self, id: VmmId, comm: &Untrusted) {
        let Some(entry) = self.not_vmm.get(&id.pid) else {
            return;
        };
        let reused = entry.start_time != id.start_time;
        let exec = !reused && entry.comm != *comm;
        if reused || exec {
            let mut entry = self.not_vmm_entry(id, comm);
            if exec {
                entry.since = self.now;
                entry.seen_young = true;
            }
            if entry.seen_young {
                self.young.insert(id.pid);
            }
            self.not_vmm.insert(id.pid, entry);
        }
    }

    fn note_not_vmm(&mut self, id: VmmId, comm: &Untrusted) {
        if !self.not_vmm.contains_key(&id.pid) {
            let entry = self.not_vmm_entry(id, comm);
            if entry.seen_young {
                self.young.insert(id.pid);
            }
            self.not_vmm.insert(id.pid, entry);
        }
    }

    /// A process first seen as not a VMM now, dated by its start time: on a busy host most
    /// processes have run for long, and were each inspected on every scan while "young"
    /// counted from when kvmtop first saw them (2,000 idle processes took a second of system
    /// time in a five-second snapshot).
    fn not_vmm_entry(&self, id: VmmId, comm: &Untrusted) -> NotVmm {
        let now = self.now;
        // Checked: an uptime that is not a number of seconds (read from /proc, so untrusted)
        // dates nothing rather than panicking.
        let age = self.uptime.and_then(|up| {
            Duration::try_from_secs_f64(crate::host::proc::seconds_since_start(up, id.start_time))
                .ok()
        });
        NotVmm {
            start_time: id.start_time,
            comm: comm.clone(),
            since: age.and_then(|age| now.checked_sub(age)).unwrap_or(now),
            seen_young: age.is_none_or(|age| age < self.young_for),
            scans: 0,
            vhost_owner: None,
        }
    }

    /// Whether it is `pid`'s turn for a slow refresh of everything this scan.
    fn refresh_due(&self, pid: u32) -> bool {
        (self.scans + u64::from(pid)).is_multiple_of(self.refresh_every)
    }

    /// Whether a known VMM's `/proc` entries are read this scan: always, unless `changes`
    /// (read before this scan) holds its lifecycle counter; then when the counter moved on this
    /// scan or the last, while it has young threads, the kernel saw it run a vCPU, or its slow
    /// refresh is due.
    fn vmm_due(&mut self, id: VmmId) -> bool {
        let Some(count) = self.changes.as_ref().and_then(|c| c.get(&id.pid)).copied() else {
            return true;
        };
        let (scans, young_scans) = (self.scans, self.young_scans.max(1));
        let Some(known) = self.known.get_mut(&id) else {
            return true;
        };
        if known.changes != Some(count) {
            known.changes = Some(count);
            known.changed_in = scans;
        }
        let young_threads = known
            .tasks
            .iter()
            .any(|(_, first_seen)| scans.saturating_sub(*first_seen) < young_scans);
        scans.saturating_sub(known.changed_in) <= 1
            || young_threads
            || self.active.contains(&id.pid)
            || self.refresh_due(id.pid)
    }

    /// One pass over the procfs root, reading every known VMM.
    pub fn scan(&mut self) -> ScanResult {
        self.scan_following(None)
    }

    /// One pass over the procfs root, reading the known VMMs whose lifecycle counter in
    /// `changes` moved (module docs); every VMM, as [`Self::scan`], when `changes` is `None`
    /// (the kernel does not count) and for pids it lacks.
    pub fn scan_following(&mut self, changes: Option<HashMap<u32, u64>>) -> ScanResult {
        self.changes = changes;
        self.scans += 1;
        self.now = Instant::now();
        self.uptime = crate::host::proc::uptime(self.proc.path());
        let listing = self.listing_due();
        let mut pass = Pass::default();
        if listing {
            if let Err(e) = self.scan_listed(&mut pass) {
                self.execs = None;
                return ScanResult {
                    vmms: self.sorted_vmms(),
                    problems: vec![format!("listing processes: {e}")],
                    ..ScanResult::default()
                };
            }
        } else {
            self.scan_changed(&mut pass);
        }
        let Pass {
            alive,
            others,
            mut denied,
            mut appeared,
            mut problems,
            tids: _,
        } = pass;
        let mut exited: Vec<VmmId> = self
            .known
            .keys()
            .filter(|id| !alive.contains(id))
            .copied()
            .collect();
        exited.sort_unstable();
        for id in &exited {
            if let Some(gone) = self.known.remove(id) {
                log::debug!("VMM exited: pid {} ({})", id.pid, gone.vmm.name);
            }
        }
        for id in &appeared {
            if let Some(new) = self.known.get(id) {
                log::debug!(
                    "VMM found: pid {} ({}), {} vCPUs, in scan {}{}",
                    id.pid,
                    new.vmm.name,
                    new.vmm.vcpus.len(),
                    self.scans,
                    if listing { " (listing /proc)" } else { "" }
                );
            }
        }
        if listing {
            self.not_vmm.retain(|pid, _| others.contains(pid));
        }
        let young: Vec<u32> = self.young.drain().collect();
        for pid in young {
            if self.not_vmm.get(&pid).is_some_and(|e| self.is_young(e)) {
                self.young.insert(pid);
            }
        }
        if !appeared.is_empty() {
            self.appeared_in = Some(self.scans);
        }
        self.active.clear();
        self.execs = None;
        if !denied.is_empty() {
            let n = denied.len();
            denied.truncate(3);
            let remedy = if crate::privileges::may_inspect_any_process() {
                "a security policy or another user namespace refuses them even to root"
            } else {
                "run kvmtop as root, or give it CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, to see \
                 every VM"
            };
            problems.push(format!(
                "{n} {} could not be inspected (permission denied; pid {}{}): \
                 VMs they run are not shown; {remedy}",
                if n == 1 { "process" } else { "processes" },
                denied.join(", "),
                if n > 3 { ", …" } else { "" }
            ));
        }
        self.pending_hints.clear();
        appeared.sort_unstable();
        ScanResult {
            vmms: self.sorted_vmms(),
            appeared,
            exited,
            problems,
            vhost_workers: self.vhost_workers(),
        }
    }

    /// Lists `/proc` and inspects what is due among the processes listed: every process is
    /// seen, so a VMM missing from the listing has exited.
    fn scan_listed(&mut self, pass: &mut Pass) -> Result<(), ProcError> {
        let pids = self.proc.pids()?;
        self.listings += 1;
        self.listed_in = Some(self.scans);
        // The safety net's turns come in listings: spread so that a process is rechecked about
        // once every `recheck_every` scans, or `RECHECK_OTHERS_PER_SCAN` a scan on average
        // when there are many.
        let cadence = if self.execs.is_some() && self.changes.is_some() {
            LIST_EVERY
        } else {
            1
        };
        let others = u64::try_from(self.not_vmm.len()).unwrap_or(u64::MAX);
        self.recheck_period = self
            .recheck_every
            .div_ceil(cadence)
            .max(others / (RECHECK_OTHERS_PER_SCAN * cadence))
            .max(1);
        let known_pids: HashMap<u32, VmmId> = self.known.keys().map(|id| (id.pid, *id)).collect();
        for pid in pids {
            if let Some(&id) = known_pids.get(&pid)
                && !self.vmm_due(id)
            {
                pass.alive.insert(id);
            } else if known_pids.contains_key(&pid) || self.due_for_check(pid, true) {
                self.scan_pid(pid, pass);
            } else {
                pass.others.insert(pid);
            }
        }
        Ok(())
    }

    /// A scan without the listing: the known VMMs, read when due, and the processes that are
    /// new, young or seen running a vCPU. Nothing here grows with the host's other processes.
    fn scan_changed(&mut self, pass: &mut Pass) {
        let mut ids: Vec<VmmId> = self.known.keys().copied().collect();
        ids.sort_unstable();
        for &id in &ids {
            if self.vmm_due(id) {
                self.scan_pid(id.pid, pass);
            } else {
                pass.alive.insert(id);
            }
        }
        let mut candidates: Vec<u32> = (self.execs.iter().flatten())
            .chain(&self.active)
            .chain(&self.young)
            .copied()
            .filter(|pid| ids.binary_search_by_key(pid, |id| id.pid).is_err())
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        for pid in candidates {
            if self.due_for_check(pid, false) {
                self.scan_pid(pid, pass);
            }
        }
    }

    /// Whether a process not known as a VMM is young: new to kvmtop by its first scans, or
    /// started (or exec'd) less than `young_for` ago.
    fn is_young(&self, entry: &NotVmm) -> bool {
        (entry.seen_young && entry.scans < self.young_scans)
            || self.now.saturating_duration_since(entry.since) < self.young_for
    }

    /// The vhost kernel threads of each known VMM, from the kernel threads listed.
    fn vhost_workers(&self) -> BTreeMap<u32, Vec<u32>> {
        let mut found: BTreeMap<u32, Vec<u32>> =
            self.known.keys().map(|id| (id.pid, Vec::new())).collect();
        for (&tid, entry) in &self.not_vmm {
            if let Some(list) = entry.vhost_owner.and_then(|owner| found.get_mut(&owner)) {
                list.push(tid);
            }
        }
        for list in found.values_mut() {
            list.sort_unstable();
        }
        found
    }

    fn scan_pid(&mut self, pid: u32, pass: &mut Pass) {
        let stat = match self.proc.stat(pid) {
            Ok(stat) => stat,
            Err(ProcError::Gone) => return,
            Err(e) => {
                // A known VMM is kept as it was rather than reported as a false exit.
                if let Some(&id) = self.known.keys().find(|id| id.pid == pid) {
                    pass.alive.insert(id);
                }
                return pass.problems.push(format!("pid {pid}: {e}"));
            }
        };
        if stat.is_kernel_thread() {
            return self.note_kernel_thread(pid, &stat, pass);
        }
        let id = VmmId {
            pid,
            start_time: stat.start_time,
        };
        let known = self.known.contains_key(&id);
        if !known {
            self.restart_if_new(id, &stat.comm);
        }
        let fds = match self.vmm_fds(id, known) {
            Ok((fds, tids)) => {
                pass.tids = tids;
                fds
            }
            Err(ProcError::Gone) => return,
            Err(e) => {
                if known {
                    // Keep a known VMM as it was rather than report a false exit.
                    pass.alive.insert(id);
                } else {
                    self.note_not_vmm(id, &stat.comm);
                    pass.others.insert(pid);
                }
                if e.is_permission_denied() {
                    pass.denied.push(format!("{pid} ({})", stat.comm));
                } else {
                    pass.problems
                        .push(format!("pid {pid} ({}): {e}", stat.comm));
                }
                return;
            }
        };
        if fds.truncated {
            pass.problems.push(format!(
                "pid {pid} ({}): more than {MAX_FDS} open files; only the first were checked",
                stat.comm
            ));
        }
        if fds.vms == 0 {
            // Not a VMM, or one that closed its VM (then reported as exited).
            if known || !fds.vcpus.is_empty() {
                log::debug!("pid {pid} ({}): no KVM VM file open: not a VMM", stat.comm);
            }
            self.note_not_vmm(id, &stat.comm);
            pass.others.insert(pid);
            return;
        }
        if !known && !self.is_process(pid) {
            // The pid listed has since become a thread of another process (pids are reused),
            // and `/proc/PID` answers for it with that process's fds: its VM is found under
            // its own pid, not a second time under a thread's.
            self.note_not_vmm(id, &stat.comm);
            pass.others.insert(pid);
            return;
        }
        self.not_vmm.remove(&pid);
        if !known {
            let Some(vmm) = self.identify(id, &stat, &mut pass.problems) else {
                return;
            };
            self.known.insert(
                id,
                Known {
                    vmm,
                    memory: VcpuMemory::default(),
                    fds: fds.clone(),
                    tasks: Vec::new(),
                    changes: None,
                    changed_in: self.scans,
                },
            );
        }
        let tids = pass.tids.take();
        if self.refresh(id, &stat, &fds, tids, &mut pass.problems) {
            pass.alive.insert(id);
            if !known {
                pass.appeared.push(id);
            }
        } else if !known {
            // Gone between identification and refresh: it never really appeared.
            self.known.remove(&id);
        }
    }

    /// A kernel thread is never a VMM: remembered so that it is not read again on every scan,
    /// and by name, since a vhost worker is one.
    fn note_kernel_thread(&mut self, pid: u32, stat: &ProcStat, pass: &mut Pass) {
        let id = VmmId {
            pid,
            start_time: stat.start_time,
        };
        self.restart_if_new(id, &stat.comm);
        self.note_not_vmm(id, &stat.comm);
        if let Some(entry) = self.not_vmm.get_mut(&pid) {
            entry.vhost_owner = stat
                .comm
                .exact()
                .strip_prefix("vhost-")
                .and_then(|owner| owner.parse().ok());
        }
        pass.others.insert(pid);
    }

    /// The KVM file descriptors of process `id`: read for a process being checked, and for a
    /// known VMM when its thread list changed (vCPUs are created and removed with their
    /// threads), the kernel saw it, or its slow refresh is due; otherwise as last read.
    /// Also returns the thread list when it was read for this.
    fn vmm_fds(&self, id: VmmId, known: bool) -> Result<(KvmFds, Option<Vec<u32>>), ProcError> {
        let Some(entry) = self.known.get(&id).filter(|_| known) else {
            return Ok((self.proc.kvm_fds(id.pid)?, None));
        };
        if self.refresh_due(id.pid) || self.active.contains(&id.pid) {
            return Ok((self.proc.kvm_fds(id.pid)?, None));
        }
        let tids = self.proc.tasks(id.pid)?;
        // A process on its way out loses its fd directory before its thread list changes.
        let fd_dir = self.proc.path().join(id.pid.to_string()).join("fd");
        let fds = if fd_dir.is_dir() && tids.iter().eq(entry.tasks.iter().map(|(t, _)| &t.tid)) {
            entry.fds.clone()
        } else {
            self.proc.kvm_fds(id.pid)?
        };
        Ok((fds, Some(tids)))
    }

    /// Whether `pid` is a process of its own rather than a thread of another one. A status
    /// that cannot be read or understood proves nothing: the reads that follow tell whether the
    /// process is still there.
    fn is_process(&self, pid: u32) -> bool {
        crate::host::proc::tgid(self.proc.path(), pid).is_none_or(|tgid| tgid == pid)
    }

    fn sorted_vmms(&self) -> Vec<Vmm> {
        let mut vmms: Vec<Vmm> = self.known.values().map(|k| k.vmm.clone()).collect();
        vmms.sort_by_key(|v| v.id);
        vmms
    }
}
