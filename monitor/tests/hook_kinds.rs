//! Each source runs as the best kind of tracepoint program this kernel and the operator allow:
//! a BTF tracepoint, else a raw tracepoint, else the classic tracepoint; and the snapshot says
//! which. The chain is exercised here by hiding the kernel's BTF (`--btf`) and by refusing kinds
//! (`--hook-kinds`), on the real kernel.

mod support;

use std::{ffi::OsStr, path::Path};

const SYSTEM_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Exit sources that run on classic tracepoints only: `kvm_exit`'s raw arguments carry no exit
/// reason.
const CLASSIC_ONLY: &[&str] = &["kvm_exit"];

/// The hook of every scheduler, block, TLB and exit source, and of the NUMA placement sources,
/// in a snapshot taken with `extra`. Every source must run, except the classic-only ones when
/// `--hook-kinds` turns classic tracepoints off (they are then left out of the list).
fn hooks(extra: &[&str]) -> Vec<(String, String)> {
    let extra_args: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
    let (snapshot, _) = support::run_snapshot(0.3, &extra_args);
    let classic_off = extra
        .windows(2)
        .any(|w| w[0] == "--hook-kinds" && !w[1].contains("tracepoint"));
    let mut hooks = Vec::new();
    for family in ["sched", "block", "tlb", "exits", "numa"] {
        let Some(map) = snapshot[family]["hooks"].as_object() else {
            panic!("no {family} hooks in {snapshot:#}");
        };
        for (source, hook) in map {
            // The NUMA fault source hooks a kernel function (fentry or kprobe), not a
            // tracepoint, and its procfs fallback is no hook.
            if family == "numa" && source.starts_with("numa_fault") {
                continue;
            }
            let state = &snapshot[family]["sources"][source];
            if classic_off && CLASSIC_ONLY.contains(&source.as_str()) {
                assert!(
                    state.as_str().is_some_and(|s| s.contains("--hook-kinds")),
                    "{source} with classic tracepoints off: {state}"
                );
                continue;
            }
            assert!(
                matches!(state.as_str(), Some("live" | "silent")),
                "{family} source {source} on {hook}: {state}"
            );
            hooks.push((source.clone(), hook.as_str().unwrap_or_default().to_owned()));
        }
    }
    hooks
}

/// Asserts that every source in `hooks` runs as `kind`, except those named in `except`, which
/// run as the kind given with them, and the classic-only exit sources.
fn assert_kinds(hooks: &[(String, String)], kind: &str, except: &[(&str, &str)]) {
    for (source, hook) in hooks {
        let expected = except
            .iter()
            .find(|(name, _)| name == source)
            .map(|(_, kind)| *kind)
            .or_else(|| {
                CLASSIC_ONLY
                    .contains(&source.as_str())
                    .then_some("tracepoint:")
            })
            .unwrap_or(kind);
        assert!(
            hook.starts_with(expected),
            "{source} runs on {hook}, expected {expected}: {hooks:?}"
        );
    }
}

fn prerequisites(test: &str) -> bool {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        support::skip(test, &reason);
        return false;
    }
    if !Path::new(SYSTEM_BTF).exists() {
        support::skip(test, "this kernel publishes no BTF");
        return false;
    }
    true
}

#[test]
fn every_source_that_can_runs_as_a_btf_tracepoint() {
    if !prerequisites("every_source_that_can_runs_as_a_btf_tracepoint") {
        return;
    }
    // `kvm_pv_tlb_flush` is offered as a raw tracepoint only (kvm is often a module); the other
    // kvm tracepoints run as BTF tracepoints where the kernel's own BTF describes them (kvm built
    // in) and fall back to their classic tracepoints otherwise.
    let hooks = hooks(&[]);
    // A module has an `initstate` (and a BTF object of its own); built-in kvm has neither.
    let kvm_is_a_module = Path::new("/sys/module/kvm/initstate").exists()
        || Path::new("/sys/kernel/btf/kvm").exists();
    let kvm = if kvm_is_a_module {
        "tracepoint:"
    } else {
        "tp_btf:"
    };
    let exits = [
        "userspace",
        "kvm_entry",
        "halt",
        "pio",
        "mmio",
        "msr",
        "page_fault",
        "hypercall",
        "apic_ipi",
        "halt_poll",
        "emulation",
    ];
    let mut except = vec![("pv_tlb_flush", "raw_tp:")];
    except.extend(exits.iter().map(|source| (*source, kvm)));
    assert_kinds(&hooks, "tp_btf:", &except);
}

#[test]
fn with_raw_tracepoints_only_every_source_runs_as_one() {
    if !prerequisites("with_raw_tracepoints_only_every_source_runs_as_one") {
        return;
    }
    assert_kinds(&hooks(&["--hook-kinds", "raw_tp"]), "raw_tp:", &[]);
}

#[test]
fn without_raw_kinds_every_source_runs_on_its_classic_tracepoint() {
    if !prerequisites("without_raw_kinds_every_source_runs_on_its_classic_tracepoint") {
        return;
    }
    assert_kinds(&hooks(&["--hook-kinds", "tracepoint"]), "tracepoint:", &[]);
}

/// Without BTF there are no struct offsets: the scheduler, NUMA placement and block programs,
/// which read tasks and requests, fall back to their classic tracepoints; the TLB and process lifecycle ones read
/// no struct and run as raw tracepoints. The kvm ones read no struct either, but their argument positions are
/// checked in the BTF, so without it they run classic too.
#[test]
fn with_the_btf_hidden_only_programs_reading_no_struct_stay_raw() {
    if !prerequisites("with_the_btf_hidden_only_programs_reading_no_struct_stay_raw") {
        return;
    }
    let hooks = hooks(&["--btf", "/nonexistent/vmlinux"]);
    assert_kinds(
        &hooks,
        "tracepoint:",
        &[
            ("tlb_flush", "raw_tp:"),
            ("pv_tlb_flush", "raw_tp:"),
            ("process_fork", "raw_tp:"),
            ("process_exit", "raw_tp:"),
            ("process_exec", "raw_tp:"),
        ],
    );
}

/// A BTF file other than the kernel's own (as for kernels without one, from `BTFHub`) gives the
/// offsets, but BTF tracepoints must be typed by the kernel's own: every source runs raw.
#[test]
fn a_btf_file_of_the_operator_s_choice_runs_raw_tracepoints() {
    if !prerequisites("a_btf_file_of_the_operator_s_choice_runs_raw_tracepoints") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vmlinux");
    std::fs::copy(SYSTEM_BTF, &copy).unwrap();
    let hooks = hooks(&["--btf", copy.to_str().unwrap()]);
    assert_kinds(&hooks, "raw_tp:", &[]);
}
