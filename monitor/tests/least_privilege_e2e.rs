//! kvmtop run as `nobody` with only the capabilities of its systemd unit
//! (packaging/systemd/kvmtop.service, read from the file), against a real guest run by root:
//! it finds the VM, its counts agree with bpftrace, and once its programs are attached every
//! one of its threads holds only what reading `/proc` needs. As root it gives up the rest too,
//! bounding set included. Without a capability it needs, it stops and names it.

mod least_privilege_support;
mod support;
#[path = "../src/output/serve/test_pki.rs"]
mod test_pki;

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use least_privilege_support::{
    Binary, INTERVAL, RootOnlyTls, as_nobody, assert_every_thread_holds, expected_kept, listed,
    mask, scrape, serve_args, start_serve, unit_capabilities, unit_capabilities_without,
    userspace_exits, wait_for_vm,
};
use support::Observed;

/// Agreement required between kvmtop and bpftrace, as in `snapshot_e2e`.
const TOLERANCE: f64 = 0.02;

fn missing(tools: &[&str], needs_guests: bool) -> Option<String> {
    support::missing_prerequisite(needs_guests, tools)
}

#[test]
fn snapshot_as_nobody_with_the_unit_s_capabilities_agrees_with_bpftrace() {
    const TEST: &str = "snapshot_as_nobody_with_the_unit_s_capabilities_agrees_with_bpftrace";
    const NAME: &str = "kvmtop-e2e-nobody-snapshot";
    if let Some(reason) = missing(&["bpftrace", "setpriv"], true) {
        return support::skip(TEST, &reason);
    }
    let (guest, vcpus) = support::start_portio(NAME);
    guest.freeze().unwrap();
    let binary = Binary::for_nobody();
    let caps = unit_capabilities();

    let mut bpftrace = support::bpftrace_userspace_exits(&[guest.pid()]);
    let mut command = as_nobody(&binary.path, &caps);
    command.args(["snapshot", "--format", "json", "--duration", "3600"]);
    let mut kvmtop = Observed::spawn(command);
    kvmtop.wait_for("sampling for", Duration::from_mins(1));
    // The window has begun, so the programs are attached and the capabilities dropped.
    assert_every_thread_holds(kvmtop.child.id(), &expected_kept(&caps), Some(mask(&caps)));

    guest.thaw().unwrap();
    thread::sleep(Duration::from_secs(2));
    guest.freeze().unwrap();
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);
    let expected = bpftrace_total(&bpftrace);

    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == guest.pid())
        .unwrap_or_else(|| panic!("{NAME} (run by root) missing as nobody: {snapshot:#}"));
    assert_eq!(vm["name"], NAME);
    // The vCPU threads are known: fd links and task/*/syscall were readable.
    for guests::VcpuThread { index, tid } in &vcpus {
        assert!(
            vm["vcpus"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["index"] == *index && v["tid"] == *tid),
            "vCPU {index} on thread {tid} not in {}",
            vm["vcpus"]
        );
    }
    // Processes that even root cannot inspect may be reported (this machine's pid 1 is one),
    // but never with capabilities as the remedy: kvmtop holds those it would name.
    let problems = snapshot["problems"].to_string();
    assert!(
        !problems.contains("CAP_SYS_PTRACE"),
        "nobody with the unit's capabilities asks for more: {problems}"
    );
    support::assert_within(
        "userspace exits, kvmtop as nobody",
        vm["exits"]["userspace_total"].as_u64().unwrap(),
        expected,
        TOLERANCE,
    );
}

#[test]
fn serve_as_nobody_reads_a_root_only_key_and_its_counters_agree_with_bpftrace() {
    const TEST: &str = "serve_as_nobody_reads_a_root_only_key_and_its_counters_agree_with_bpftrace";
    const NAME: &str = "kvmtop-e2e-nobody-serve";
    if let Some(reason) = missing(&["bpftrace", "setpriv", "curl"], true) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(NAME);
    guest.freeze().unwrap();
    let binary = Binary::for_nobody();
    let caps = unit_capabilities();
    let tls = RootOnlyTls::write();

    let mut bpftrace = support::bpftrace_userspace_exits(&[guest.pid()]);
    let mut command = as_nobody(&binary.path, &caps);
    serve_args(&mut command, &tls);
    let (mut kvmtop, address) = start_serve(command);
    let kept = expected_kept(&caps);
    kvmtop.wait_for(
        &format!(
            "kvmtop: capabilities kept after loading the eBPF programs: {}",
            listed(&kept)
        ),
        Duration::from_secs(5),
    );

    // The VM is watched once it is in the metrics; frozen since before kvmtop started, it has
    // made no exit yet.
    let before = wait_for_vm(&tls, address, NAME);
    guest.thaw().unwrap();
    thread::sleep(Duration::from_secs(2));
    guest.freeze().unwrap();
    let after = settled_exits(&tls, address, NAME);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);

    // After several connections, each of which read the key again in a thread of the blocking
    // pool started after the drop.
    let names = assert_every_thread_holds(kvmtop.child.id(), &kept, Some(mask(&caps)));
    eprintln!("threads checked: {names:?}");
    assert!(
        names.len() >= 3,
        "expected the main thread, the sampler and tokio's: {names:?}"
    );
    support::assert_within(
        "userspace exits, kvmtop serve as nobody",
        after - before,
        bpftrace_total(&bpftrace),
        TOLERANCE,
    );
    assert!(matches!(kvmtop.child.try_wait(), Ok(None)), "kvmtop exited");
}

#[test]
fn as_root_kvmtop_keeps_two_capabilities_in_every_thread_and_cuts_its_bounding_set() {
    const TEST: &str =
        "as_root_kvmtop_keeps_two_capabilities_in_every_thread_and_cuts_its_bounding_set";
    const NAME: &str = "kvmtop-e2e-root-serve";
    if let Some(reason) = missing(&["curl"], true) {
        return support::skip(TEST, &reason);
    }
    let (_guest, _) = support::start_portio(NAME);
    let tls = RootOnlyTls::write();
    let mut command = support::kvmtop();
    serve_args(&mut command, &tls);
    let (mut kvmtop, address) = start_serve(command);
    let root: Vec<String> = caps::all().iter().map(ToString::to_string).collect();
    let kept = expected_kept(&root);
    kvmtop.wait_for(
        &format!(
            "kvmtop: capabilities kept after loading the eBPF programs: {}",
            listed(&kept)
        ),
        Duration::from_secs(5),
    );
    let exits = wait_for_vm(&tls, address, NAME);
    // The guest runs: its counter goes on rising, so the VMM's /proc entries stay readable to
    // a root kvmtop that holds fewer capabilities than the VMM.
    let deadline = Instant::now() + Duration::from_secs(30);
    while userspace_exits(&scrape(&tls, address), NAME) <= exits {
        assert!(
            Instant::now() < deadline,
            "the exit counter stopped at {exits}"
        );
        thread::sleep(INTERVAL);
    }
    let names = assert_every_thread_holds(kvmtop.child.id(), &kept, Some(mask(&kept)));
    eprintln!("threads checked: {names:?}");
}

#[test]
fn a_missing_capability_is_named() {
    const TEST: &str = "a_missing_capability_is_named";
    if let Some(reason) = missing(&["setpriv"], false) {
        return support::skip(TEST, &reason);
    }
    let binary = Binary::for_nobody();
    let cases: Vec<(Vec<String>, &[&str], &[&str])> = vec![
        (
            Vec::new(),
            &[
                "root",
                "CAP_BPF (",
                "CAP_PERFMON (",
                "CAP_DAC_READ_SEARCH (reading tracefs",
            ],
            &[],
        ),
        (
            unit_capabilities_without("CAP_DAC_READ_SEARCH"),
            &["missing: CAP_DAC_READ_SEARCH (reading tracefs: '/sys/kernel/tracing'"],
            &["CAP_BPF (", "CAP_PERFMON (", "is tracefs mounted"],
        ),
        (
            unit_capabilities_without("CAP_BPF"),
            &["missing: CAP_BPF ("],
            &["CAP_PERFMON (", "CAP_DAC_READ_SEARCH ("],
        ),
        (
            unit_capabilities_without("CAP_PERFMON"),
            &["missing: CAP_PERFMON ("],
            &["CAP_BPF (", "CAP_DAC_READ_SEARCH ("],
        ),
    ];
    for (caps, named, not_named) in cases {
        let output = as_nobody(&binary.path, &caps)
            .args(["snapshot", "--duration", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("with {caps:?}: {stderr}");
        assert_eq!(output.status.code(), Some(1), "with {caps:?}: {stderr}");
        assert!(output.stdout.is_empty(), "with {caps:?}: output on stdout");
        for needle in named {
            assert!(
                stderr.contains(needle),
                "with {caps:?}, no {needle:?}: {stderr}"
            );
        }
        for needle in not_named {
            assert!(
                !stderr.contains(needle),
                "with {caps:?}, {needle:?}: {stderr}"
            );
        }
    }
}

#[test]
fn without_sys_ptrace_a_root_vm_is_reported_as_uninspectable() {
    const TEST: &str = "without_sys_ptrace_a_root_vm_is_reported_as_uninspectable";
    const NAME: &str = "kvmtop-e2e-nobody-no-ptrace";
    if let Some(reason) = missing(&["setpriv"], true) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(NAME);
    let binary = Binary::for_nobody();
    let output = as_nobody(&binary.path, &unit_capabilities_without("CAP_SYS_PTRACE"))
        .args(["snapshot", "--format", "json", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kvmtop failed: {stderr}");
    let snapshot: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        !snapshot["vms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|vm| vm["pid"] == guest.pid()),
        "{NAME} shown although its fds cannot be read: {snapshot:#}"
    );
    let problem = snapshot["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .find(|p| p.contains("could not be inspected"))
        .unwrap_or_else(|| panic!("no problem reported: {}", snapshot["problems"]));
    // The guest is one of them, but the list of pids is cut after three.
    for needle in ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"] {
        assert!(problem.contains(needle), "{needle:?} not in {problem:?}");
    }
}

/// The userspace exits of the VM `name` once the counter has stopped moving: the guest is
/// frozen, and samples taken after the freeze have been published.
fn settled_exits(tls: &RootOnlyTls, address: SocketAddr, name: &str) -> u64 {
    thread::sleep(INTERVAL * 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = userspace_exits(&scrape(tls, address), name);
    loop {
        thread::sleep(INTERVAL * 2);
        let now = userspace_exits(&scrape(tls, address), name);
        if now == last && now > 0 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the counter of {name} did not settle: {last}, then {now}"
        );
        last = now;
    }
}

/// Every userspace exit bpftrace counted.
fn bpftrace_total(bpftrace: &Observed) -> u64 {
    let total = support::parse_bpftrace_map(&bpftrace.stdout_text(), "exits")
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(
        total > 0,
        "bpftrace saw nothing: {}",
        bpftrace.stdout_text()
    );
    total
}

#[test]
fn the_unit_and_these_tests_agree_on_what_kvmtop_needs() {
    // Guards the parsing above: the four capabilities, in both lists.
    let caps = unit_capabilities();
    for cap in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap} not in {caps:?}");
    }
    assert_eq!(caps.len(), 4, "{caps:?}");
    let bounding: Vec<String> = least_privilege_support::unit_values("CapabilityBoundingSet")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_owned)
        .collect();
    assert_eq!(mask(&bounding), mask(&caps));
}
