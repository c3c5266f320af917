//! The scheduling family's hook table: the scheduler tracepoints, the programs that run on them
//! and the record layouts they need on this kernel.

use monitor_common::sched::{
    GLOBAL_SCHED_MIGRATE_TASK_LAYOUT, GLOBAL_SCHED_SWITCH_LAYOUT, GLOBAL_SCHED_WAKEUP_LAYOUT,
    PROG_SCHED_MIGRATE_TASK, PROG_SCHED_SWITCH, PROG_SCHED_WAKEUP, WatchedEvent,
};

use super::layout;
use crate::{
    bpf::hooks::{Attempt, Global, SourceSpec},
    family::HostView,
};

/// On-CPU time, switches, the end of every run-queue wait and who held the CPU until then.
pub const SWITCH: &str = "sched_switch";
/// The start of a run-queue wait after sleeping (a preemption starts one at the switch).
pub const WAKEUP: &str = "sched_wakeup";
/// Migrations, classified in the kernel with the host topology.
pub const MIGRATE: &str = "sched_migrate_task";

/// Every source, with the slot of `SCHED_WATCHED_EVENTS` where its program counts the events of
/// watched threads.
pub const SOURCES: [(&str, WatchedEvent); 3] = [
    (SWITCH, WatchedEvent::Switch),
    (WAKEUP, WatchedEvent::Wakeup),
    (MIGRATE, WatchedEvent::Migrate),
];

/// The hook table.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    let tracefs = &host.tracefs;
    vec![
        SourceSpec::one(
            SWITCH,
            Attempt::tracepoint(
                "sched",
                "sched_switch",
                PROG_SCHED_SWITCH,
                layout::switch(tracefs).map(|l| vec![Global::new(GLOBAL_SCHED_SWITCH_LAYOUT, &l)]),
            ),
        ),
        SourceSpec::one(
            WAKEUP,
            Attempt::tracepoint(
                "sched",
                "sched_wakeup",
                PROG_SCHED_WAKEUP,
                layout::wakeup(tracefs).map(|l| vec![Global::new(GLOBAL_SCHED_WAKEUP_LAYOUT, &l)]),
            ),
        ),
        SourceSpec::one(
            MIGRATE,
            Attempt::tracepoint(
                "sched",
                "sched_migrate_task",
                PROG_SCHED_MIGRATE_TASK,
                layout::migrate(tracefs)
                    .map(|l| vec![Global::new(GLOBAL_SCHED_MIGRATE_TASK_LAYOUT, &l)]),
            ),
        ),
    ]
}
