//! The scheduling family's hook table: the scheduler tracepoints, the programs that run on them
//! and the record layouts they need on this kernel.

use monitor_common::sched::{
    GLOBAL_SCHED_SWITCH_LAYOUT, GLOBAL_SCHED_TASK_FIELDS, GLOBAL_SCHED_WAKEUP_LAYOUT,
    PROG_SCHED_SWITCH, PROG_SCHED_SWITCH_BTF, PROG_SCHED_SWITCH_RAW, PROG_SCHED_WAKEUP,
    PROG_SCHED_WAKEUP_BTF, PROG_SCHED_WAKEUP_RAW, TaskFields, WatchedEvent,
};
use monitor_common::sched::{
    PROG_PROCESS_EXEC, PROG_PROCESS_EXEC_BTF, PROG_PROCESS_EXEC_RAW, PROG_PROCESS_EXIT,
    PROG_PROCESS_EXIT_BTF, PROG_PROCESS_EXIT_RAW, PROG_PROCESS_FORK, PROG_PROCESS_FORK_BTF,
    PROG_PROCESS_FORK_RAW,
};

use super::layout;
use crate::{
    bpf::hooks::{Attempt, Global, SourceSpec, every_kind, raw_needs},
    family::HostView,
    host::btf::KernelBtf,
};

/// On-CPU time, switches, the end of every run-queue wait and who held the CPU until then, and
/// migrations: a run started on another CPU than the last one, classified in the kernel with the
/// host topology.
pub const SWITCH: &str = "sched_switch";
/// The start of a run-queue wait after sleeping (a preemption starts one at the switch).
pub const WAKEUP: &str = "sched_wakeup";

/// A VMM created a thread (or a process): discovery re-reads its thread list.
pub const PROCESS_FORK: &str = "process_fork";
/// A VMM's thread ended, or the VMM itself: discovery re-reads it, and finds it gone.
pub const PROCESS_EXIT: &str = "process_exit";
/// A VMM exec'd another program: discovery re-reads what it is.
pub const PROCESS_EXEC: &str = "process_exec";
/// The sources that tell discovery which VMMs changed; it relies on them only while all three
/// are attached (see `discovery` and `vmms::VMM_CHANGES_MAP`).
pub const LIFECYCLE: [&str; 3] = [PROCESS_FORK, PROCESS_EXIT, PROCESS_EXEC];

/// Every source, with the slot of `SCHED_WATCHED_EVENTS` where its program counts the events of
/// watched threads (of watched processes, for the lifecycle sources).
pub const SOURCES: [(&str, WatchedEvent); 5] = [
    (SWITCH, WatchedEvent::Switch),
    (WAKEUP, WatchedEvent::Wakeup),
    (PROCESS_FORK, WatchedEvent::Fork),
    (PROCESS_EXIT, WatchedEvent::Exit),
    (PROCESS_EXEC, WatchedEvent::Exec),
];

/// The hook table.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    let tracefs = &host.tracefs;
    let fields = task_fields(&host.btf);
    // What the raw programs of `event` need: the task fields, and the argument list they read.
    let raw_needs =
        |event: &str, args: usize| raw_needs(&host.btf, event, args, GLOBAL_SCHED_TASK_FIELDS, &fields);
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
        lifecycle(
            host,
            PROCESS_FORK,
            "sched_process_fork",
            (PROG_PROCESS_FORK_BTF, PROG_PROCESS_FORK_RAW, PROG_PROCESS_FORK),
        ),
        lifecycle(
            host,
            PROCESS_EXIT,
            "sched_process_exit",
            (PROG_PROCESS_EXIT_BTF, PROG_PROCESS_EXIT_RAW, PROG_PROCESS_EXIT),
        ),
        lifecycle(
            host,
            PROCESS_EXEC,
            "sched_process_exec",
            (PROG_PROCESS_EXEC_BTF, PROG_PROCESS_EXEC_RAW, PROG_PROCESS_EXEC),
        ),
    ]
}

/// A process lifecycle source: its programs read only the current task's ids, so every kind
/// needs nothing from this kernel but the tracepoint. The classic one, like every classic
/// source, also needs the tracepoint listed in tracefs (in the `--tracefs` view when given).
fn lifecycle(
    host: &HostView,
    name: &'static str,
    event: &'static str,
    (btf, raw, classic): (&'static str, &'static str, &'static str),
) -> SourceSpec {
    let listed = host
        .tracefs
        .event_format("sched", event)
        .map(|_| Vec::new())
        .map_err(|e| e.to_string());
    SourceSpec::new(
        name,
        every_kind(
            &host.btf,
            event,
            (btf, raw),
            Ok(Vec::new()),
            Attempt::tracepoint("sched", event, classic, listed),
        ),
    )
}

/// Where this kernel keeps a task's thread id, from its BTF.
fn task_fields(btf: &Result<KernelBtf, String>) -> Result<TaskFields, String> {
    let btf = btf.as_ref().map_err(Clone::clone)?;
    Ok(TaskFields {
        pid: btf.offset("task_struct", "pid", 4)?,
    })
}
