//! Which threads the scheduler programs watch, and what each is to its VM.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasher,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    discovery::{ThreadRole, Vmm},
    host::proc::{thread_runnable, vhost_workers},
    model::sched::ThreadClass,
};

/// The class of a thread discovery has classified.
#[must_use]
pub fn class_of(role: &ThreadRole) -> ThreadClass {
    match role {
        ThreadRole::Vcpu(_) => ThreadClass::Vcpu,
        ThreadRole::Main => ThreadClass::Main,
        ThreadRole::IoThread(_) => ThreadClass::IoThread,
        ThreadRole::KernelWorker(comm) if comm.exact().starts_with("vhost-") => ThreadClass::Vhost,
        ThreadRole::Other(comm) if comm == "worker" => ThreadClass::Worker,
        ThreadRole::KernelWorker(_) | ThreadRole::Other(_) => ThreadClass::Other,
    }
}

/// One thread to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedThread {
    pub tid: u32,
    /// The VMM process it works for.
    pub pid: u32,
    /// That process's start time: with `pid`, the VM's identity, so that the threads of a new
    /// process on a reused pid start from zero.
    pub vm_start: u64,
    pub class: ThreadClass,
}

/// Every thread of every VM: the process's own threads and the vhost kernel threads that serve
/// it from outside the process (`vhost` maps a VMM pid to them).
#[must_use]
pub fn threads_of<S: BuildHasher>(
    vmms: &[Vmm],
    vhost: &HashMap<u32, Vec<u32>, S>,
) -> Vec<WatchedThread> {
    let mut threads = Vec::new();
    for vmm in vmms {
        let watched = |tid, class| WatchedThread {
            tid,
            pid: vmm.id.pid,
            vm_start: vmm.id.start_time,
            class,
        };
        // A vCPU thread learnt from the kernel after discovery classified the threads.
        let vcpu_tids: HashSet<u32> = vmm.vcpus.iter().filter_map(|v| v.tid).collect();
        threads.extend(vmm.threads.iter().map(|t| {
            let class = if vcpu_tids.contains(&t.tid) {
                ThreadClass::Vcpu
            } else {
                class_of(&t.role)
            };
            watched(t.tid, class)
        }));
        // vCPU threads discovery learnt from the kernel but not from the thread list.
        for tid in vmm.vcpus.iter().filter_map(|v| v.tid) {
            if !vmm.threads.iter().any(|t| t.tid == tid) {
                threads.push(watched(tid, ThreadClass::Vcpu));
            }
        }
        for &tid in vhost.get(&vmm.id.pid).into_iter().flatten() {
            threads.push(watched(tid, ThreadClass::Vhost));
        }
    }
    threads
}

/// Whether a thread is runnable now (on a CPU or waiting for one); false when unknown.
#[must_use]
pub fn is_runnable(proc_root: &Path, thread: &WatchedThread) -> bool {
    thread_runnable(proc_root, thread.pid, thread.tid)
}

/// How often `/proc` is scanned for vhost kernel threads: it reads one small file per process.
const VHOST_SCAN_PERIOD: Duration = Duration::from_secs(10);

/// Finds the vhost kernel threads of VMs. Before Linux 6.4 a vhost worker is a kernel thread of
/// its own, named `vhost-<owner pid>`, outside the VMM process; since, it is a thread of the
/// VMM and discovery lists it. A top-level `/proc` entry with such a name is the former kind.
#[derive(Debug, Default)]
pub struct VhostScan {
    last: Option<Instant>,
    found: HashMap<u32, Vec<u32>>,
}

impl VhostScan {
    /// The vhost kernel threads of `vmm_pids`, rescanning when the last scan is old or a VM
    /// appeared since.
    pub fn threads(
        &mut self,
        proc_root: &Path,
        vmm_pids: &HashSet<u32>,
    ) -> &HashMap<u32, Vec<u32>> {
        let stale = self.last.is_none_or(|at| at.elapsed() >= VHOST_SCAN_PERIOD);
        let new_vm = vmm_pids.iter().any(|pid| !self.found.contains_key(pid));
        if stale || new_vm {
            self.found = vhost_workers(proc_root, vmm_pids);
            self.last = Some(Instant::now());
        }
        &self.found
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::discovery::{VmmId, VmmKind, VmmThread};

    fn vmm(pid: u32, threads: &[(u32, ThreadRole)]) -> Vmm {
        Vmm {
            id: VmmId { pid, start_time: 7 },
            kind: VmmKind::Qemu,
            name: format!("vm{pid}").into(),
            uuid: None,
            comm: "qemu-system-x86".into(),
            qemu: None,
            vcpus: vec![],
            threads: threads
                .iter()
                .map(|(tid, role)| VmmThread {
                    tid: *tid,
                    comm: String::new().into(),
                    role: role.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn qemu_threads_fall_into_classes() {
        use ThreadClass::{IoThread, Main, Other, Vcpu, Vhost, Worker};
        let vm = vmm(
            100,
            &[
                (100, ThreadRole::Main),
                (101, ThreadRole::Other("call_rcu".into())),
                (102, ThreadRole::Vcpu(0)),
                (103, ThreadRole::IoThread("iothread0".into())),
                (104, ThreadRole::Other("worker".into())),
                (105, ThreadRole::KernelWorker("vhost-100".into())),
                (106, ThreadRole::KernelWorker("kvm-nx-lpage-re".into())),
            ],
        );
        let vhost = HashMap::from([(100, vec![900])]);
        let classes: Vec<(u32, ThreadClass)> = threads_of(&[vm], &vhost)
            .iter()
            .map(|t| (t.tid, t.class))
            .collect();
        assert_eq!(
            classes,
            [
                (100, Main),
                (101, Other),
                (102, Vcpu),
                (103, IoThread),
                (104, Worker),
                (105, Vhost),
                (106, Other),
                (900, Vhost)
            ]
        );
    }

    #[test]
    fn vhost_kernel_threads_are_found_by_name() {
        let proc = tempfile::tempdir().unwrap();
        for (pid, comm) in [
            (1, "systemd"),
            (50, "vhost-100"),
            (51, "vhost-100"),
            (52, "vhost-200"),
            (53, "vhost-abc"),
        ] {
            let dir = proc.path().join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        }
        fs::create_dir_all(proc.path().join("self")).unwrap();
        let mut scan = VhostScan::default();
        let found = scan.threads(proc.path(), &HashSet::from([100, 300]));
        assert_eq!(found.get(&100), Some(&vec![50, 51]));
        assert_eq!(found.get(&300), Some(&vec![]));
        assert_eq!(found.get(&200), None, "not a VM");
    }
}
