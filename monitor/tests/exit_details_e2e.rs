//! End to end with real QEMU/KVM guests: the exit view kvmtop builds from the tracepoints that
//! fire on every host (port I/O, halts, time in the VMM) agrees with bpftrace over the same
//! window.
//!
//! The guests are frozen (SIGSTOP) outside the window, so both observers see exactly the same
//! events: both attach while the guests are frozen, the guests run inside kvmtop's window, and
//! are frozen again before it closes.

mod support;

use std::{thread, time::Duration};

use guests::{Guest, GuestKind, GuestSpec};
use serde_json::Value;

/// Agreement required between kvmtop and bpftrace.
const TOLERANCE: f64 = 0.02;

/// Runs kvmtop's snapshot and a bpftrace program over one frozen window of `guest`; returns
/// the VM's entry in the snapshot, the whole snapshot, and bpftrace's output.
fn observe(guest: &Guest, bpftrace_program: &str, run_for: Duration) -> (Value, Value, String) {
    guest.freeze().unwrap();
    let mut bpftrace = support::bpftrace(bpftrace_program);
    let mut kvmtop = support::start_window(&[]);
    guest.thaw().unwrap();
    thread::sleep(run_for);
    guest.freeze().unwrap();
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);
    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == guest.pid())
        .unwrap_or_else(|| panic!("VM {} missing from {snapshot:#}", guest.pid()))
        .clone();
    (vm, snapshot, bpftrace.stdout_text())
}

/// Sum of a bpftrace map's values whose keys satisfy `select`.
fn bpftrace_count(output: &str, map: &str, select: impl Fn(&[i64]) -> bool) -> u64 {
    support::parse_bpftrace_map(output, map)
        .iter()
        .filter(|(keys, _)| select(keys))
        .map(|(_, n)| n)
        .sum()
}

/// Count of a single-value bpftrace map (`@name: N`), 0 when bpftrace never printed it.
fn bpftrace_scalar(output: &str, map: &str) -> u64 {
    let prefix = format!("@{map}: ");
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

fn details<'a>(vm: &'a Value, kind: &str) -> Option<&'a Value> {
    vm["exits"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == kind)
}

#[test]
fn port_0x80_count_matches_bpftrace_kvm_pio() {
    const TEST: &str = "port_0x80_count_matches_bpftrace_kvm_pio";
    if let Some(reason) = support::missing_prerequisite(true, &["bpftrace"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio("kvmtop-details-portio");
    let pid = guest.pid();
    // Ports by direction, and the intervals from a userspace exit to the thread's next KVM_RUN.
    // kvmtop sees a KVM_RUN start on kvm_fpu; the observer sees the ioctl itself.
    let program = format!(
        "tracepoint:kvm:kvm_pio /pid == {pid}/ {{ @pio[args->port, args->rw] = count(); }}
         tracepoint:kvm:kvm_userspace_exit /pid == {pid}/ {{ @start[tid] = nsecs; }}
         tracepoint:syscalls:sys_enter_ioctl /pid == {pid} && args->cmd == 0xae80 && @start[tid]/ {{
             @in_vmm = count(); delete(@start[tid]); }}"
    );
    let (vm, snapshot, reference) = observe(&guest, &program, Duration::from_secs(2));

    let pio = details(&vm, "pio").unwrap_or_else(|| panic!("no pio details in {vm:#}"));
    assert_eq!(pio["source"], "kvm:kvm_pio");
    let top = &pio["top"][0];
    assert_eq!(top["value"], "0x80", "{pio:#}");
    assert_eq!(top["sub"], "out");
    let expected = bpftrace_count(&reference, "pio", |k| k == [0x80, 1]);
    assert!(expected > 10_000, "the guest barely ran: {reference}");
    support::assert_within(
        "port 0x80 writes",
        top["count"].as_u64().unwrap(),
        expected,
        TOLERANCE,
    );
    support::assert_within(
        "port I/O exits, all ports",
        pio["count"].as_u64().unwrap(),
        bpftrace_count(&reference, "pio", |_| true),
        TOLERANCE,
    );

    // Time in the VMM: one interval per userspace exit whose next KVM_RUN fell in the window.
    let io = vm["exits"]["by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "userspace" && r["reason"] == "IO")
        .unwrap_or_else(|| panic!("no IO exits in {vm:#}"));
    let latency = &io["latency"];
    support::assert_within(
        "intervals in the VMM",
        latency["count"].as_u64().unwrap(),
        bpftrace_scalar(&reference, "in_vmm"),
        TOLERANCE,
    );
    let (p50, p99, max) = (
        latency["p50_ns"].as_u64().unwrap(),
        latency["p99_ns"].as_u64().unwrap(),
        latency["max_ns"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{latency:#}");
    let vcpu = &vm["vcpus"][0];
    let in_vmm = vcpu["time"]["in_vmm"].as_f64().expect("in_vmm share");
    assert!(in_vmm > 0.0 && in_vmm < 1.0, "{vcpu:#}");
    assert_eq!(snapshot["exits"]["sources"]["pio"], "live");
    assert_eq!(snapshot["exits"]["sources"]["kvm_run"], "live");
}

#[test]
fn idle_guest_halts_match_bpftrace() {
    const TEST: &str = "idle_guest_halts_match_bpftrace";
    if let Some(reason) = support::missing_prerequisite(true, &["bpftrace"]) {
        return support::skip(TEST, &reason);
    }
    let guest = Guest::start(&GuestSpec::new(GuestKind::Idle).name("kvmtop-details-idle"))
        .expect("starting the idle guest");
    guest
        .wait_for_vcpus(support::START_LIMIT)
        .expect("idle vCPUs");
    // Let the firmware reach the guest's halt loop before the window.
    thread::sleep(Duration::from_secs(2));
    let pid = guest.pid();
    let program = format!(
        "tracepoint:kvm:kvm_vcpu_wakeup /pid == {pid}/ {{ @wakeups[args->waited, args->valid] = count(); }}
         tracepoint:kvm:kvm_halt_poll_ns /pid == {pid}/ {{ @polls[args->grow] = count(); }}"
    );
    let (vm, _, reference) = observe(&guest, &program, Duration::from_secs(3));

    let halts: Vec<&Value> = vm["exits"]["by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "halt")
        .collect();
    let count = |name: &str| -> u64 {
        halts
            .iter()
            .filter(|r| r["reason"] == name)
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    let expected = bpftrace_count(&reference, "wakeups", |_| true);
    assert!(expected >= 20, "expected ~18 wakeups/s: {reference}");
    support::assert_within(
        "halts",
        vm["exits"]["halts"].as_u64().unwrap(),
        expected,
        TOLERANCE,
    );
    support::assert_within(
        "halts that blocked",
        count("HALT_BLOCKED") + count("HALT_BLOCKED_SPURIOUS"),
        bpftrace_count(&reference, "wakeups", |k| k[0] == 1),
        TOLERANCE,
    );
    support::assert_within(
        "halts ended while polling",
        count("HALT_POLLED") + count("HALT_POLLED_SPURIOUS"),
        bpftrace_count(&reference, "wakeups", |k| k[0] == 0),
        TOLERANCE,
    );
    let polls = details(&vm, "halt_poll").map_or(0, |g| g["count"].as_u64().unwrap());
    support::assert_within(
        "halt-poll window changes",
        polls,
        bpftrace_count(&reference, "polls", |_| true),
        TOLERANCE,
    );
    // An idle guest spends most of its time halted.
    let halted = vm["vcpus"][0]["time"]["halted"]
        .as_f64()
        .expect("halted share");
    assert!(halted > 0.2, "halted share {halted} in {vm:#}");
}

#[test]
fn perf_still_counts_the_events_kvmtop_traces() {
    const TEST: &str = "perf_still_counts_the_events_kvmtop_traces";
    if let Some(reason) = support::missing_prerequisite(true, &["perf"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio("kvmtop-details-perf");
    let mut kvmtop = support::start_window(&[]);
    // With kvmtop's programs attached to the same tracepoints, perf's own counting of them
    // must go on (a tracepoint program that returns 0 would drop the events for perf).
    let output = std::process::Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "kvm:kvm_userspace_exit,kvm:kvm_pio",
            "-p",
        ])
        .arg(guest.pid().to_string())
        .args(["--", "sleep", "1"])
        .output()
        .expect("running perf");
    let text = String::from_utf8_lossy(&output.stderr);
    for event in ["kvm:kvm_userspace_exit", "kvm:kvm_pio"] {
        let count: u64 = text
            .lines()
            .find(|l| l.split(',').nth(2) == Some(event))
            .and_then(|l| l.split(',').next()?.parse().ok())
            .unwrap_or(0);
        assert!(
            count > 1_000,
            "perf counted {count} {event} while kvmtop ran:\n{text}"
        );
    }
    support::end_window(&mut kvmtop);
}
