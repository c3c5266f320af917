//! Which threads the scheduler programs watch, and what each is to its VM.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
};

use crate::{
    discovery::{ThreadRole, Vmm},
    host::proc::thread_runnable,
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
pub fn threads_of(vmms: &[Vmm], vhost: &BTreeMap<u32, Vec<u32>>) -> Vec<WatchedThread> {
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

#[cfg(test)]
mod tests {
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
        let vhost = BTreeMap::from([(100, vec![900])]);
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
}
