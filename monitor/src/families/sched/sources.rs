//! The scheduling family's hook table: the scheduler tracepoints, the programs that run on them
//! and the record layouts they need on this kernel.

use monitor_common::sched::{
    GLOBAL_SCHED_SWITCH_LAYOUT, GLOBAL_SCHED_TASK_FIELDS, GLOBAL_SCHED_WAKEUP_LAYOUT,
    PROG_SCHED_SWITCH, PROG_SCHED_SWITCH_BTF, PROG_SCHED_SWITCH_RAW, PROG_SCHED_WAKEUP,
    PROG_SCHED_WAKEUP_BTF, PROG_SCHED_WAKEUP_RAW, TaskFields, WatchedEvent,
};

use super::layout;
use crate::{
    bpf::hooks::{Attempt, Global, SourceSpec, every_kind},
    family::HostView,
    host::btf::KernelBtf,
};

/// On-CPU time, switches, the end of every run-queue wait and who held the CPU until then, and
/// migrations: a run started on another CPU than the last one, classified in the kernel with the
/// host topology.
pub const SWITCH: &str = "sched_switch";
/// The start of a run-queue wait after sleeping (a preemption starts one at the switch).
pub const WAKEUP: &str = "sched_wakeup";

/// Every source, with the slot of `SCHED_WATCHED_EVENTS` where its program counts the events of
/// watched threads.
pub const SOURCES: [(&str, WatchedEvent); 2] = [
    (SWITCH, WatchedEvent::Switch),
    (WAKEUP, WatchedEvent::Wakeup),
];

/// The hook table.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    let tracefs = &host.tracefs;
    let fields = task_fields(&host.btf);
    // What the raw programs of `event` need: the task fields, and the argument list they read.
    let raw_needs = |event: &str, args: usize| {
        fields.clone().and_then(|fields| {
            host.btf
                .as_ref()
                .map_err(Clone::clone)?
                .expect_args(event, args)?;
            Ok(vec![Global::new(GLOBAL_SCHED_TASK_FIELDS, &fields)])
        })
    };
    vec![
        SourceSpec::new(
            SWITCH,
            every_kind(
                &host.btf,
                "sched_switch",
                (PROG_SCHED_SWITCH_BTF, PROG_SCHED_SWITCH_RAW),
                // `prev_state` became an argument in Linux 5.18.
                raw_needs("sched_switch", 4),
                Attempt::tracepoint(
                    "sched",
                    "sched_switch",
                    PROG_SCHED_SWITCH,
                    layout::switch(tracefs)
                        .map(|l| vec![Global::new(GLOBAL_SCHED_SWITCH_LAYOUT, &l)]),
                ),
            ),
        ),
        SourceSpec::new(
            WAKEUP,
            every_kind(
                &host.btf,
                "sched_wakeup",
                (PROG_SCHED_WAKEUP_BTF, PROG_SCHED_WAKEUP_RAW),
                raw_needs("sched_wakeup", 1),
                Attempt::tracepoint(
                    "sched",
                    "sched_wakeup",
                    PROG_SCHED_WAKEUP,
                    layout::wakeup(tracefs)
                        .map(|l| vec![Global::new(GLOBAL_SCHED_WAKEUP_LAYOUT, &l)]),
                ),
            ),
        ),
    ]
}

/// Where this kernel keeps a task's thread id, from its BTF.
fn task_fields(btf: &Result<KernelBtf, String>) -> Result<TaskFields, String> {
    let btf = btf.as_ref().map_err(Clone::clone)?;
    Ok(TaskFields {
        pid: btf.offset("task_struct", "pid", 4)?,
    })
}
