//! End to end with real QEMU/KVM guests: `kvmtop snapshot` finds the VMs with the right identity
//! and vCPU threads, and its userspace-exit counts agree with bpftrace over the same window.
//!
//! Both observers see exactly the same events because the guests are frozen (SIGSTOP) outside
//! the window: both attach while the guests are frozen, the guests run for a while inside
//! kvmtop's window, then are frozen again before kvmtop's window closes.

mod support;

use std::{collections::HashMap, thread, time::Duration};

use guests::{Guest, GuestKind, GuestSpec};
use serde_json::Value;

/// Agreement required between kvmtop and bpftrace.
const TOLERANCE: f64 = 0.02;

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
fn snapshot_lists_guests_and_agrees_with_bpftrace() {
    const TEST: &str = "snapshot_lists_guests_and_agrees_with_bpftrace";
    if let Some(reason) = support::missing_prerequisite(true, &["bpftrace"]) {
        return support::skip(TEST, &reason);
    }
    let portio = Guest::start(
        &GuestSpec::new(GuestKind::PortIo)
            .name("kvmtop-e2e-portio")
            .debug_threads(true),
    )
    .expect("starting the port-I/O guest");
    let idle = Guest::start(&GuestSpec::new(GuestKind::Idle).name("kvmtop-e2e-idle"))
        .expect("starting the idle guest");
    let portio_vcpus = portio
        .wait_for_vcpus(support::START_LIMIT)
        .expect("port-I/O vCPUs");
    let idle_vcpus = idle
        .wait_for_vcpus(support::START_LIMIT)
        .expect("idle vCPUs");
    // Let the idle guest's firmware reach its halt loop before the window.
    thread::sleep(Duration::from_secs(2));
    portio.freeze().unwrap();
    idle.freeze().unwrap();

    let pids = [portio.pid(), idle.pid()];
    let mut bpftrace = support::bpftrace_userspace_exits(&pids);
    let mut kvmtop = support::start_window(&[]);

    portio.thaw().unwrap();
    idle.thaw().unwrap();
    thread::sleep(Duration::from_secs(2));
    portio.freeze().unwrap();
    idle.freeze().unwrap();

    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);
    let reference = support::parse_bpftrace_map(&bpftrace.stdout_text(), "exits");
    assert!(
        !reference.is_empty(),
        "bpftrace saw nothing: {}",
        bpftrace.stdout_text()
    );

    validate_against_schema(&snapshot);

    for (guest, name, vcpus) in [
        (&portio, "kvmtop-e2e-portio", &portio_vcpus),
        (&idle, "kvmtop-e2e-idle", &idle_vcpus),
    ] {
        let vm = snapshot["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|vm| vm["pid"] == guest.pid())
            .unwrap_or_else(|| panic!("VM {name} (pid {}) missing from {snapshot:#}", guest.pid()));
        assert_eq!(vm["name"], name);
        assert_eq!(vm["vmm"], "qemu");
        let listed: Vec<(u64, u64)> = vm["vcpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["index"].as_u64().expect("vCPU index"),
                    v["tid"].as_u64().expect("vCPU tid"),
                )
            })
            .collect();
        // The threads bpftrace saw entering KVM_RUN are the vCPU threads.
        let run_tids: Vec<u64> = reference
            .iter()
            .filter(|(k, _)| k[0] == i64::from(guest.pid()))
            .map(|(k, _)| k[1].cast_unsigned())
            .collect();
        for guests::VcpuThread { index, tid } in vcpus {
            assert!(
                listed.contains(&(u64::from(*index), u64::from(*tid))),
                "{name}: vCPU {index} on thread {tid} not in {listed:?}"
            );
        }
        assert!(
            run_tids
                .iter()
                .all(|tid| listed.iter().any(|(_, t)| t == tid)),
            "{name}: threads in KVM_RUN {run_tids:?} not all listed as vCPUs {listed:?}"
        );

        // Per reason, userspace exits agree with bpftrace.
        let mut expected: HashMap<(i64, i64), u64> = HashMap::new();
        for (keys, count) in reference
            .iter()
            .filter(|(k, _)| k[0] == i64::from(guest.pid()))
        {
            *expected.entry((keys[2], keys[3])).or_default() += count;
        }
        let expected_total: u64 = expected.values().sum();
        let measured_total = vm["exits"]["userspace_total"].as_u64().unwrap();
        support::assert_within(
            &format!("{}: {}", name, "userspace exits"),
            measured_total,
            expected_total,
            TOLERANCE,
        );
        for ((reason, errno), count) in &expected {
            let code = if *errno < 0 { -errno } else { *reason };
            let measured: u64 = vm["exits"]["by_reason"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["source"] == "userspace" && r["code"] == code)
                .filter(|r| (*errno < 0) == is_failed_run(r["reason"].as_str().unwrap()))
                .map(|r| r["count"].as_u64().unwrap())
                .sum();
            support::assert_within(
                &format!("{}: {}", name, &format!("reason {reason} errno {errno}")),
                measured,
                *count,
                TOLERANCE,
            );
        }
    }

    // The port-I/O guest makes tens of thousands of IO exits per second: the IO reason must lead.
    let portio_vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == portio.pid())
        .unwrap();
    assert_eq!(portio_vm["exits"]["by_reason"][0]["reason"], "IO");
    assert!(
        portio_vm["exits"]["by_reason"][0]["count"]
            .as_u64()
            .unwrap()
            > 10_000
    );
    assert_eq!(portio_vm["exits"]["sources"]["userspace"], "live");
    let kvm_exit = snapshot["exits"]["sources"]["kvm_exit"].as_str().unwrap();
    assert!(
        matches!(kvm_exit, "live" | "silent"),
        "kvm_exit source: {kvm_exit}"
    );
}

/// Names kvmtop gives a `KVM_RUN` that returned -errno instead of exiting.
fn is_failed_run(reason: &str) -> bool {
    reason == "RESTART_EINTR" || reason.starts_with("ERROR_ERRNO_")
}

fn validate_against_schema(snapshot: &Value) {
    let schema: Value = serde_json::from_str(include_str!("../schema/snapshot.schema.json"))
        .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(snapshot)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "snapshot does not match its schema: {errors:#?}"
    );
}

/// A VMM whose vCPU threads have names that say nothing and sleep in its own code between
/// exits (as one that handles halts itself does) leaves no name to read and almost never a
/// `KVM_RUN` in `/proc/TID/syscall`: each vCPU is matched to its thread from what the kernel
/// programs see of `KVM_RUN` alone.
#[test]
fn vcpu_threads_that_sleep_outside_kvm_run_are_matched_from_the_kernel() {
    const TEST: &str = "vcpu_threads_that_sleep_outside_kvm_run_are_matched_from_the_kernel";
    if let Some(reason) = support::missing_prerequisite(false, &[])
        .or_else(|| guests::preflight_kind(GuestKind::MiniVmm).err())
    {
        return support::skip(TEST, &reason);
    }
    let spec = GuestSpec::new(GuestKind::MiniVmm)
        .name("sleepy")
        .vcpus(3)
        .extra_args(["--anonymous-vcpus", "--sleep-after-exit", "20"]);
    let vmm = Guest::start(&spec).expect("starting the mini VMM");
    let vcpus = vmm
        .wait_for_vcpus(support::START_LIMIT)
        .expect("mini VMM vCPUs");
    for guests::VcpuThread { tid, .. } in &vcpus {
        let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", vmm.pid()))
            .expect("the vCPU thread's name");
        assert_eq!(
            comm.trim_end(),
            "worker",
            "thread {tid}: the name must not tell"
        );
    }
    let mut kvmtop = support::start_window(&[]);
    thread::sleep(Duration::from_secs(2));
    let snapshot = support::end_window(&mut kvmtop);
    let listed = listed_vcpus(mini_vmm(&snapshot, vmm.pid()));
    let expected: Vec<(Option<u64>, Option<u64>)> = vcpus
        .iter()
        .map(|v| (Some(u64::from(v.index)), Some(u64::from(v.tid))))
        .collect();
    assert_eq!(
        listed, expected,
        "kvmtop's vCPUs (index, tid) against the VMM's own"
    );
}

#[test]
fn a_non_qemu_vmm_is_found_with_its_vcpu_threads() {
    const TEST: &str = "a_non_qemu_vmm_is_found_with_its_vcpu_threads";
    if let Some(reason) = support::missing_prerequisite(false, &["bpftrace"])
        .or_else(|| guests::preflight_kind(GuestKind::MiniVmm).err())
    {
        return support::skip(TEST, &reason);
    }
    let vmm = Guest::start(&GuestSpec::new(GuestKind::MiniVmm).name("mini").vcpus(2))
        .expect("starting the mini VMM");
    let vcpus = vmm
        .wait_for_vcpus(support::START_LIMIT)
        .expect("mini VMM vCPUs");
    vmm.freeze().unwrap();
    let mut bpftrace = support::bpftrace_userspace_exits(&[vmm.pid()]);
    let mut kvmtop = support::start_window(&[]);
    vmm.thaw().unwrap();
    thread::sleep(Duration::from_secs(2));
    vmm.freeze().unwrap();
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);
    let expected: u64 = support::parse_bpftrace_map(&bpftrace.stdout_text(), "exits")
        .iter()
        .map(|(_, n)| n)
        .sum();

    validate_against_schema(&snapshot);
    let vm = mini_vmm(&snapshot, vmm.pid());
    assert_eq!(vm["vmm"], "minivmm");
    let listed = listed_vcpus(vm);
    for guests::VcpuThread { index, tid } in &vcpus {
        assert!(
            listed.contains(&(Some(u64::from(*index)), Some(u64::from(*tid)))),
            "vCPU {index} on thread {tid} not in {listed:?}"
        );
    }
    support::assert_within(
        &format!("{}: {}", "mini", "userspace exits"),
        vm["exits"]["userspace_total"].as_u64().unwrap(),
        expected,
        TOLERANCE,
    );
}

/// The VM of process `pid` in `snapshot`.
fn mini_vmm(snapshot: &Value, pid: u32) -> &Value {
    snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == pid)
        .unwrap_or_else(|| panic!("mini VMM missing from {snapshot:#}"))
}

/// A VM's vCPUs as kvmtop lists them: (index, thread id).
fn listed_vcpus(vm: &Value) -> Vec<(Option<u64>, Option<u64>)> {
    vm["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["index"].as_u64(), v["tid"].as_u64()))
        .collect()
}
