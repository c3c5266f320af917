//! Who held the CPU when a VMM thread got it after waiting: counted in the kernel per (VM,
//! process of the task switched out), at the switch that ends each run-queue wait.
//!
//! The task switched out is the current task when `sched_switch` fires, so its process is known
//! exactly without reading `task_struct`. The task that preempted a thread (`next` at the switch
//! out) is not always the one that held the CPU longest while it waited, nor is its process in
//! the tracepoint record; the one giving the CPU back is the last of them, and it is.

use foldhash::{HashMap, HashSet};
use std::{
    hash::BuildHasher,
    path::Path,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use monitor_common::sched::CONTENDER_OTHER;

pub use super::contender_span::{Contender, ContenderTotals, TOP_CONTENDERS};
use super::contender_span::ContenderSpan;
use crate::{
    discovery::Vmm,
    host::proc::comm,
    model::{
        self, Untrusted,
        sched::{ContenderFigures, ContenderKind},
    },
};

/// Which contender processes have exited, so that their keys can leave the kernel map (whose
/// capacity would otherwise fill with short-lived processes, every later wait then counted under
/// "other").
///
/// A key is removed only at the check after the one that found its process gone, with a reading
/// in between: that reading has the process's final totals, so the window ending there counts
/// all of its waits, and the next window, from which the key is missing, had none.
#[derive(Debug, Default)]
pub struct ExitedContenders {
    /// The check period of the last check.
    checked_at: u64,
    /// The contender pids the last check found gone.
    gone: HashSet<u32>,
}

impl ExitedContenders {
    /// Whether a check is due, `period` being the count of check periods so far: once per
    /// period. A true answer is taken to mean the check is made now.
    pub fn due(&mut self, period: u64) -> bool {
        if period == self.checked_at {
            return false;
        }
        self.checked_at = period;
        true
    }

    /// Forgets what earlier checks found (when a check cannot be made).
    pub fn clear(&mut self) {
        self.gone.clear();
    }

    /// The contender pids whose keys can be removed now, of the `contenders` in the map:
    /// those gone now and at the previous check. The idle task, the overflow key and the `live`
    /// processes (the VMMs discovery has just seen) are never removed; `exists` is asked once per
    /// other pid.
    pub fn check(
        &mut self,
        contenders: HashSet<u32>,
        live: &HashSet<u32>,
        exists: impl Fn(u32) -> bool,
    ) -> HashSet<u32> {
        let gone: HashSet<u32> = contenders
            .into_iter()
            .filter(|&pid| {
                pid != 0 && pid != CONTENDER_OTHER && !live.contains(&pid) && !exists(pid)
            })
            .collect();
        let (remove, newly): (HashSet<u32>, HashSet<u32>) =
            gone.into_iter().partition(|pid| self.gone.contains(pid));
        self.gone = newly;
        remove
    }
}

/// The contenders of `vm` over the last span of the contender map (see
/// [`super::contender_span`]), most wait first: the top [`TOP_CONTENDERS`] named, the rest summed
/// as "other".
#[must_use]
pub fn listed<S: BuildHasher>(
    vm: &model::Vm,
    vmms: &std::collections::HashMap<u32, &Vmm, S>,
    span: &ContenderSpan,
    proc_root: &Path,
    process_names: &ProcessNames,
) -> Vec<ContenderFigures> {
    let Some(ranked) = span.vms.get(&vm.pid) else {
        return Vec::new();
    };
    let total: u64 = ranked.iter().map(|(_, d)| d.wait_ns).sum();
    ranked
        .iter()
        .map(|&(contender, totals)| {
            let (pid, name, kind) = match contender {
                Contender::Other => (None, "other".into(), ContenderKind::Other),
                Contender::Idle => (None, "idle".into(), ContenderKind::Idle),
                Contender::Process(pid) if pid == vm.pid => {
                    (Some(pid), vm.name.clone(), ContenderKind::SameVm)
                }
                Contender::Process(pid) => match vmms.get(&pid) {
                    Some(other) => (Some(pid), other.name.clone(), ContenderKind::Vm),
                    None => (Some(pid), process_names.get(proc_root, pid), ContenderKind::Host),
                },
            };
            contender_figures(pid, name, kind, totals, total)
        })
        .collect()
}

fn contender_figures(
    pid: Option<u32>,
    name: Untrusted,
    kind: ContenderKind,
    totals: ContenderTotals,
    all_ns: u64,
) -> ContenderFigures {
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds, far below 2^52")]
    let share = if all_ns > 0 {
        totals.wait_ns as f64 / all_ns as f64
    } else {
        0.0
    };
    ContenderFigures {
        pid,
        name,
        kind,
        waits: totals.waits,
        wait_ns: totals.wait_ns,
        share,
    }
}

/// Host processes' command names, each read once and kept for [`NAMES_KEPT_FOR`] windows: the
/// same contenders come back window after window, and a name rarely changes.
#[derive(Debug, Default)]
pub struct ProcessNames {
    /// pid → (name, the window it was read in).
    names: Mutex<HashMap<u32, (Untrusted, u64)>>,
    windows: AtomicU64,
}

/// See [`ProcessNames`].
pub const NAMES_KEPT_FOR: u64 = 10;
/// Names kept at most; beyond it the oldest half is read again.
const NAMES_CAPACITY: usize = 4096;

impl ProcessNames {
    /// Called once per window, before its names are asked for.
    pub fn next_window(&self) {
        let window = self.windows.fetch_add(1, Ordering::Relaxed) + 1;
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.retain(|_, (_, read)| window.saturating_sub(*read) < NAMES_KEPT_FOR);
        if names.len() > NAMES_CAPACITY {
            names.clear();
        }
    }

    /// A process's command name, or its pid when it has gone.
    fn get(&self, proc_root: &Path, pid: u32) -> Untrusted {
        let window = self.windows.load(Ordering::Relaxed);
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names
            .entry(pid)
            .or_insert_with(|| {
                let name =
                    comm(proc_root, pid).unwrap_or_else(|| Untrusted::new(format!("pid {pid}")));
                (name, window)
            })
            .0
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use foldhash::{HashMapExt, HashSetExt};

    use super::*;

    #[test]
    fn a_vm_gets_its_own_contenders_idle_and_other_included() {
        let snapshot = crate::testing::fixture::snapshot();
        let web = &snapshot.vms[0];
        let totals = |waits: u64| ContenderTotals {
            waits,
            wait_ns: waits * 1_000,
        };
        let mut now = HashMap::new();
        // Keys of the VMs on either side of web's pid, and web's own of every kind.
        for pid in [web.pid - 1, web.pid, web.pid + 1] {
            for contender in [Contender::Idle, Contender::Process(7), Contender::Other] {
                now.insert((pid, contender), totals(u64::from(pid)));
            }
        }
        now.insert((web.pid, Contender::Process(u32::MAX)), totals(1));
        // Another VM and web itself are named as such.
        let other_vm = Vmm {
            id: crate::discovery::VmmId {
                pid: 8,
                start_time: 1,
            },
            kind: crate::discovery::VmmKind::Qemu,
            name: "db".into(),
            uuid: None,
            comm: "qemu".into(),
            qemu: None,
            vcpus: Vec::new(),
            threads: Vec::new(),
        };
        now.insert((web.pid, Contender::Process(8)), totals(2));
        now.insert((web.pid, Contender::Process(web.pid)), totals(3));
        let span = ContenderSpan::between(&now, None, 5.0);
        let proc_root = tempfile::tempdir().unwrap();
        let listed = listed(
            web,
            &HashMap::from_iter([(8, &other_vm)]),
            &span,
            proc_root.path(),
            &ProcessNames::default(),
        );
        let kinds: Vec<(Option<u32>, ContenderKind, u64)> =
            listed.iter().map(|c| (c.pid, c.kind, c.waits)).collect();
        let own = u64::from(web.pid);
        assert_eq!(
            kinds,
            [
                (None, ContenderKind::Idle, own),
                (Some(7), ContenderKind::Host, own),
                (Some(web.pid), ContenderKind::SameVm, 3),
                (Some(8), ContenderKind::Vm, 2),
                (Some(u32::MAX), ContenderKind::Host, 1),
                (None, ContenderKind::Other, own),
            ],
            "{listed:?}"
        );
        assert_eq!(listed[3].name, other_vm.name);
        let shares: f64 = listed.iter().map(|c| c.share).sum();
        assert!((shares - 1.0).abs() < 1e-9, "{listed:?}");
    }

    #[test]
    fn exited_contenders_leave_one_reading_after_they_are_found_gone() {
        let mut exited = ExitedContenders::default();
        let none = HashSet::new();
        let alive = |pid: u32| pid == 10;
        let all = || HashSet::from_iter([0, 10, 20, CONTENDER_OTHER]);
        // No reading yet: nothing to check.
        assert!(!exited.due(0));
        assert!(exited.due(1));
        assert!(!exited.due(1), "once per reading");
        // Found gone: kept until a reading has seen its final totals.
        assert!(exited.check(all(), &none, alive).is_empty());
        assert!(exited.due(2));
        assert_eq!(exited.check(all(), &none, alive), HashSet::from_iter([20]));
        // Removed: not asked for again; idle and "other" are never removed.
        assert!(exited.due(3));
        assert!(
            exited
                .check(HashSet::from_iter([0, 10, CONTENDER_OTHER]), &none, alive)
                .is_empty()
        );
    }

    #[test]
    fn a_pid_seen_again_or_a_check_skipped_starts_over() {
        let mut exited = ExitedContenders::default();
        let none = HashSet::new();
        assert!(exited.check(HashSet::from_iter([20, 30]), &none, |_| false).is_empty());
        // 20 is back (a reused pid): it stays, and must be found gone twice again.
        assert_eq!(
            exited.check(HashSet::from_iter([20, 30]), &none, |pid| pid == 20),
            HashSet::from_iter([30])
        );
        assert!(exited.check(HashSet::from_iter([20]), &none, |_| false).is_empty());
        exited.clear();
        assert!(exited.check(HashSet::from_iter([20]), &none, |_| false).is_empty());
        assert_eq!(
            exited.check(HashSet::from_iter([20]), &none, |_| false),
            HashSet::from_iter([20])
        );
    }

    #[test]
    fn known_vmms_are_not_looked_up_and_never_leave() {
        let mut exited = ExitedContenders::default();
        let vmms = HashSet::from_iter([10, 11]);
        let lookup = |pid: u32| {
            assert!(!vmms.contains(&pid), "VMM {pid} looked up in procfs");
            false
        };
        for _ in 0..3 {
            exited.check(HashSet::from_iter([10, 11, 20]), &vmms, lookup);
        }
        // A VMM discovery no longer sees is looked up like any process.
        let left = HashSet::from_iter([10]);
        assert!(
            exited
                .check(HashSet::from_iter([10, 11]), &left, |_| false)
                .is_empty()
        );
        assert_eq!(
            exited.check(HashSet::from_iter([10, 11]), &left, |_| false),
            HashSet::from_iter([11])
        );
    }
}
