//! Who held the CPU when a VMM thread got it after waiting: counted in the kernel per (VM,
//! process of the task switched out), at the switch that ends each run-queue wait.
//!
//! The task switched out is the current task when `sched_switch` fires, so its process is known
//! exactly without reading `task_struct`. The task that preempted a thread (`next` at the switch
//! out) is not always the one that held the CPU longest while it waited, nor is its process in
//! the tracepoint record; the one giving the CPU back is the last of them, and it is.

use std::path::Path;

use monitor_common::sched::CONTENDER_OTHER;

use super::SchedTotals;
use crate::{
    discovery::Vmm,
    model::{
        self,
        sched::{ContenderFigures, ContenderKind},
    },
};

/// Contenders listed per VM; the rest are summed as "other".
pub const TOP_CONTENDERS: usize = 5;

/// The process that held a CPU until a waiting VMM thread got it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    /// The CPU was idle: the wait was wake-up latency only.
    Idle,
    Process(u32),
    /// Beyond the kernel map's capacity.
    Other,
}

impl Contender {
    /// The kernel's contender field: a process id, 0 for the idle task, or the overflow key.
    #[must_use]
    pub fn decode(raw: u32) -> Self {
        match raw {
            0 => Self::Idle,
            CONTENDER_OTHER => Self::Other,
            pid => Self::Process(pid),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContenderTotals {
    pub waits: u64,
    pub wait_ns: u64,
}

/// The contenders of `vm` over the window, most wait first: the top [`TOP_CONTENDERS`] named,
/// the rest summed as "other".
#[must_use]
pub fn window(
    vm: &model::Vm,
    vmms: &[Vmm],
    now: &SchedTotals,
    before: Option<&SchedTotals>,
    proc_root: &Path,
) -> Vec<ContenderFigures> {
    let mut window: Vec<(Contender, ContenderTotals)> = now
        .contenders
        .iter()
        .filter(|((pid, _), _)| *pid == vm.pid)
        .map(|(key, now)| {
            let was = before
                .and_then(|b| b.contenders.get(key))
                .copied()
                .unwrap_or_default();
            let delta = ContenderTotals {
                waits: now.waits.saturating_sub(was.waits),
                wait_ns: now.wait_ns.saturating_sub(was.wait_ns),
            };
            (key.1, delta)
        })
        .filter(|(_, d)| d.waits > 0)
        .collect();
    window.sort_by(|a, b| b.1.wait_ns.cmp(&a.1.wait_ns).then(a.0.cmp(&b.0)));
    let total: u64 = window.iter().map(|(_, d)| d.wait_ns).sum();
    let mut rest = ContenderTotals::default();
    let mut listed = Vec::new();
    for (contender, totals) in window {
        let named = match contender {
            Contender::Other => None,
            _ if listed.len() >= TOP_CONTENDERS => None,
            Contender::Idle => Some((None, "idle".to_owned(), ContenderKind::Idle)),
            Contender::Process(pid) if pid == vm.pid => {
                Some((Some(pid), vm.name.clone(), ContenderKind::SameVm))
            }
            Contender::Process(pid) => Some(match vmms.iter().find(|v| v.id.pid == pid) {
                Some(other) => (Some(pid), other.name.clone(), ContenderKind::Vm),
                None => (Some(pid), process_name(proc_root, pid), ContenderKind::Host),
            }),
        };
        if let Some((pid, name, kind)) = named {
            listed.push(contender_figures(pid, name, kind, totals, total));
        } else {
            rest.waits += totals.waits;
            rest.wait_ns += totals.wait_ns;
        }
    }
    if rest.waits > 0 {
        listed.push(contender_figures(
            None,
            "other".to_owned(),
            ContenderKind::Other,
            rest,
            total,
        ));
    }
    listed
}

fn contender_figures(
    pid: Option<u32>,
    name: String,
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

/// A process's command name, or its pid when it has gone.
fn process_name(proc_root: &Path, pid: u32) -> String {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
        .map_or_else(|_| format!("pid {pid}"), |comm| comm.trim_end().to_owned())
}
