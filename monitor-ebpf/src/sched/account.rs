//! The per-event accounting shared by the scheduler programs and the test harness: one function
//! per event, taking every input (CPU, time, the current task's tgid) as an argument so the
//! harness can drive it with exact values.
//!
//! A watched thread is, at any instant, running (`run_start_ns` set), waiting for a CPU
//! (`queue_start_ns` set) or neither (blocked, or not seen yet). Its events are serialised by
//! the scheduler (its rq lock and `pi_lock`), so plain read-modify-writes of its entry are exact.

#![expect(clippy::inline_always)]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use monitor_common::{
    places::classify_migration,
    sched::{
        CONTENDER_OTHER, CPU_UNKNOWN, ContenderKey, ContenderStat, SCHED_CONTENDERS_CAPACITY,
        SCHED_CONTENDERS_OVERFLOW_CAPACITY, SCHED_CPU_TIME_CAPACITY, SCHED_THREADS_CAPACITY,
        TASK_BLOCKED_MASK, ThreadCpuKey, ThreadSched, WATCH_WORDS, WATCHED_EVENT_KINDS,
        WatchedEvent,
    },
};

use crate::{atomic::atomic_add, places::place};

#[map(name = "SCHED_WATCH")]
static SCHED_WATCH: Array<u64> = Array::with_max_entries(WATCH_WORDS, 0);

#[map(name = "SCHED_THREADS")]
static SCHED_THREADS: HashMap<u32, ThreadSched> =
    HashMap::with_max_entries(SCHED_THREADS_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "SCHED_CPU_TIME")]
static SCHED_CPU_TIME: HashMap<ThreadCpuKey, u64> =
    HashMap::with_max_entries(SCHED_CPU_TIME_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "SCHED_CONTENDERS")]
static SCHED_CONTENDERS: HashMap<ContenderKey, ContenderStat> =
    HashMap::with_max_entries(SCHED_CONTENDERS_CAPACITY, 0);

#[map(name = "SCHED_CONTENDERS_OVERFLOW")]
static SCHED_CONTENDERS_OVERFLOW: HashMap<ContenderKey, ContenderStat> =
    HashMap::with_max_entries(SCHED_CONTENDERS_OVERFLOW_CAPACITY, 0);

#[map(name = "SCHED_DROPS")]
static SCHED_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "SCHED_WATCHED_EVENTS")]
static SCHED_WATCHED_EVENTS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(WATCHED_EVENT_KINDS, 0);

/// Whether `tid` is a watched thread: one inlined array lookup and a bit test.
#[inline(always)]
pub fn is_watched(tid: u32) -> bool {
    SCHED_WATCH
        .get(tid >> 6)
        .is_some_and(|word| (*word >> (tid & 63)) & 1 != 0)
}

/// One `sched_switch`: `prev_tgid` is the current task's process (the tracepoint runs in
/// `prev`'s context), i.e. the task that held the CPU until `next` got it.
pub struct Switch {
    pub cpu: u32,
    pub prev_tid: u32,
    pub prev_state: u64,
    pub next_tid: u32,
    pub prev_tgid: u32,
    pub now: u64,
}

/// Accounts a switch of which at least one side is watched (the caller tested both).
#[inline(always)]
pub fn on_switch(event: &Switch, prev_watched: bool, next_watched: bool) {
    count_watched(WatchedEvent::Switch);
    if prev_watched {
        switch_out(event);
    }
    if next_watched {
        switch_in(event);
    }
}

#[inline(always)]
fn switch_out(event: &Switch) {
    let Some(thread) = SCHED_THREADS.get_ptr_mut(event.prev_tid) else {
        return;
    };
    // SAFETY: this thread's entry; its events are serialised (module docs).
    let start = unsafe { (*thread).run_start_ns };
    if start != 0 && event.now >= start {
        let ran = event.now - start;
        // SAFETY: as above.
        unsafe { (*thread).run_ns += ran };
        add_cpu_time(event.prev_tid, event.cpu, ran);
    }
    // A task switched out with none of the blocked bits set is still runnable (preempted or
    // yielding): its wait for a CPU starts now, as the kernel's `sched_info` counts it.
    let runnable = event.prev_state & TASK_BLOCKED_MASK == 0;
    // SAFETY: as above.
    unsafe {
        (*thread).run_start_ns = 0;
        (*thread).cpu = event.cpu;
        if runnable {
            (*thread).involuntary += 1;
            (*thread).queue_start_ns = event.now;
        } else {
            (*thread).voluntary += 1;
            (*thread).queue_start_ns = 0;
        }
    }
}

#[inline(always)]
fn switch_in(event: &Switch) {
    let Some(thread) = SCHED_THREADS.get_ptr_mut(event.next_tid) else {
        return;
    };
    // SAFETY: this thread's entry; its events are serialised (module docs).
    let (queued, tgid, last_cpu) =
        unsafe { ((*thread).queue_start_ns, (*thread).tgid, (*thread).cpu) };
    // SAFETY: as above.
    unsafe {
        if last_cpu != CPU_UNKNOWN
            && last_cpu != event.cpu
            && let Some(slot) = (*thread)
                .migrations
                .get_mut(migration_class(last_cpu, event.cpu))
        {
            *slot += 1;
        }
        (*thread).queue_start_ns = 0;
        (*thread).run_start_ns = event.now;
        (*thread).cpu = event.cpu;
    }
    if queued == 0 || event.now < queued {
        return;
    }
    let waited = event.now - queued;
    // SAFETY: as above.
    unsafe { (*thread).wait.record(waited) };
    add_contender(tgid, event.prev_tgid, waited);
}

/// A `sched_wakeup` of a watched thread: it waits for a CPU from now. A wakeup of a thread that
/// is still on its CPU (it had not finished going to sleep) enqueues nothing and is ignored; one
/// of a thread already waiting (preempted while going to sleep) keeps the earlier start.
#[inline(always)]
pub fn on_wakeup(tid: u32, now: u64) {
    count_watched(WatchedEvent::Wakeup);
    let Some(thread) = SCHED_THREADS.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: this thread's entry; its events are serialised (module docs).
    unsafe {
        if (*thread).run_start_ns == 0 && (*thread).queue_start_ns == 0 {
            (*thread).queue_start_ns = now;
        }
    }
}

/// The class of a migration from `from` to `to`: a watched thread starting a run on another CPU
/// than the one it last ran on, classified with the host topology userspace wrote into
/// `CPU_PLACES`. Counted at switch-in, every move between two runs counts once, however many
/// times the load balancer moved the thread while it waited, and no program runs on the
/// migrations of other tasks. Classifying here keeps the map one counter per class and thread,
/// where counting per (thread, from, to) would grow with the square of the CPU count.
#[inline(always)]
fn migration_class(from: u32, to: u32) -> usize {
    classify_migration(&place(from), &place(to)) as usize
}

#[inline(always)]
fn add_cpu_time(tid: u32, cpu: u32, ns: u64) {
    let key = ThreadCpuKey { tid, cpu };
    if let Some(total) = SCHED_CPU_TIME.get_ptr_mut(key) {
        // SAFETY: keyed by one thread, whose switches are serialised.
        unsafe { *total += ns };
        return;
    }
    if SCHED_CPU_TIME.insert(key, ns, 0).is_err() {
        count_drop();
    }
}

#[inline(always)]
fn add_contender(tgid: u32, contender: u32, ns: u64) {
    let key = ContenderKey { tgid, contender };
    if add_wait(&SCHED_CONTENDERS, &key, ns) {
        return;
    }
    // Too many distinct contenders host-wide: keep the VM's total exact under "other".
    let other = ContenderKey {
        tgid,
        contender: CONTENDER_OTHER,
    };
    if !add_wait(&SCHED_CONTENDERS_OVERFLOW, &other, ns) {
        count_drop();
    }
}

#[inline(always)]
fn add_wait(map: &HashMap<ContenderKey, ContenderStat>, key: &ContenderKey, ns: u64) -> bool {
    if add_to(map, key, ns) {
        return true;
    }
    // Inserted only if absent, so a key another CPU created since the lookup keeps its totals
    // and the wait goes there; a full map fails both.
    let first = ContenderStat {
        waits: 1,
        wait_ns: ns,
    };
    map.insert(key, first, u64::from(BPF_NOEXIST)).is_ok() || add_to(map, key, ns)
}

/// Adds a wait to the totals of `key` if it exists.
#[inline(always)]
fn add_to(map: &HashMap<ContenderKey, ContenderStat>, key: &ContenderKey, ns: u64) -> bool {
    let Some(stat) = map.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: a map value, live while the program runs; the vCPUs of one VM wait on several CPUs
    // at once, so every writer adds atomically.
    unsafe {
        atomic_add(&raw mut (*stat).waits, 1);
        atomic_add(&raw mut (*stat).wait_ns, ns);
    }
    true
}

/// Counts an event of a watched thread handled by `program`.
#[inline(always)]
pub fn count_watched(program: WatchedEvent) {
    if let Some(n) = SCHED_WATCHED_EVENTS.get_ptr_mut(program as u32) {
        // SAFETY: per-CPU slot, no other writer while the program runs.
        unsafe { *n += 1 };
    }
}

/// Counts an event lost to a full map.
#[inline(always)]
pub fn count_drop() {
    if let Some(drops) = SCHED_DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, as above.
        unsafe { *drops += 1 };
    }
    crate::diagnostics::report(monitor_common::diagnostics::Condition::SchedMapFull);
}
