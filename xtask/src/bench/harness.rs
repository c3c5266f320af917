//! `kvm_exit` and `kvm_entry` never fire on some hosts (PVM, nested), so their live cost cannot be
//! measured there. Their kernel logic can be, through kvmtop's `exits_harness` raw tracepoint
//! program and `BPF_PROG_TEST_RUN`. kvmtop never loads the harness itself, and bpftool cannot load
//! kvmtop's object (libbpf 1.x rejects aya's legacy `maps` section), so a small runner built
//! against the kvmtop library loads it (`harness_runner.rs`). The kernel rejects `repeat` for raw
//! tracepoint test runs and reports no duration, so each run is timed by the kernel's BPF
//! statistics: the growth of the program's `run_time_ns` across that one run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::util::{self, cmd};

const RUNNER: &str = "kvmtop-bench-harness";
/// The second binary of the same crate: attaches the floor programs (see `floors.rs`).
const FLOORS: &str = "kvmtop-bench-floors";
/// Rounds of the runner: each runs every operation once on each of its 4 threads.
pub const ROUNDS: u64 = 25_000;

pub const METHOD: &str = "BPF_PROG_TEST_RUN of kvmtop's exits_harness (same object, never \
    attached), each run timed by the kernel's BPF statistics. It runs the same inlined functions \
    as the tracepoint programs (count, open the interval; close it into the histogram; count a \
    detail) on synthetic arguments in a tight loop, so caches are hot; it reads no tracepoint \
    record, calls neither bpf_get_current_pid_tgid nor bpf_ktime_get_ns (the arguments carry the \
    ids and time) and adds an operation switch. kvm_userspace_exit, kvm_run and kvm_pio are also \
    measured live above, which shows how far this under- or over-states a live program. No \
    bpftrace counterpart: tracepoint programs cannot be test-run.";

#[derive(Serialize)]
pub struct TestRun {
    pub method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub operations: Vec<Measurement>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Measurement {
    /// The program whose logic this operation runs.
    pub operation: String,
    pub runs: u64,
    pub ns_per_run: Option<f64>,
}

impl TestRun {
    pub fn unavailable(why: String) -> Self {
        Self {
            method: METHOD,
            unavailable: Some(why),
            operations: Vec::new(),
        }
    }
}

/// The runner crate's two binaries.
pub struct Runners {
    pub harness: PathBuf,
    pub floors: PathBuf,
}

/// Writes the runner's crate under `target_dir` and builds it; returns its binaries.
pub fn build(target_dir: &Path) -> Result<Runners> {
    let root = util::workspace_root();
    let dir = target_dir.join("bench").join("harness-runner");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), manifest(root))?;
    std::fs::write(
        dir.join("src").join("main.rs"),
        include_str!("harness_runner.rs"),
    )?;
    std::fs::write(
        dir.join("src").join("floors.rs"),
        include_str!("floor_runner.rs"),
    )?;
    // The workspace's lock file, so the runner builds against the same dependency versions.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).context("copying Cargo.lock")?;
    util::run(
        util::cargo()
            .args(["build", "--release", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir),
    )?;
    let release = target_dir.join("release");
    Ok(Runners {
        harness: release.join(RUNNER),
        floors: release.join(FLOORS),
    })
}

fn manifest(root: &Path) -> String {
    format!(
        r#"[package]
name = "{RUNNER}"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "{RUNNER}"
path = "src/main.rs"

[[bin]]
name = "{FLOORS}"
path = "src/floors.rs"

[dependencies]
# The versions the copied Cargo.lock pins.
aya = {{ version = "*", default-features = false }}
monitor = {{ path = "{root}/monitor" }}
monitor-common = {{ path = "{root}/monitor-common", features = ["user"] }}

# Its own workspace: it lives in the target directory, outside kvmtop's.
[workspace]
"#,
        root = root.display()
    )
}

/// Runs the runner (BPF statistics must be on). Failures become the reason it is unavailable.
pub fn run(binary: &Path) -> TestRun {
    let mut command = cmd(binary);
    command.arg(ROUNDS.to_string());
    util::echo(&command);
    match util::output(&mut command).and_then(|text| parse(&text)) {
        Ok(operations) => TestRun {
            method: METHOD,
            unavailable: None,
            operations,
        },
        Err(err) => TestRun::unavailable(format!("{err:#}")),
    }
}

/// The runner's `<operation> <runs> <run_time_ns>` lines.
fn parse(text: &str) -> Result<Vec<Measurement>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, runs, ns] = fields[..] else {
                anyhow::bail!("unexpected runner output: {line:?}");
            };
            let runs: u64 = runs.parse().context("runs")?;
            let ns: u64 = ns.parse().context("run_time_ns")?;
            #[allow(clippy::cast_precision_loss)] // Far below 2^52.
            let ns_per_run = (runs > 0).then(|| ns as f64 / runs as f64);
            Ok(Measurement {
                operation: name.to_owned(),
                runs,
                ns_per_run,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runner_output() {
        let ops = parse("kvm_exit 100000 7012345\nkvm_entry 0 0\n").unwrap();
        assert_eq!(ops[0].operation, "kvm_exit");
        assert_eq!(ops[0].runs, 100_000);
        assert!((ops[0].ns_per_run.unwrap() - 70.123_45).abs() < 1e-9);
        assert_eq!(ops[1].ns_per_run, None);
        assert!(parse("kvm_exit 1\n").is_err());
    }

    #[test]
    fn manifest_points_at_the_workspace() {
        let text = manifest(Path::new("/src/kvmtop"));
        assert!(text.contains(r#"monitor = { path = "/src/kvmtop/monitor" }"#));
        assert!(text.contains("\n[workspace]\n"));
        assert!(text.contains(&format!("name = \"{FLOORS}\"\npath = \"src/floors.rs\"")));
    }
}
