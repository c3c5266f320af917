//! The process lifecycle programs: a watched process (a VMM) created a thread or process
//! (`sched_process_fork`, in the parent's context), a thread of it ended (`sched_process_exit`,
//! in the ending thread's, the last one included), or it exec'd (`sched_process_exec`). Each
//! marks the process changed for discovery (`vmms::mark_changed`), which then re-reads only
//! that VMM's `/proc` entries. Every event of the host runs these programs, so the first thing
//! they do is the watched-process test; an exec is the exception: every process that exec'd
//! goes to the ring discovery inspects new processes from (`vmms::note_exec`), since a VMM
//! starts so. They read no argument, only the current task's ids, so the BTF, raw and classic
//! programs are one handler.

#![expect(clippy::inline_always)]

use aya_ebpf::programs::TracePointContext;
use monitor_common::sched::WatchedEvent;

use super::account::count_watched;
use crate::{
    raw::Args,
    raw_programs,
    record::current_tgid_tid,
    tracepoint_program,
    vmms::{is_vmm, mark_changed, note_exec},
};

#[inline(always)]
fn on_lifecycle(event: WatchedEvent) {
    let (tgid, _) = current_tgid_tid();
    if matches!(event, WatchedEvent::Exec) {
        note_exec(tgid);
    }
    if !is_vmm(tgid) {
        return;
    }
    mark_changed(tgid);
    count_watched(event);
}

raw_programs!("sched_process_fork", on_fork_raw => proc_fork_btf, proc_fork_raw);
raw_programs!("sched_process_exit", on_exit_raw => proc_exit_btf, proc_exit_raw);
raw_programs!("sched_process_exec", on_exec_raw => proc_exec_btf, proc_exec_raw);
tracepoint_program!("sched", "sched_process_fork", on_fork => process_fork);
tracepoint_program!("sched", "sched_process_exit", on_exit => process_exit);
tracepoint_program!("sched", "sched_process_exec", on_exec => process_exec);

#[inline(always)]
fn on_fork_raw(_: Args) {
    on_lifecycle(WatchedEvent::Fork);
}

#[inline(always)]
fn on_exit_raw(_: Args) {
    on_lifecycle(WatchedEvent::Exit);
}

#[inline(always)]
fn on_exec_raw(_: Args) {
    on_lifecycle(WatchedEvent::Exec);
}

#[inline(always)]
fn on_fork(_: TracePointContext) {
    on_lifecycle(WatchedEvent::Fork);
}

#[inline(always)]
fn on_exit(_: TracePointContext) {
    on_lifecycle(WatchedEvent::Exit);
}

#[inline(always)]
fn on_exec(_: TracePointContext) {
    on_lifecycle(WatchedEvent::Exec);
}
