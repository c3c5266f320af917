//! Which thread of a VMM runs which vCPU, and what its other threads are.
//!
//! Evidence, strongest first:
//! 1. QEMU names vCPU threads `CPU n/KVM` when started with `-name …,debug-threads=on`.
//! 2. A thread seen inside `ioctl(vcpu_fd, KVM_RUN)` runs that vCPU (any VMM). A thread on a
//!    CPU shows `running` instead, so this is retried on later scans and remembered.
//! 3. A tid reported through [`super::Discovery::note_vcpu_thread`]; ranks with 2, the
//!    newest of the two wins.
//! 4. A name such as `vcpu0` or `fc_vcpu 0` in a non-QEMU VMM; recomputed every scan, used
//!    only when nothing better is known.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::model::Untrusted;

use super::Vcpu;
use super::procfs::SyscallState;
use super::qemu::{QemuCommandLine, Smp};

/// `ioctl`'s system call number, as `/proc/PID/task/TID/syscall` reports it.
#[cfg(target_arch = "x86_64")]
pub(crate) const IOCTL_NR: i64 = 16;
#[cfg(target_arch = "aarch64")]
pub(crate) const IOCTL_NR: i64 = 29;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const IOCTL_NR: i64 = -2;

/// `_IO(KVMIO, 0x80)`, the same on every architecture.
pub(crate) const KVM_RUN: u64 = 0xae80;

/// How a vCPU's thread was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TidSource {
    QemuThreadName,
    KvmRunSyscall,
    Hint,
    ThreadName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadRole {
    /// Runs the vCPU with this KVM vcpu id.
    Vcpu(u32),
    /// The process's first thread (QEMU's main loop).
    Main,
    /// A QEMU `-object iothread` (named `IO <id>` with debug-threads).
    IoThread(Untrusted),
    /// A kernel worker living in the process: vhost, KVM's NX huge-page recovery, `io_uring`.
    KernelWorker(Untrusted),
    Other(Untrusted),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmmThread {
    pub tid: u32,
    pub comm: Untrusted,
    pub role: ThreadRole,
}

/// One thread as read from `/proc/PID/task/TID/stat`.
#[derive(Debug, Clone)]
pub(crate) struct TaskInfo {
    pub tid: u32,
    pub comm: Untrusted,
    /// Kernel worker threads copy their creator's registers, so their `syscall` file can show
    /// a `KVM_RUN` they never make; they are never vCPU threads.
    pub worker: bool,
}

/// Evidence remembered across scans for one VMM: vcpu id → (tid, source).
#[derive(Debug, Clone, Default)]
pub(crate) struct VcpuMemory {
    observed: HashMap<u32, (u32, TidSource)>,
}

impl VcpuMemory {
    /// One thread runs one vCPU in every VMM known here, so new evidence for a tid replaces
    /// whatever that tid was thought to run before.
    pub fn record(&mut self, vcpu: u32, tid: u32, source: TidSource) {
        self.observed.retain(|_, (t, _)| *t != tid);
        self.observed.insert(vcpu, (tid, source));
    }
}

/// `CPU n/KVM` → n (QEMU's CPU index).
fn qemu_cpu_index(comm: &str) -> Option<u32> {
    comm.strip_prefix("CPU ")?
        .strip_suffix("/KVM")?
        .parse()
        .ok()
}

/// `vcpu0`, `fc_vcpu 0`, `crosvm_vcpu0` → 0.
fn generic_vcpu_number(comm: &str) -> Option<u32> {
    if !comm.to_ascii_lowercase().contains("vcpu") {
        return None;
    }
    let digits = comm.len() - comm.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    comm[comm.len() - digits..].parse().ok()
}

/// KVM's vcpu id for QEMU's CPU index. On x86 QEMU uses the APIC id, which packs each
/// topology level into a power-of-two bit field, so it differs from the index when a level
/// count is not a power of two (e.g. 3 cores).
fn qemu_vcpu_id(index: u32, qemu: &QemuCommandLine) -> Option<u32> {
    let binary = qemu.binary.as_deref().unwrap_or_default();
    let binary = binary.rsplit('/').next().unwrap_or_default();
    let non_x86 = [
        "aarch64",
        "arm",
        "ppc",
        "s390",
        "riscv",
        "mips",
        "loongarch",
    ];
    if non_x86.iter().any(|arch| binary.contains(arch)) {
        return Some(index);
    }
    qemu.smp
        .as_ref()
        .map_or(Some(index), |smp| x86_apic_id(index, smp))
}

fn x86_apic_id(index: u32, smp: &Smp) -> Option<u32> {
    // Only `-smp N`: every level but one has count 1, so the APIC id is the index.
    if [smp.sockets, smp.dies, smp.modules, smp.cores, smp.threads]
        .iter()
        .all(Option::is_none)
    {
        return Some(index);
    }
    let threads = smp.threads.unwrap_or(1).max(1);
    let cores = smp.cores.unwrap_or(1).max(1);
    let modules = smp.modules.unwrap_or(1).max(1);
    let dies = smp.dies.unwrap_or(1).max(1);
    let width = |n: u32| {
        if n <= 1 {
            0
        } else {
            32 - (n - 1).leading_zeros()
        }
    };
    let smt = index % threads;
    let core = (index / threads) % cores;
    let module = (index / threads.checked_mul(cores)?) % modules;
    let per_die = threads.checked_mul(cores)?.checked_mul(modules)?;
    let die = (index / per_die) % dies;
    let pkg = index / per_die.checked_mul(dies)?;
    let core_off = width(threads);
    let module_off = core_off + width(cores);
    let die_off = module_off + width(modules);
    let pkg_off = die_off + width(dies);
    Some(
        pkg.checked_shl(pkg_off)?
            | die.checked_shl(die_off)?
            | module.checked_shl(module_off)?
            | core.checked_shl(core_off)?
            | smt,
    )
}

/// Maps vCPUs to threads and classifies every thread.
pub(crate) fn map_vcpus(
    pid: u32,
    vcpu_fds: &[(u32, u32)],
    tasks: &[TaskInfo],
    qemu: Option<&QemuCommandLine>,
    memory: &mut VcpuMemory,
    mut read_syscall: impl FnMut(u32) -> Option<SyscallState>,
) -> (Vec<Vcpu>, Vec<VmmThread>) {
    let ids: BTreeSet<u32> = vcpu_fds.iter().map(|&(_, id)| id).collect();
    let mut lowest_fd: BTreeMap<u32, u32> = BTreeMap::new();
    for &(fd, id) in vcpu_fds {
        lowest_fd
            .entry(id)
            .and_modify(|lowest| *lowest = (*lowest).min(fd))
            .or_insert(fd);
    }
    let candidates: HashSet<u32> = tasks.iter().filter(|t| !t.worker).map(|t| t.tid).collect();
    memory
        .observed
        .retain(|id, (tid, _)| ids.contains(id) && candidates.contains(tid));

    let mut named = BTreeMap::new();
    if let Some(qemu) = qemu {
        for task in tasks.iter().filter(|t| !t.worker) {
            let id = qemu_cpu_index(task.comm.exact()).and_then(|i| qemu_vcpu_id(i, qemu));
            if let Some(id) = id.filter(|id| ids.contains(id)) {
                named.insert(id, task.tid);
            }
        }
    }

    let unmapped = ids
        .iter()
        .any(|id| !named.contains_key(id) && !memory.observed.contains_key(id));
    if unmapped {
        let fd_to_id: HashMap<u32, u32> = vcpu_fds.iter().copied().collect();
        let taken: HashSet<u32> = named
            .values()
            .copied()
            .chain(memory.observed.values().map(|&(tid, _)| tid))
            .collect();
        for task in tasks
            .iter()
            .filter(|t| !t.worker && !taken.contains(&t.tid))
        {
            if let Some(SyscallState::InSyscall { nr, args }) = read_syscall(task.tid) {
                let vcpu = u32::try_from(args[0]).ok().and_then(|fd| fd_to_id.get(&fd));
                // The request is an `unsigned int`; ignore whatever the upper half holds.
                if let (true, Some(&id)) =
                    (nr == IOCTL_NR && args[1] & 0xffff_ffff == KVM_RUN, vcpu)
                {
                    memory.record(id, task.tid, TidSource::KvmRunSyscall);
                }
            }
        }
    }

    let mut by_name = BTreeMap::new();
    for task in tasks.iter().filter(|t| !t.worker) {
        if let Some(n) = generic_vcpu_number(task.comm.exact()).filter(|n| ids.contains(n)) {
            by_name.entry(n).or_insert(task.tid);
        }
    }

    let vcpus: Vec<Vcpu> = ids
        .iter()
        .map(|&index| {
            let found = named
                .get(&index)
                .map(|&tid| (tid, TidSource::QemuThreadName))
                .or_else(|| memory.observed.get(&index).copied())
                .or_else(|| by_name.get(&index).map(|&tid| (tid, TidSource::ThreadName)));
            Vcpu {
                index,
                fd: lowest_fd.get(&index).copied().unwrap_or_default(),
                tid: found.map(|(tid, _)| tid),
                tid_source: found.map(|(_, source)| source),
            }
        })
        .collect();

    let mut vcpu_of: HashMap<u32, u32> = HashMap::new();
    for vcpu in vcpus.iter().rev() {
        if let Some(tid) = vcpu.tid {
            vcpu_of.insert(tid, vcpu.index);
        }
    }
    let threads = tasks
        .iter()
        .map(|task| VmmThread {
            tid: task.tid,
            comm: task.comm.clone(),
            role: role(task, pid, vcpu_of.get(&task.tid).copied()),
        })
        .collect();
    (vcpus, threads)
}

fn role(task: &TaskInfo, pid: u32, vcpu: Option<u32>) -> ThreadRole {
    if let Some(id) = vcpu {
        ThreadRole::Vcpu(id)
    } else if task.worker {
        ThreadRole::KernelWorker(task.comm.clone())
    } else if task.tid == pid {
        ThreadRole::Main
    } else if let Some(id) = task.comm.exact().strip_prefix("IO ") {
        ThreadRole::IoThread(id.into())
    } else {
        ThreadRole::Other(task.comm.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names() {
        assert_eq!(qemu_cpu_index("CPU 3/KVM"), Some(3));
        assert_eq!(qemu_cpu_index("CPU 3/TCG"), None);
        assert_eq!(qemu_cpu_index("CPU x/KVM"), None);
        assert_eq!(generic_vcpu_number("vcpu0"), Some(0));
        assert_eq!(generic_vcpu_number("fc_vcpu 12"), Some(12));
        assert_eq!(generic_vcpu_number("crosvm_vcpu3"), Some(3));
        assert_eq!(generic_vcpu_number("vcpu_run"), None);
        assert_eq!(generic_vcpu_number("worker1"), None);
        assert_eq!(generic_vcpu_number("vcpu99999999999"), None);
    }

    #[test]
    fn apic_ids_follow_qemu_topology() {
        let smp = |sockets, cores, threads| Smp {
            sockets: Some(sockets),
            cores: Some(cores),
            threads: Some(threads),
            ..Smp::default()
        };
        // Powers of two: the APIC id is the index.
        let ids: Vec<_> = (0..8)
            .map(|i| x86_apic_id(i, &smp(2, 2, 2)).unwrap())
            .collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7]);
        // 3 cores take 2 bits: socket 1 starts at APIC id 4.
        let ids: Vec<_> = (0..6)
            .map(|i| x86_apic_id(i, &smp(2, 3, 1)).unwrap())
            .collect();
        assert_eq!(ids, [0, 1, 2, 4, 5, 6]);
        // 3 threads take 2 bits.
        let ids: Vec<_> = (0..6)
            .map(|i| x86_apic_id(i, &smp(1, 2, 3)).unwrap())
            .collect();
        assert_eq!(ids, [0, 1, 2, 4, 5, 6]);
        assert_eq!(
            x86_apic_id(
                5,
                &Smp {
                    cpus: Some(8),
                    ..Smp::default()
                }
            ),
            Some(5)
        );
        let huge = smp(u32::MAX, u32::MAX, u32::MAX);
        let _ = x86_apic_id(u32::MAX, &huge);
    }
}
