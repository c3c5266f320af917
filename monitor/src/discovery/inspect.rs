//! Reading one VMM: what it is (once, when it appears) and its vCPUs and threads (every scan).

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::Untrusted;

use super::procfs::{KvmFds, ProcStat};
use super::threads::{TaskInfo, map_vcpus};
use super::{Discovery, ProcError, QemuCommandLine, TidSource, Vmm, VmmId, VmmKind};

impl Discovery {
    /// What does not change while a VMM runs: its kind, names and command line. `None` when
    /// the process is gone.
    pub(super) fn identify(
        &self,
        id: VmmId,
        stat: &ProcStat,
        problems: &mut Vec<String>,
    ) -> Option<Vmm> {
        let pid = id.pid;
        let (args, truncated) = match self.proc.cmdline(pid) {
            Ok(cmdline) => cmdline,
            Err(ProcError::Gone) => return None,
            Err(e) => {
                problems.push(format!("pid {pid} ({}): {e}", stat.comm));
                (Vec::new(), false)
            }
        };
        // Unreadable for a zombie or a process being torn down; refresh() notices those.
        let exe = self.proc.exe(pid).ok();
        let argv0 = args
            .first()
            .map(|a| String::from_utf8_lossy(a).into_owned());
        let basename = |path: &str| path.rsplit('/').next().unwrap_or_default().to_owned();
        let is_qemu = exe
            .iter()
            .chain(argv0.iter())
            .map(|p| basename(p))
            .chain(std::iter::once(stat.comm.exact().to_owned()))
            .any(|name| name.starts_with("qemu-system-") || name.starts_with("qemu-kvm"));
        let qemu = is_qemu.then(|| {
            let mut cmd = QemuCommandLine::parse(&args);
            if truncated {
                cmd.warnings
                    .push("the command line was cut at the read limit".to_owned());
            }
            Arc::new(cmd)
        });
        let kind = if is_qemu {
            VmmKind::Qemu
        } else {
            VmmKind::Other {
                exe: exe
                    .or(argv0)
                    .map_or_else(|| stat.comm.clone(), Untrusted::from),
            }
        };
        let name = qemu
            .as_ref()
            .and_then(|q| q.name.clone())
            .unwrap_or_else(|| format!("{}-{pid}", stat.comm.exact()))
            .into();
        Some(Vmm {
            id,
            kind,
            name,
            uuid: qemu.as_ref().and_then(|q| q.uuid.clone()),
            comm: stat.comm.clone(),
            qemu,
            vcpus: Vec::new(),
            threads: Vec::new(),
        })
    }

    fn apply_pending_hints(&mut self, id: VmmId) {
        let Some(known) = self.known.get_mut(&id) else {
            return;
        };
        for &(_, tid, vcpu) in self.pending_hints.iter().filter(|h| h.0 == id.pid) {
            known.memory.record(vcpu, tid, TidSource::Hint);
        }
    }

    /// Re-reads what changes: vCPUs (hot-plug), threads and the vCPU→thread mapping.
    /// `tids` is the thread list when the caller read it already. `false` when the process is
    /// gone.
    pub(super) fn refresh(
        &mut self,
        id: VmmId,
        stat: &ProcStat,
        fds: &KvmFds,
        tids: Option<Vec<u32>>,
        problems: &mut Vec<String>,
    ) -> bool {
        let pid = id.pid;
        let tids = match tids.map_or_else(|| self.proc.tasks(pid), Ok) {
            Ok(tids) => tids,
            Err(ProcError::Gone) => return false,
            Err(e) => {
                problems.push(format!("pid {pid} ({}): {e}", stat.comm));
                return true;
            }
        };
        let full = self.refresh_due(pid);
        let before: HashMap<u32, (TaskInfo, u64)> = self
            .known
            .get_mut(&id)
            .map(|k| std::mem::take(&mut k.tasks))
            .unwrap_or_default()
            .into_iter()
            .map(|(task, first_seen)| (task.tid, (task, first_seen)))
            .collect();
        let mut tasks = Vec::with_capacity(tids.len());
        for tid in tids {
            let first_seen = before.get(&tid).map_or(self.scans, |(_, scan)| *scan);
            // A thread's name is read while it is young (VMMs name a thread just after they
            // create it) and on the slow refresh; otherwise it is as last read.
            let young = self.scans.saturating_sub(first_seen) < self.young_scans.max(1);
            if let Some((task, _)) = before.get(&tid).filter(|_| !young && !full) {
                tasks.push((task.clone(), first_seen));
                continue;
            }
            match self.proc.task_stat(pid, tid) {
                Ok(task) => tasks.push((
                    TaskInfo {
                        tid,
                        worker: task.is_kernel_worker(),
                        comm: task.comm,
                    },
                    first_seen,
                )),
                Err(ProcError::Gone) => {}
                Err(e) => {
                    problems.push(format!("pid {pid} ({}): {e}", stat.comm));
                    if let Ok(comm) = self.proc.task_comm(pid, tid) {
                        tasks.push((
                            TaskInfo {
                                tid,
                                comm,
                                worker: false,
                            },
                            first_seen,
                        ));
                    }
                }
            }
        }
        self.apply_pending_hints(id);
        let proc = &self.proc;
        let Some(known) = self.known.get_mut(&id) else {
            return false;
        };
        // `syscall` files are read only while a vCPU has no thread, or on the slow refresh:
        // once every vCPU has one, better evidence can wait.
        let probe = full
            || known.vmm.vcpus.len() != fds.vcpus.len()
            || known.vmm.vcpus.iter().any(|v| v.tid.is_none());
        let mut syscall_problem = None;
        let infos: Vec<TaskInfo> = tasks.iter().map(|(task, _)| task.clone()).collect();
        let (vcpus, threads) = map_vcpus(
            pid,
            &fds.vcpus,
            &infos,
            known.vmm.qemu.as_deref(),
            &mut known.memory,
            |tid| {
                if !probe {
                    return None;
                }
                match proc.task_syscall(pid, tid) {
                    Ok(state) => state,
                    Err(ProcError::Gone) => None,
                    Err(e) => {
                        syscall_problem.get_or_insert(e);
                        None
                    }
                }
            },
        );
        if let Some(e) = syscall_problem {
            problems.push(format!(
                "pid {pid} ({}): {e}; vCPU threads can only be found by name",
                stat.comm
            ));
        }
        known.vmm.comm.clone_from(&stat.comm);
        known.vmm.vcpus = vcpus;
        known.vmm.threads = threads;
        known.fds = fds.clone();
        known.tasks = tasks;
        true
    }
}
