//! The scheduler programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic event
//! sequences and exact timestamps: run-queue waits land in exact log2 buckets with exact totals,
//! switches and migrations (runs that begin on another CPU) are classified (on fixture multi-node
//! topologies this host does not have), and contenders are attributed.

mod sched_support;
mod support;

use kvmtop::{
    families::sched::{Contender, ContenderTotals, WatchedThread},
    host::topology::MigrationClass,
    model::sched::ThreadClass,
};
use monitor_common::{
    histogram::{HIST_BUCKETS, bucket_of},
    sched::{HARNESS_SWITCH, HARNESS_WAKEUP},
};
use sched_support::harness::{EXITED_PID, Harness, OTHER_PID, OTHER_TID, PREEMPTED, SLEEPING};

#[test]
fn waits_after_wakeups_and_preemptions_land_in_exact_buckets() {
    const TEST: &str = "waits_after_wakeups_and_preemptions_land_in_exact_buckets";
    let Some(mut h) = Harness::open(TEST, 0) else {
        return;
    };
    let me_pid = u64::from(h.pid);
    let other = (OTHER_TID, OTHER_PID);
    let ms = 1_000_000;
    // Woken, waits 3 µs behind another process.
    h.wakeup(ms);
    h.switch_in(0, other, ms + 3_000);
    // Runs 100 µs, is preempted, waits 50 µs.
    h.switch_out(0, PREEMPTED, ms + 103_000);
    h.switch_in(0, other, ms + 153_000);
    // Runs 47 µs, sleeps.
    h.switch_out(0, SLEEPING, ms + 200_000);
    // Woken onto an idle CPU: 500 ns of wake-up latency.
    h.wakeup(2 * ms);
    h.switch_in(1, (0, 0), 2 * ms + 500);
    // A wakeup while it runs enqueues nothing.
    h.wakeup(2 * ms + 1_000);
    // Preempted after 9.5 µs; gets the CPU back 100 ns later from a thread of its own VM.
    h.switch_out(1, PREEMPTED, 2 * ms + 10_000);
    h.switch_in(1, (OTHER_TID + 1, me_pid), 2 * ms + 10_100);
    // Runs 10 µs, sleeps: nothing is left open.
    h.switch_out(1, SLEEPING, 2 * ms + 20_100);

    let t = h.thread();
    let waits = [3_000, 50_000, 500, 100];
    let mut buckets = [0u64; HIST_BUCKETS];
    for ns in waits {
        buckets[bucket_of(ns)] += 1;
    }
    assert_eq!([11, 15, 8, 6].map(|b| buckets[b]), [1, 1, 1, 1]);
    assert_eq!(t.wait.buckets, buckets, "{t:?}");
    assert_eq!(t.wait.count, 4);
    assert_eq!(t.wait.sum_ns, 53_600);
    assert_eq!(t.wait.max_ns, 50_000);
    assert_eq!(t.wait_ns, 53_600, "no wait in progress");
    assert_eq!(t.run_ns, 100_000 + 47_000 + 9_500 + 10_000);
    assert_eq!((t.voluntary, t.involuntary), (2, 2));
    assert_eq!(t.cpu, Some(1));
    // Its runs began on CPU 0 twice, then on CPU 1 twice: one migration.
    assert_eq!(t.migrations.total(), 1);
    assert!(!t.running && !t.waiting);
    let summary = t.wait.summary().unwrap();
    assert_eq!(summary.count, 4);

    // The CPU each interval ran on.
    let totals = h.session.families().sched.counters().read();
    let per_cpu: Vec<(u32, u64)> = totals.cpu_time[&h.tid]
        .iter()
        .map(|(c, n)| (*c, *n))
        .collect();
    assert_eq!(per_cpu, [(0, 147_000), (1, 19_500)]);

    // Who held the CPU at the end of each wait.
    let key = |waits, wait_ns| ContenderTotals { waits, wait_ns };
    let other_pid = u32::try_from(OTHER_PID).unwrap();
    assert_eq!(
        h.contenders(),
        [
            (Contender::Idle, key(1, 500)),
            (Contender::Process(h.pid), key(1, 100)),
            (Contender::Process(other_pid), key(2, 53_000)),
        ]
    );
    // Every event concerned the watched thread.
    let events = h.session.families().sched.counters().watched_events();
    assert_eq!(events[&"sched_switch"], 8);
    assert_eq!(events[&"sched_wakeup"], 3);
}

#[test]
fn intervals_in_progress_are_counted_up_to_the_reading() {
    const TEST: &str = "intervals_in_progress_are_counted_up_to_the_reading";
    let Some(mut h) = Harness::open(TEST, 1) else {
        return;
    };
    // Timestamps on the kernel's clock: a wait that began 1 ms ago is still going on.
    let now = kvmtop::host::clock::monotonic_ns();
    h.wakeup(now - 1_000_000);
    let t = h.thread();
    assert!(t.waiting && t.wait.count == 0);
    assert!(t.wait_ns >= 1_000_000 && t.wait_ns < 1_000_000_000, "{t:?}");
    // Switched in: the wait ends, the run begins.
    h.switch_in(0, (OTHER_TID, OTHER_PID), now - 400_000);
    let t = h.thread();
    assert_eq!((t.wait.count, t.wait.sum_ns), (1, 600_000));
    assert!(t.running && t.run_ns >= 400_000, "{t:?}");
}

#[test]
fn a_thread_runnable_when_watched_counts_from_then() {
    const TEST: &str = "a_thread_runnable_when_watched_counts_from_then";
    let Some(mut h) = Harness::open(TEST, 5) else {
        return;
    };
    let clock = kvmtop::host::clock::monotonic_ns;
    let watch_runnable = |h: &mut Harness, vm_start| {
        let thread = WatchedThread {
            tid: h.tid,
            pid: h.pid,
            vm_start,
            class: ThreadClass::Vcpu,
        };
        let before = clock();
        assert!(
            h.session
                .families_mut()
                .sched
                .counters_mut()
                .watch(&[thread], |_| true)
                .is_empty()
        );
        before
    };
    // Runnable at watch time, on a CPU as it turns out: its run counts from the watch.
    let watched_at = watch_runnable(&mut h, 2);
    let t = h.thread();
    assert!(
        !t.running && !t.waiting && t.run_ns == 0 && t.wait_ns == 0,
        "{t:?}"
    );
    let out = clock() + 1_000_000;
    h.switch_out(0, PREEMPTED, out);
    let t = h.thread();
    assert!(
        t.run_ns >= 1_000_000 && t.run_ns <= out - watched_at,
        "{t:?}"
    );
    assert!(t.waiting && t.involuntary == 1 && t.wait.count == 0);
    // Runnable at watch time, waiting as it turns out: its wait counts from the watch.
    let watched_at = watch_runnable(&mut h, 3);
    let now = clock() + 2_000_000;
    h.switch_in(1, (OTHER_TID, OTHER_PID), now);
    let t = h.thread();
    assert_eq!(t.wait.count, 1);
    assert!(
        t.wait.sum_ns >= 2_000_000 && t.wait.sum_ns <= now - watched_at,
        "{t:?}"
    );
    assert!(t.running && t.run_ns == 0, "{t:?}");
}

#[test]
fn unwatched_threads_and_a_reused_identity_leave_no_trace() {
    const TEST: &str = "unwatched_threads_and_a_reused_identity_leave_no_trace";
    let Some(mut h) = Harness::open(TEST, 2) else {
        return;
    };
    // Events of a thread that is not watched.
    h.run(&[HARNESS_WAKEUP, OTHER_TID, 1_000]);
    h.run(&[HARNESS_SWITCH, 0, 0, 0, OTHER_TID, 0, 2_000]);
    h.run(&[HARNESS_SWITCH, 1, 0, 0, OTHER_TID, 0, 3_000]);
    let totals = h.session.families().sched.counters().read();
    assert_eq!(totals.threads.len(), 1, "{:?}", totals.threads.keys());
    assert!(totals.watched_events.values().all(|n| *n == 0));

    h.wakeup(1_000);
    h.switch_in(0, (OTHER_TID, OTHER_PID), 2_000);
    h.switch_out(0, SLEEPING, 5_000);
    assert_eq!(h.thread().run_ns, 3_000);
    // Same tid and pid, another process start time: a reused pid starts from zero.
    h.watch(2);
    let t = h.thread();
    assert_eq!((t.run_ns, t.wait.count, t.voluntary), (0, 0, 0));
    assert!(
        h.session
            .families()
            .sched
            .counters()
            .read()
            .cpu_time
            .is_empty()
    );
    // No longer watched at all: the entry goes, and so do the VM's contenders.
    assert!(
        h.session
            .families_mut()
            .sched
            .counters_mut()
            .watch(&[], |_| false)
            .is_empty()
    );
    let totals = h.session.families().sched.counters().read();
    assert!(totals.threads.is_empty() && totals.contenders.is_empty());
}

#[test]
fn migrations_are_classified_with_the_topology_the_agent_wrote() {
    const TEST: &str = "migrations_are_classified_with_the_topology_the_agent_wrote";
    let Some(mut h) = Harness::open(TEST, 3) else {
        return;
    };
    // A migration is a run that begins on another CPU than the thread's previous run: the
    // thread's runs, one after another, on these CPUs, 10 µs apart.
    let mut at = 1_000_000;
    let mut switches = 0;
    let mut runs_on = |h: &mut Harness, at: &mut u64, cpus: &[u64]| {
        for &cpu in cpus {
            h.run_on(cpu, *at);
            *at += 10_000;
            switches += 2;
        }
    };
    // Two sockets × 4 cores × 2 threads: 0 and 8 are siblings, 0-3 share an L3, 4-7 are the
    // other node. The first run has no previous one, and a run on the same CPU is no move.
    h.topology("dual-socket");
    runs_on(&mut h, &mut at, &[0, 0, 8, 1, 2, 5]);
    // Preempted, and back on the same CPU: no move either.
    h.switch_in(5, (OTHER_TID, OTHER_PID), at);
    h.switch_out(5, PREEMPTED, at + 1_000);
    h.switch_in(5, (OTHER_TID, OTHER_PID), at + 2_000);
    h.switch_out(5, SLEEPING, at + 3_000);
    at += 10_000;
    // Four 4-core L3 domains, nodes 0-7 and 8-15; then a CPU beyond any topology.
    h.topology("chiplet-snc");
    runs_on(&mut h, &mut at, &[0, 4, 12, 5_000]);
    let t = h.thread();
    let counts: Vec<(MigrationClass, u64)> = t.migrations.iter().collect();
    assert_eq!(
        counts,
        [
            (MigrationClass::SameCore, 1),
            (MigrationClass::SameLlc, 2),
            (MigrationClass::CrossLlc, 2),
            (MigrationClass::CrossNode, 2),
            (MigrationClass::Unknown, 1),
        ]
    );
    assert_eq!(t.cpu, Some(5_000), "the CPU it last ran on");
    // Counted by the switches alone.
    let events = h.session.families().sched.counters().watched_events();
    assert_eq!(events[&"sched_switch"], switches + 4);
    assert!(
        events
            .iter()
            .all(|(source, n)| *source == "sched_switch" || *n == 0),
        "{events:?}"
    );
}

#[test]
fn contenders_that_exited_leave_the_map_after_a_reading() {
    const TEST: &str = "contenders_that_exited_leave_the_map_after_a_reading";
    let Some(mut h) = Harness::open(TEST, 6) else {
        return;
    };
    // The VM is this test process, so that procfs shows it and contenders are looked up.
    h.pid = std::process::id();
    h.watch(1);
    let me = u64::from(h.pid);
    // Waits behind a process that has exited, behind the VM itself, and on an idle CPU.
    h.wakeup(1_000);
    h.switch_in(0, (OTHER_TID, EXITED_PID), 2_000);
    h.switch_out(0, PREEMPTED, 3_000);
    h.switch_in(0, (OTHER_TID + 1, me), 3_500);
    h.switch_out(0, SLEEPING, 4_000);
    h.wakeup(5_000);
    h.switch_in(1, (0, 0), 5_200);
    let key = |waits, wait_ns| ContenderTotals { waits, wait_ns };
    let exited = Contender::Process(u32::try_from(EXITED_PID).unwrap());
    let all = [
        (Contender::Idle, key(1, 200)),
        (Contender::Process(h.pid), key(1, 500)),
        (exited, key(1, 1_000)),
    ];
    assert_eq!(h.contenders(), all);
    // The next update finds it gone; the reading after still has its final totals.
    h.watch(1);
    assert_eq!(h.contenders(), all);
    // The update after that removes it; live processes and the idle CPU stay.
    h.watch(1);
    assert_eq!(h.contenders(), all[..2]);
    h.watch(1);
    assert_eq!(h.contenders(), all[..2]);
}

#[test]
fn a_contender_whose_pid_now_names_a_thread_has_exited() {
    const TEST: &str = "a_contender_whose_pid_now_names_a_thread_has_exited";
    let Some(mut h) = Harness::open(TEST, 7) else {
        return;
    };
    // The VM is this test process, so that procfs shows it and contenders are looked up.
    h.pid = std::process::id();
    h.watch(1);
    // A thread of this process: `/proc/TID` answers for it, but no process has that number,
    // as when a contender process exits and its pid goes to a new thread.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = u32::try_from(tid_rx.recv().unwrap()).unwrap();
    assert!(std::path::Path::new(&format!("/proc/{tid}")).exists());
    h.wakeup(1_000);
    h.switch_in(0, (OTHER_TID, u64::from(tid)), 2_000);
    let waited = ContenderTotals {
        waits: 1,
        wait_ns: 1_000,
    };
    assert_eq!(h.contenders(), [(Contender::Process(tid), waited)]);
    // Found gone at the next update, removed at the one after.
    h.watch(1);
    assert_eq!(h.contenders(), [(Contender::Process(tid), waited)]);
    h.watch(1);
    assert_eq!(h.contenders(), []);
    drop(stop_tx);
    thread.join().unwrap();
}
