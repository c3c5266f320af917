//! The fuzz targets (`fuzz/`): installing cargo-fuzz, and the short smoke run of every target
//! that `cargo xtask test` makes, from the committed seeds, to show each still builds, runs and
//! finds nothing in a few seconds. Long runs are for people: `fuzz/README.md`.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use crate::util::{self, Phase, PhaseResult, cargo_bin_dir, checking, cmd, installing, ok};

/// The cargo-fuzz release the targets are built with.
const CARGO_FUZZ: &str = "0.13.2";
/// How long each target runs in the smoke pass.
const SMOKE: Duration = Duration::from_secs(8);

/// Installs cargo-fuzz when missing.
pub fn ensure() -> Result<()> {
    checking(&format!("cargo-fuzz {CARGO_FUZZ}"));
    let binary = cargo_bin_dir().join("cargo-fuzz");
    if util::try_output(cmd(&binary).arg("--version")).is_some() {
        ok(&binary.display().to_string());
        return Ok(());
    }
    util::missing("missing");
    installing(
        &format!("cargo-fuzz {CARGO_FUZZ}"),
        "builds and runs the fuzz targets; takes about a minute",
    );
    util::run(cmd("cargo").args(["install", "cargo-fuzz", "--version", CARGO_FUZZ, "--locked"]))
        .context("installing cargo-fuzz")
}

/// The targets, from `fuzz/Cargo.toml`'s `[[bin]]` names.
fn targets(root: &Path) -> Result<Vec<String>> {
    let manifest =
        std::fs::read_to_string(root.join("fuzz/Cargo.toml")).context("reading fuzz/Cargo.toml")?;
    Ok(manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "kvmtop-fuzz")
        .map(str::to_owned)
        .collect())
}

/// Builds every target once, then runs each for a few seconds from its seeds (new inputs go to
/// a scratch corpus, so the committed seeds stay as they are). A crash fails the phase and
/// names the input libFuzzer saved.
pub fn smoke() -> PhaseResult {
    let phase = Phase::start("fuzz smoke run (cargo +nightly fuzz run, each target)");
    let ok = match smoke_all() {
        Ok(all) => all,
        Err(err) => {
            eprintln!("error: {err:#}");
            false
        }
    };
    phase.finish(ok)
}

fn smoke_all() -> Result<bool> {
    let root = util::workspace_root();
    util::run(
        cmd("cargo")
            .current_dir(root)
            .args(["+nightly", "fuzz", "build", "-O"]),
    )
    .context("building the fuzz targets")?;
    let scratch = std::env::temp_dir().join(format!("kvmtop-fuzz-smoke-{}", std::process::id()));
    let mut all_ok = true;
    for target in targets(root)? {
        let corpus = scratch.join(&target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz/seeds").join(&target);
        let output = cmd("cargo")
            .current_dir(root)
            .args(["+nightly", "fuzz", "run", "-O", &target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", SMOKE.as_secs()))
            .arg("-print_final_stats=1")
            .output()
            .with_context(|| format!("running fuzz target {target}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let runs = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?", str::trim)
            .to_owned();
        if output.status.success() {
            println!(
                "  {target:<16} ok, {runs} executions in {}s",
                SMOKE.as_secs()
            );
        } else {
            all_ok = false;
            println!("  {target:<16} FAILED after {runs} executions");
            // The clone CI ran in is gone by the time anyone reads this, and with it the saved
            // input: the panic, libFuzzer's verdict and the input itself (libFuzzer prints
            // small inputs in Base64) come first, before the tail that cargo-fuzz ends with.
            let lines: Vec<&str> = stderr.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                // A panic's message is on the line after "panicked at".
                let after_panic = i > 0 && lines[i - 1].contains("panicked at");
                if is_crash_evidence(line) || after_panic {
                    println!("    {line}");
                }
            }
            if let Some(saved) = lines
                .iter()
                .find_map(|l| l.split("Test unit written to ").nth(1))
            {
                print_input(&root.join("fuzz").join(saved.trim()));
            }
            println!("    ...");
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                println!("    {line}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(all_ok)
}

/// The lines of a failed run that say what failed and on which input.
fn is_crash_evidence(line: &str) -> bool {
    [
        "panicked at",
        "ERROR: libFuzzer",
        "SUMMARY: libFuzzer",
        "Base64: ",
        "Test unit written",
    ]
    .iter()
    .any(|mark| line.contains(mark))
}

/// Prints the crashing input compressed and in Base64 (libFuzzer prints only inputs of a few
/// hundred bytes itself), for the inputs small enough to paste.
fn print_input(path: &Path) {
    const MAX_PRINTED: usize = 64 << 10;
    let script = "gzip -9c -- \"$1\" | base64 -w0";
    let encoded = cmd("sh").args(["-c", script, "sh"]).arg(path).output();
    match encoded {
        Ok(out) if out.status.success() && out.stdout.len() <= MAX_PRINTED => {
            println!(
                "    the input, gzip in Base64 (`base64 -d | gunzip > crash` to get it back):\n    {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(out) if out.status.success() => {
            println!(
                "    the input is too large to print ({} bytes encoded)",
                out.stdout.len()
            );
        }
        _ => println!("    the input could not be encoded: {}", path.display()),
    }
}
