//! Formatting, clippy (for the host crates and for the kernel programs) and the agent's layering.

mod layers;

use crate::util::{self, Phase, PhaseResult, cargo};

/// Runs every check even after one fails, so a single run shows all problems.
pub fn phases() -> Vec<PhaseResult> {
    vec![fmt(), clippy_host(), clippy_ebpf(), layering()]
}

/// `cargo xtask lint`: the checks alone; true when all pass.
pub fn run_all() -> anyhow::Result<bool> {
    crate::setup::ensure(crate::setup::Purpose::Test)?;
    Ok(phases().iter().all(|phase| phase.ok))
}

fn check(name: &str, command: &mut std::process::Command) -> PhaseResult {
    let phase = Phase::start(name);
    let ok = match util::status(command) {
        Ok(status) => status.success(),
        Err(err) => {
            eprintln!("error: {err:#}");
            false
        }
    };
    phase.finish(ok)
}

fn fmt() -> PhaseResult {
    check(
        "format (cargo fmt --check)",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )
}

/// The eBPF crate only builds for the BPF target, so the host pass leaves it out.
fn clippy_host() -> PhaseResult {
    check(
        "clippy (host crates)",
        cargo()
            .args([
                "clippy",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--all-targets",
            ])
            .args(["--", "-D", "warnings"]),
    )
}

/// The kernel programs are linted for the target they run on, with the toolchain that builds
/// them; `core` for BPF comes from rust-src (the same as aya-build's build).
fn clippy_ebpf() -> PhaseResult {
    check(
        "clippy (kernel programs, bpfel-unknown-none)",
        cargo()
            .args([
                "+nightly",
                "clippy",
                "-p",
                "monitor-ebpf",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core", "--", "-D", "warnings"]),
    )
}

/// The agent's layers and its folders' sibling modules import in one direction only.
fn layering() -> PhaseResult {
    let phase = Phase::start("layering (xtask/src/lint/layers.rs)");
    let root = util::workspace_root();
    let checked = [
        ("monitor/src", &layers::AGENT),
        ("monitor-ebpf/src", &layers::KERNEL),
    ]
    .into_iter()
    .map(|(src, table)| layers::check(&root.join(src), table))
    .collect::<anyhow::Result<Vec<_>>>()
    .map(|lists| lists.concat());
    let ok = match checked {
        Ok(problems) if problems.is_empty() => true,
        Ok(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "{} layering problem(s): see ARCHITECTURE.md for the layers and why",
                problems.len()
            );
            false
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            false
        }
    };
    phase.finish(ok)
}
