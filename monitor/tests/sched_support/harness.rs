//! Drives the scheduler programs' logic through `BPF_PROG_TEST_RUN` for one synthetic thread.

use std::path::Path;

use kvmtop::{
    families::sched::{Contender, ContenderTotals, ThreadTotals, WatchedThread},
    host::topology::Topology,
    model::sched::ThreadClass,
    session::{Config, Session},
};
use monitor_common::sched::{HARNESS_SWITCH, HARNESS_WAKEUP, PROG_SCHED_HARNESS};

use crate::support::{self, harness::synthetic_ids_in_use};

/// Synthetic thread ids: inside the watched bitmap (4 Mi tids) and far above the kernel's
/// default `pid_max`, but not above the 4 Mi systemd sets it to, so [`Harness::open`] skips
/// where one is a live task.
pub const SYNTHETIC_TID: u32 = 4_100_000;
/// `prev_state` as `sched_switch` reports it: preempted (`TASK_REPORT_MAX`), sleeping (S).
pub const PREEMPTED: u64 = 0x100;
pub const SLEEPING: u64 = 0x1;
/// A task that is not watched (and `OTHER_TID + 1`), and its process.
pub const OTHER_TID: u64 = 4_190_000;
pub const OTHER_PID: u64 = 4_190_000;
/// A process that does not exist, as a contender.
pub const EXITED_PID: u64 = 4_190_100;

pub struct Harness {
    pub session: Session,
    pub tid: u32,
    pub pid: u32,
}

impl Harness {
    /// A session watching one synthetic vCPU thread, or the reason this test cannot run here.
    pub fn open(test: &str, offset: u32) -> Option<Self> {
        if let Some(reason) = support::missing_prerequisite(false, &[]) {
            support::skip(test, &reason);
            return None;
        }
        let (tid, pid) = (SYNTHETIC_TID + offset * 10 + 1, SYNTHETIC_TID + offset * 10);
        let others = [OTHER_TID, OTHER_TID + 1, OTHER_PID, EXITED_PID]
            .map(|id| u32::try_from(id).expect("synthetic ids fit a u32"));
        if let Some(reason) = synthetic_ids_in_use(&[&[tid, pid][..], &others].concat()) {
            support::skip(test, &reason);
            return None;
        }
        let mut session = Session::open(&Config::default()).expect("opening a session");
        // The tests follow contenders reading by reading.
        session
            .families_mut()
            .sched
            .counters_mut()
            .set_contender_check_every(1);
        let mut h = Self { session, tid, pid };
        h.watch(1);
        Some(h)
    }

    pub fn watch(&mut self, vm_start: u64) {
        let thread = WatchedThread {
            tid: self.tid,
            pid: self.pid,
            vm_start,
            class: ThreadClass::Vcpu,
        };
        let problems = self
            .session
            .families_mut()
            .sched
            .counters_mut()
            .watch(&[thread], |_| false);
        assert!(problems.is_empty(), "{problems:?}");
    }

    pub fn topology(&mut self, fixture: &str) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/topology")
            .join(fixture);
        let topology = Topology::read(&root).expect("fixture topology");
        self.session
            .families_mut()
            .places_mut()
            .write(&topology)
            .expect("writing CPU places");
    }

    pub fn run(&mut self, args: &[u64]) {
        support::harness::run(&mut self.session, PROG_SCHED_HARNESS, None, args);
    }

    pub fn me(&self) -> u64 {
        u64::from(self.tid)
    }

    pub fn wakeup(&mut self, at: u64) {
        self.run(&[HARNESS_WAKEUP, self.me(), at]);
    }

    /// The watched thread gets `cpu` from `(prev_tid, prev_pid)`.
    pub fn switch_in(&mut self, cpu: u64, prev: (u64, u64), at: u64) {
        self.run(&[HARNESS_SWITCH, cpu, prev.0, 0, self.me(), prev.1, at]);
    }

    /// The watched thread leaves `cpu` in `state`.
    pub fn switch_out(&mut self, cpu: u64, state: u64, at: u64) {
        let pid = u64::from(self.pid);
        self.run(&[HARNESS_SWITCH, cpu, self.me(), state, OTHER_TID, pid, at]);
    }

    /// The watched thread runs on `cpu` from `at` for 1 µs, then sleeps.
    pub fn run_on(&mut self, cpu: u64, at: u64) {
        self.switch_in(cpu, (OTHER_TID, OTHER_PID), at);
        self.switch_out(cpu, SLEEPING, at + 1_000);
    }

    pub fn thread(&self) -> ThreadTotals {
        let totals = self.session.families().sched.counters().read();
        totals.threads[&self.tid].clone()
    }

    pub fn contenders(&self) -> Vec<(Contender, ContenderTotals)> {
        let mut found: Vec<_> = self
            .session
            .families()
            .sched
            .counters()
            .read()
            .contenders
            .iter()
            .filter(|((pid, _), _)| *pid == self.pid)
            .map(|(&(_, contender), &totals)| (contender, totals))
            .collect();
        found.sort_by_key(|(c, _)| *c);
        found
    }
}
