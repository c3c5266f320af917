//! `--collect` trades depth for what each exit costs the guest. A level keeps the programs of the
//! levels above it out of the kernel altogether (checked in kvmtop's own descriptors, each
//! program named by bpftool), says so in the snapshot, and the leanest level still counts every
//! exit, against bpftrace over the same frozen window.

mod support;

use std::{collections::BTreeSet, process::Command, thread, time::Duration};

/// The exit programs each level adds to the one before, as bpftool names them (by their BTF):
/// per source, its program of each kind (classic, BTF tracepoint, raw tracepoint).
const COUNTS: &[&[&str]] = &[
    &["kvm_exit"],
    &["kvm_userspace_exit", "kvm_uexit_btf", "kvm_uexit_raw"],
];
const LATENCY: &[&[&str]] = &[
    &["kvm_entry", "kvm_entry_btf", "kvm_entry_raw"],
    &["kvm_fpu", "kvm_fpu_btf", "kvm_fpu_raw"],
    &["kvm_vcpu_wakeup", "kvm_wakeup_btf", "kvm_wakeup_raw"],
];
const DETAILS: &[&[&str]] = &[
    &["kvm_pio", "kvm_pio_btf", "kvm_pio_raw"],
    &["kvm_mmio", "kvm_mmio_btf", "kvm_mmio_raw"],
    &["kvm_msr", "kvm_msr_btf", "kvm_msr_raw"],
    &["kvm_page_fault", "kvm_pf_btf", "kvm_pf_raw"],
    &["kvm_hypercall", "kvm_hcall_btf", "kvm_hcall_raw"],
    &["kvm_apic_ipi", "kvm_ipi_btf", "kvm_ipi_raw"],
    &["kvm_halt_poll_ns", "kvm_hpoll_btf", "kvm_hpoll_raw"],
    &["kvm_emulate_insn", "kvm_emul_btf", "kvm_emul_raw"],
];

/// The ids of the BPF objects of one kind (`prog_id:`, `map_id:`) kvmtop (`pid`) holds, from its
/// `/proc/PID/fdinfo`.
fn ids_of(pid: u32, kind: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("kvmtop's fdinfo") {
        let Ok(info) = std::fs::read_to_string(entry.expect("an fdinfo entry").path()) else {
            continue;
        };
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix(kind))
            .and_then(|id| id.trim().parse::<u64>().ok())
        {
            ids.insert(id);
        }
    }
    ids
}

/// bpftool's JSON answer to `args`.
fn bpftool(args: &[&str]) -> serde_json::Value {
    let output = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("running bpftool");
    assert!(output.status.success(), "bpftool {args:?} failed");
    serde_json::from_slice(&output.stdout).expect("bpftool's JSON")
}

/// The entries in each of kvmtop's (`pid`) maps whose name starts with `prefix` (bpftool shows
/// the first 15 bytes of a map's name).
fn entries_of_maps(pid: u32, prefix: &str) -> Vec<(String, usize)> {
    let ids = ids_of(pid, "map_id:");
    let all = bpftool(&["map", "show"]);
    all.as_array()
        .expect("bpftool lists maps")
        .iter()
        .filter(|m| m["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|m| {
            let name = m["name"].as_str()?;
            name.starts_with(prefix).then(|| {
                let id = m["id"].as_u64().unwrap().to_string();
                let entries = bpftool(&["map", "dump", "id", &id]);
                (name.to_owned(), entries.as_array().map_or(0, Vec::len))
            })
        })
        .collect()
}

/// The names of the programs kvmtop (`pid`) holds, named by `bpftool prog show`.
fn programs_of(pid: u32) -> BTreeSet<String> {
    let ids = ids_of(pid, "prog_id:");
    let all = bpftool(&["prog", "show"]);
    all.as_array()
        .expect("bpftool lists programs")
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// kvmtop's programs while it samples at `level`, and its snapshot.
fn programs_at(level: &str) -> (BTreeSet<String>, serde_json::Value) {
    let mut kvmtop = support::start_window(&["--collect".as_ref(), level.as_ref()]);
    let programs = programs_of(kvmtop.child.id());
    (programs, support::end_window(&mut kvmtop))
}

/// How many of `source`'s programs (one per kind) kvmtop holds: 1 when attached, 0 when not.
fn held(programs: &BTreeSet<String>, source: &[&str]) -> usize {
    source
        .iter()
        .filter(|name| programs.contains(**name))
        .count()
}

#[test]
fn each_level_loads_exactly_the_exit_programs_of_its_depth() {
    const TEST: &str = "each_level_loads_exactly_the_exit_programs_of_its_depth";
    if let Some(reason) = support::missing_prerequisite(false, &["bpftool"]) {
        return support::skip(TEST, &reason);
    }
    for (level, depth) in [("counts", 1), ("latency", 2), ("details", 3)] {
        let (programs, snapshot) = programs_at(level);
        for (index, sources) in [COUNTS, LATENCY, DETAILS].iter().enumerate() {
            let expected = usize::from(index < depth);
            for source in *sources {
                assert_eq!(
                    held(&programs, source),
                    expected,
                    "{source:?} at --collect {level}: kvmtop holds {programs:?}"
                );
            }
        }
        let sources = &snapshot["exits"]["sources"];
        for (source, needs) in [
            ("kvm_entry", "latency"),
            ("halt", "latency"),
            ("pio", "details"),
        ] {
            let state = sources[source].as_str().unwrap_or_default();
            let left_out = (level, needs) == ("counts", "latency")
                || (level != "details" && needs == "details");
            assert_eq!(
                state.contains("not collected"),
                left_out,
                "{source} at --collect {level}: {state}"
            );
            if left_out {
                assert!(state.contains(&format!("needs {needs}")), "{state}");
            }
        }
    }
}

#[test]
fn the_leanest_level_still_counts_every_exit() {
    const TEST: &str = "the_leanest_level_still_counts_every_exit";
    if let Some(reason) = support::missing_prerequisite(true, &["bpftrace", "bpftool"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio("kvmtop-collect-counts");
    let pid = guest.pid();
    guest.freeze().unwrap();
    let mut bpftrace = support::bpftrace(&format!(
        "tracepoint:kvm:kvm_userspace_exit /pid == {pid} && args->reason == 2/ {{ @io = count(); }}"
    ));
    let mut kvmtop = support::start_window(&["--collect".as_ref(), "counts".as_ref()]);
    guest.thaw().unwrap();
    thread::sleep(Duration::from_secs(2));
    guest.freeze().unwrap();
    // Counting alone opens no latency interval: the exit programs never touch these maps.
    let pending = entries_of_maps(kvmtop.child.id(), "EXITS_PENDING");
    assert_eq!(pending.len(), 2, "kvmtop's pending-exit maps: {pending:?}");
    assert!(
        pending.iter().all(|(_, entries)| *entries == 0),
        "intervals opened at --collect counts: {pending:?}"
    );
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);
    let reference = bpftrace.stdout_text();
    let expected: u64 = reference
        .lines()
        .find_map(|l| l.trim().strip_prefix("@io: ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count from bpftrace: {reference}"));
    assert!(expected > 10_000, "the guest barely ran: {reference}");
    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == pid)
        .unwrap_or_else(|| panic!("VM {pid} missing from {snapshot:#}"));
    let io = vm["exits"]["by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "userspace" && r["reason"] == "IO")
        .unwrap_or_else(|| panic!("no IO exits in {vm:#}"));
    support::assert_within(
        "port I/O exits to QEMU at --collect counts",
        io["count"].as_u64().unwrap(),
        expected,
        0.02,
    );
    assert!(
        io["latency"].is_null() || io["latency"]["count"] == 0,
        "no latency is measured at --collect counts: {io:#}"
    );
    assert!(
        vm["exits"]["details"].as_array().is_none_or(Vec::is_empty),
        "no details at --collect counts: {vm:#}"
    );
}
