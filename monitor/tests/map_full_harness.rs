//! A full kernel map is never silent: the exit programs, driven through `BPF_PROG_TEST_RUN`,
//! fill `EXITS_COUNTS` to its capacity with synthetic keys, and every event that finds no room
//! must show up in the family's `dropped` count (the figure behind the snapshot's lost events and
//! `kvmtop_events_dropped_total`), while keys already in the map keep counting.

mod support;

use aya::programs::{RawTracePointRunOptions, TestRun as _};
use kvmtop::{
    families::exits::{ExitCounterKey, reasons::ExitReason},
    model::ExitSource,
    session::{Config, Session},
};
use monitor_common::exits::{
    EXITS_COUNTS_MAP, HARNESS_KVM_EXIT, PROG_EXITS_HARNESS, latency::PENDING_CAPACITY,
};

/// A pid far above `pid_max`, so no real VM can collide with it.
const SYNTHETIC_PID: u64 = 4_000_000_901;
const VMX: u64 = 1;
const IO_INSTRUCTION: u64 = 30;

/// Runs the exit harness once per `(thread, vcpu)`: one hardware exit (`IO_INSTRUCTION`) of
/// thread `SYNTHETIC_PID + 1 + thread` on vCPU `vcpu`, each a key of its own in `EXITS_COUNTS`.
/// Its latency interval opens in `EXITS_PENDING`, one entry per thread.
fn exits(session: &mut Session, events: impl Iterator<Item = (u64, u64)>) {
    let harness = session
        .kernel_mut()
        .load_harness(PROG_EXITS_HARNESS)
        .expect("loading the exit harness");
    for (thread, vcpu) in events {
        let mut options = RawTracePointRunOptions::new();
        let args = [
            HARNESS_KVM_EXIT,
            SYNTHETIC_PID,
            SYNTHETIC_PID + 1 + thread,
            vcpu,
            VMX,
            IO_INSTRUCTION,
            0,
        ];
        options.args[..args.len()].copy_from_slice(&args);
        harness.test_run(options).expect("BPF_PROG_TEST_RUN");
    }
}

/// The synthetic thread's counters, and the family's dropped events.
fn read(session: &Session) -> (Vec<(ExitCounterKey, u64)>, u64) {
    let totals = session.families().exits.counters().read();
    let ours = totals
        .counts
        .into_iter()
        .filter(|(k, _)| u64::from(k.pid) == SYNTHETIC_PID)
        .collect();
    (ours, totals.dropped)
}

#[test]
fn exits_beyond_the_counts_capacity_are_counted_as_dropped() {
    let test = "exits_beyond_the_counts_capacity_are_counted_as_dropped";
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        support::skip(test, &reason);
        return;
    }
    let mut session = Session::open(&Config::default()).expect("opening a session");
    let (_, dropped_before) = read(&session);

    // As loaded on this host: the map is sized for its CPUs (see `bpf::sizing`).
    let capacity = u64::from(
        kvmtop::bpf::sizing::loaded_capacity_of(EXITS_COUNTS_MAP).expect("a map of the table"),
    );
    let beyond = 500;
    // One thread (one pending interval), distinct vCPU ids: only EXITS_COUNTS fills. Real VMs
    // on this host may hold keys of their own in the session's map, so some of ours may find it
    // full sooner: each event is either counted or dropped, whichever.
    exits(&mut session, (0..capacity + beyond).map(|vcpu| (0, vcpu)));
    let (counted, dropped_after) = read(&session);
    let dropped = dropped_after - dropped_before;
    let counted_events: u64 = counted.iter().map(|(_, n)| n).sum();
    assert_eq!(
        counted_events,
        counted.len() as u64,
        "each synthetic key was hit once"
    );
    assert!(
        counted.len() as u64 <= capacity,
        "{} keys in a map of {capacity}",
        counted.len()
    );
    assert!(
        dropped >= beyond,
        "{beyond} exits beyond the capacity, {dropped} counted as dropped"
    );
    assert!(
        counted_events + dropped >= capacity + beyond,
        "events lost silently: {counted_events} counted + {dropped} dropped < {} sent",
        capacity + beyond
    );

    // A key that is already in the full map still counts. vCPU 0 went in first, into a map
    // with room.
    let first_tid = u32::try_from(SYNTHETIC_PID + 1).unwrap();
    let io = ExitReason::decode(ExitSource::KvmExit, 1, IO_INSTRUCTION);
    let count_of_first = |counted: &[(ExitCounterKey, u64)]| {
        counted
            .iter()
            .find(|(k, _)| k.tid == first_tid && k.vcpu_id == Some(0) && k.reason == io)
            .map(|(_, n)| *n)
    };
    assert_eq!(
        count_of_first(&counted),
        Some(1),
        "the first exit was counted"
    );
    exits(&mut session, std::iter::repeat_n((0, 0), 3));
    let (counted, dropped_last) = read(&session);
    assert_eq!(
        count_of_first(&counted),
        Some(4),
        "a key already in the full map counts on"
    );
    assert!(dropped_last >= dropped_after);
}

#[test]
fn exits_of_threads_beyond_the_pending_capacity_are_counted_as_dropped() {
    let test = "exits_of_threads_beyond_the_pending_capacity_are_counted_as_dropped";
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        support::skip(test, &reason);
        return;
    }
    let mut session = Session::open(&Config::default()).expect("opening a session");
    let (_, dropped_before) = read(&session);
    // One exit on each of more threads than `EXITS_PENDING` holds intervals for: the pending
    // intervals of the last ones find no room.
    let capacity = u64::from(PENDING_CAPACITY);
    let beyond = 300;
    exits(
        &mut session,
        (0..capacity + beyond).map(|thread| (thread + 1, 0)),
    );
    let (counted, dropped_after) = read(&session);
    // The counts map is sized for this host's CPUs and may hold fewer keys than there are
    // threads here (real VMs may hold keys in it too).
    let counts_capacity = u64::from(
        kvmtop::bpf::sizing::loaded_capacity_of(EXITS_COUNTS_MAP).expect("a map of the table"),
    );
    let all_keys = session.families().exits.counters().read().counts.len() as u64;
    let ours = counted.len() as u64;
    assert!(
        ours == capacity + beyond || all_keys == counts_capacity,
        "every exit has its counter, unless the counts map is full: {ours} of {} counted, \
         {all_keys} keys of {counts_capacity}",
        capacity + beyond
    );
    let dropped = dropped_after - dropped_before;
    assert!(
        dropped >= beyond,
        "{beyond} intervals beyond the pending capacity, {dropped} counted as dropped"
    );
}
