//! The `kvm_exit` counting logic, driven through `BPF_PROG_TEST_RUN` with synthetic exits.
//!
//! `kvm:kvm_exit` never fires on hosts whose KVM backend does not use VMX/SVM exits (this test
//! machine's PVM, some nested set-ups), so the real kernel code path is exercised here with
//! synthetic arguments through a raw-tracepoint harness that shares the counting function with
//! the tracepoint program.

mod support;

use aya::programs::{RawTracePointRunOptions, TestRun as _};
use kvmtop::{
    session::{Config, Session},
    signals::exits::{ExitCounterKey, ExitReason},
};
use monitor_common::exits::{PROG_KVM_EXIT_HARNESS, PROG_USERSPACE_EXIT_HARNESS};

/// Pids far above `pid_max`, so no real VM can collide with them.
const SYNTHETIC_PID: u32 = 4_000_000_001;

fn run(session: &mut Session, program: &str, args: &[u64]) {
    let harness = session
        .kernel_mut()
        .load_harness(program)
        .expect("loading harness");
    let mut options = RawTracePointRunOptions::new();
    options.args[..args.len()].copy_from_slice(args);
    harness.test_run(options).expect("BPF_PROG_TEST_RUN");
}

fn counts_for(session: &Session, pid: u32) -> Vec<(ExitCounterKey, u64)> {
    let mut counts: Vec<_> = session
        .exit_counters()
        .read()
        .counts
        .into_iter()
        .filter(|(k, _)| k.pid == pid)
        .collect();
    counts.sort();
    counts
}

#[test]
fn synthetic_vmx_and_svm_exits_are_decoded_by_name() {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip("synthetic_vmx_and_svm_exits_are_decoded_by_name", &reason);
    }
    let mut session = Session::open(&Config::default()).expect("opening a session");
    let pid = u64::from(SYNTHETIC_PID);
    // tgid, tid, vcpu_id, isa (1 = VMX, 2 = SVM), raw exit reason.
    for _ in 0..3 {
        run(
            &mut session,
            PROG_KVM_EXIT_HARNESS,
            &[pid, pid + 1, 0, 1, 30],
        ); // IO_INSTRUCTION
    }
    run(
        &mut session,
        PROG_KVM_EXIT_HARNESS,
        &[pid, pid + 1, 0, 1, 0x8000_0021],
    ); // failed entry
    run(
        &mut session,
        PROG_KVM_EXIT_HARNESS,
        &[pid, pid + 2, 1, 2, 0x7b],
    ); // SVM io
    run(
        &mut session,
        PROG_KVM_EXIT_HARNESS,
        &[pid, pid + 2, 1, 2, 0x400],
    ); // SVM npf
    run(
        &mut session,
        PROG_KVM_EXIT_HARNESS,
        &[pid, pid + 2, 1, 2, 0x1234],
    ); // unknown SVM code

    let named: Vec<(u32, Option<u32>, String, String, u64)> = counts_for(&session, SYNTHETIC_PID)
        .into_iter()
        .map(|(k, n)| {
            let isa = k.reason.isa().map_or("-", |i| i.as_str()).to_owned();
            (
                k.tid - SYNTHETIC_PID,
                k.vcpu_id,
                isa,
                k.reason.name().into_owned(),
                n,
            )
        })
        .collect();
    let expected = [
        (1, Some(0), "vmx", "IO_INSTRUCTION", 3),
        (1, Some(0), "vmx", "INVALID_STATE FAILED_VMENTRY", 1),
        (2, Some(1), "svm", "npf", 1),
        (2, Some(1), "svm", "io", 1),
        (2, Some(1), "svm", "0x1234", 1),
    ];
    for (tid, vcpu, isa, name, count) in expected {
        assert!(
            named
                .iter()
                .any(|e| *e == (tid, vcpu, isa.to_owned(), name.to_owned(), count)),
            "expected {name} ({isa}, vcpu {vcpu:?}) x{count} in {named:#?}"
        );
    }
    assert_eq!(
        named.len(),
        expected.len(),
        "unexpected extra counters: {named:#?}"
    );
}

#[test]
fn synthetic_userspace_exits_and_failed_runs_are_decoded() {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(
            "synthetic_userspace_exits_and_failed_runs_are_decoded",
            &reason,
        );
    }
    let mut session = Session::open(&Config::default()).expect("opening a session");
    let pid = u64::from(SYNTHETIC_PID + 100);
    // tgid, tid, reason (KVM_EXIT_*), errno (negative = KVM_RUN failed).
    run(&mut session, PROG_USERSPACE_EXIT_HARNESS, &[pid, pid, 2, 0]); // IO
    run(&mut session, PROG_USERSPACE_EXIT_HARNESS, &[pid, pid, 2, 0]);
    run(&mut session, PROG_USERSPACE_EXIT_HARNESS, &[pid, pid, 6, 0]); // MMIO
    run(
        &mut session,
        PROG_USERSPACE_EXIT_HARNESS,
        &[pid, pid, 2, (-4_i64).cast_unsigned()],
    ); // EINTR
    let counts = counts_for(&session, SYNTHETIC_PID + 100);
    let find = |reason: ExitReason| {
        counts
            .iter()
            .find(|(k, _)| k.reason == reason)
            .map(|(_, n)| *n)
    };
    assert_eq!(
        find(ExitReason::Userspace { exit: 2 }),
        Some(2),
        "{counts:?}"
    );
    assert_eq!(
        find(ExitReason::Userspace { exit: 6 }),
        Some(1),
        "{counts:?}"
    );
    assert_eq!(
        find(ExitReason::UserspaceError { errno: 4 }),
        Some(1),
        "{counts:?}"
    );
    assert!(counts.iter().all(|(k, _)| k.vcpu_id.is_none()));
    assert_eq!(
        ExitReason::UserspaceError { errno: 4 }.name(),
        "RESTART_EINTR"
    );
}
