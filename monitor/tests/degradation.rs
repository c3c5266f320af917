//! Faults that must degrade, not abort: no privileges, a tracepoint missing on this kernel, an
//! interrupted snapshot window, a refused fault hook, a process lifecycle source missing.

mod support;

use std::process::Command;

#[test]
fn without_privileges_kvmtop_names_what_is_missing() {
    if !support::is_root() {
        return support::skip(
            "without_privileges_kvmtop_names_what_is_missing",
            "needs root to start kvmtop as the unprivileged user 'nobody'",
        );
    }
    let Some(setpriv) = support::which("setpriv") else {
        return support::skip(
            "without_privileges_kvmtop_names_what_is_missing",
            "setpriv (util-linux) missing",
        );
    };
    // The test binary's kvmtop sits under the build tree, which may not be readable by nobody:
    // copy it somewhere that is.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("kvmtop");
    std::fs::copy(env!("CARGO_BIN_EXE_kvmtop"), &binary).unwrap();
    set_mode(dir.path(), 0o755);
    set_mode(&binary, 0o755);
    let output = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&binary)
        .args(["snapshot", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "kvmtop should fail without privileges; stderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1));
    for needle in ["root", "CAP_BPF", "CAP_PERFMON"] {
        assert!(
            stderr.contains(needle),
            "error should name {needle}: {stderr}"
        );
    }
    assert!(output.stdout.is_empty(), "nothing on stdout on failure");
}

#[test]
fn a_missing_tracepoint_makes_its_source_unavailable_and_the_rest_keeps_running() {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(
            "a_missing_tracepoint_makes_its_source_unavailable_and_the_rest_keeps_running",
            &reason,
        );
    }
    // A tracefs view of this kernel without kvm:kvm_exit.
    let real = std::path::Path::new("/sys/kernel/tracing/events/kvm/kvm_userspace_exit/format");
    if !real.exists() {
        return support::skip(
            "a_missing_tracepoint_makes_its_source_unavailable_and_the_rest_keeps_running",
            "tracefs is not mounted or KVM tracepoints are absent",
        );
    }
    let tracefs = tempfile::tempdir().unwrap();
    let event_dir = tracefs.path().join("events/kvm/kvm_userspace_exit");
    std::fs::create_dir_all(&event_dir).unwrap();
    std::fs::copy(real, event_dir.join("format")).unwrap();

    let (snapshot, kvmtop) =
        support::run_snapshot(0.5, &["--tracefs".as_ref(), tracefs.path().as_os_str()]);
    let kvm_exit = snapshot["exits"]["sources"]["kvm_exit"].as_str().unwrap();
    assert!(
        kvm_exit.starts_with("unavailable: ") && kvm_exit.contains("kvm:kvm_exit"),
        "kvm_exit source should say why it is unavailable, got {kvm_exit:?}"
    );
    let userspace = snapshot["exits"]["sources"]["userspace"].as_str().unwrap();
    assert!(
        matches!(userspace, "live" | "silent"),
        "userspace source should run, got {userspace:?}"
    );
    assert!(
        kvmtop
            .stderr_lines
            .iter()
            .any(|l| l.contains("kvm_exit") && l.contains("unavailable")),
        "the unavailable source should be reported on stderr too: {:?}",
        kvmtop.stderr_lines
    );
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_interrupt_ends_the_snapshot_window_early_and_still_reports_it() {
    const TEST: &str = "an_interrupt_ends_the_snapshot_window_early_and_still_reports_it";
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(TEST, &reason);
    }
    // An hour-long window, interrupted after a second.
    let mut kvmtop = support::start_window(&[]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let snapshot = support::end_window(&mut kvmtop);
    let seconds = snapshot["window"]["duration_seconds"].as_f64().unwrap();
    assert!(
        (1.0..10.0).contains(&seconds),
        "the window should end at the interrupt, about 1 s in: {seconds} s"
    );
    assert!(
        kvmtop
            .stderr_lines
            .iter()
            .any(|l| l.contains("interrupted")),
        "kvmtop should say the window was cut short: {:?}",
        kvmtop.stderr_lines
    );
}

/// The kernel's own NUMA line of a thread's `sched` file, as a test reads it: `key` of
/// `key : value` lines, or of `current_node=N, numa_group_id=G`.
fn sched_value(pid: u32, tid: u32, key: &str) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")).ok()?;
    text.lines().find_map(|line| {
        let line = line.split(',').next()?;
        let (k, v) = line.split_once(':').or_else(|| line.split_once('='))?;
        (k.trim() == key).then(|| v.trim().parse().ok())?
    })
}

#[test]
fn a_refused_fault_hook_falls_back_to_procfs_and_says_so() {
    const TEST: &str = "a_refused_fault_hook_falls_back_to_procfs_and_says_so";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let (guest, vcpus) = support::start_portio("numa-fallback");
    let (snapshot, _kvmtop) = support::run_snapshot(2.0, &[]);
    let numa = &snapshot["numa"];
    let hook = numa["sources"]["numa_fault"].as_str().unwrap();
    if !hook.starts_with("unavailable: ") {
        assert_eq!(numa["fault_source"], "hook");
        assert!(numa["sources"]["numa_fault_procfs"].is_null(), "{numa}");
        return support::skip(
            TEST,
            "task_numa_fault can be hooked on this kernel, so the procfs fallback is not used",
        );
    }
    let has_statistics = sched_value(std::process::id(), std::process::id(), "total_numa_faults");
    if has_statistics.is_none() {
        assert_eq!(numa["fault_source"], "none", "{numa}");
        let state = numa["sources"]["numa_fault_procfs"].as_str().unwrap();
        assert!(state.contains("CONFIG_NUMA_BALANCING"), "{state}");
        return support::skip(TEST, "this kernel prints no NUMA balancing statistics");
    }
    // The fallback runs, names itself and where it reads, and the hook's refusal stays visible.
    assert_eq!(numa["fault_source"], "procfs_fallback", "{numa}");
    let state = numa["sources"]["numa_fault_procfs"].as_str().unwrap();
    assert!(matches!(state, "live" | "silent"), "{state}");
    assert_eq!(
        numa["hooks"]["numa_fault_procfs"],
        "procfs:/proc/PID/task/TID/sched"
    );
    // The placement tracepoints are attached wherever sched events exist (as BTF, raw or
    // classic tracepoints, like the scheduler's).
    for source in ["sched_move_numa", "sched_swap_numa", "sched_stick_numa"] {
        let state = numa["sources"][source].as_str().unwrap();
        assert!(matches!(state, "live" | "silent"), "{source}: {state}");
    }

    let pid = guest.pid();
    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == pid)
        .expect("the guest in the snapshot");
    let balancing = &vm["numa"]["balancing"];
    assert!(vm["numa"]["faults"].is_null(), "no hook, no hook figures");
    // Read once in a 2 s window: each VM is read at most every 10 s.
    assert!(
        balancing["age_seconds"].as_f64().unwrap() < 10.0,
        "{balancing}"
    );
    assert!(
        balancing["migrated_pages"].is_null(),
        "one reading has no span"
    );
    // Every vCPU thread, with the node and preference the kernel prints for it (the kernel's
    // figures of a parked vCPU do not move while NUMA balancing is off).
    let by_index: Vec<&serde_json::Value> = balancing["vcpus"].as_array().unwrap().iter().collect();
    assert_eq!(by_index.len(), vcpus.len(), "{balancing}");
    for vcpu in &vcpus {
        let seen = by_index
            .iter()
            .find(|v| v["index"] == vcpu.index)
            .unwrap_or_else(|| panic!("vCPU {} missing: {balancing}", vcpu.index));
        assert_eq!(seen["tid"], vcpu.tid);
        let preferred = sched_value(pid, vcpu.tid, "numa_preferred_nid").unwrap();
        let expected = if preferred < 0 {
            serde_json::Value::Null
        } else {
            preferred.into()
        };
        assert_eq!(seen["preferred_node"], expected, "{seen}");
        assert!(seen["current_node"].is_u64(), "{seen}");
    }
    // One node and NUMA balancing off (this machine kind): no fault, no move, no migration.
    let nodes = std::fs::read_dir("/sys/devices/system/node").map_or(0, |dir| {
        dir.flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("node")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count()
    });
    let balancing_on =
        std::fs::read_to_string("/proc/sys/kernel/numa_balancing").is_ok_and(|v| v.trim() != "0");
    if nodes == 1 && !balancing_on {
        let placement = &vm["numa"]["placement"];
        assert_eq!(
            (
                &placement["moves"],
                &placement["swaps"],
                &placement["stuck"]
            ),
            (&0.into(), &0.into(), &0.into()),
            "{placement}"
        );
        assert_eq!(balancing["recent_remote_share"], serde_json::Value::Null);
    } else {
        eprintln!(
            "{TEST}: {nodes} nodes, NUMA balancing {}: the zero checks do not apply",
            if balancing_on { "on" } else { "off" }
        );
    }
}

/// Without a process lifecycle source, discovery cannot tell which VMMs changed, so it reads
/// every VMM on every scan: it says so, and a VM started meanwhile is found with its vCPUs.
#[test]
fn without_a_lifecycle_source_discovery_reads_every_vmm_and_says_why() {
    const TEST: &str = "without_a_lifecycle_source_discovery_reads_every_vmm_and_says_why";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    // Classic tracepoints only, in a tracefs view of this kernel without sched_process_fork.
    let real = std::path::Path::new("/sys/kernel/tracing/events/sched");
    let tracefs = tempfile::tempdir().unwrap();
    for event in ["sched_process_exit", "sched_process_exec"] {
        let format = real.join(event).join("format");
        if !format.exists() {
            return support::skip(TEST, &format!("{} is missing", format.display()));
        }
        let dir = tracefs.path().join("events/sched").join(event);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&format, dir.join("format")).unwrap();
    }
    let mut kvmtop = support::start_window_logging(
        &[
            "--hook-kinds".as_ref(),
            "tracepoint".as_ref(),
            "--tracefs".as_ref(),
            tracefs.path().as_os_str(),
        ],
        "info",
    );
    // Started inside the window: found by the scans that read every VMM.
    let (guest, vcpus) = support::start_portio("no-lifecycle");
    let snapshot = support::end_window(&mut kvmtop);

    let sources = &snapshot["sched"]["sources"];
    let fork = sources["process_fork"].as_str().unwrap();
    assert!(
        fork.starts_with("unavailable: ") && fork.contains("sched:sched_process_fork"),
        "{fork}"
    );
    for source in ["process_exit", "process_exec"] {
        let state = sources[source].as_str().unwrap();
        assert!(matches!(state, "live" | "silent"), "{source}: {state}");
    }
    assert!(
        kvmtop.stderr_lines.iter().any(|l| l
            .contains("discovery reads every VMM on every scan: sched/process_fork unavailable")),
        "{:?}",
        kvmtop.stderr_lines
    );
    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == guest.pid())
        .unwrap_or_else(|| panic!("the guest started in the window: {snapshot}"));
    let mut seen: Vec<(u64, u64)> = vm["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["index"].as_u64().unwrap(), v["tid"].as_u64().unwrap()))
        .collect();
    seen.sort_unstable();
    let mut expected: Vec<(u64, u64)> = vcpus
        .iter()
        .map(|v| (u64::from(v.index), u64::from(v.tid)))
        .collect();
    expected.sort_unstable();
    assert_eq!(seen, expected, "{vm}");
}
