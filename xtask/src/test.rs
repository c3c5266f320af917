//! `cargo xtask test`: setup, lint, the shipped Prometheus rules, then the whole test suite, the
//! fuzz smoke run and the package's install test, with a summary whose last line is `N passed,
//! M failed, K skipped`.

use std::{
    io::{IsTerminal as _, Read as _, Write as _},
    path::PathBuf,
    process::Stdio,
};

use anyhow::{Context as _, Result};

use crate::{
    lint, rules,
    setup::{self, Purpose},
    summary::{self, Counts},
    util::{self, Phase, PhaseResult, cargo, seconds},
};

/// Returns whether everything passed; the summary has been printed either way.
pub fn run() -> Result<bool> {
    let mut phases = vec![setup::ensure(Purpose::Test)?];
    phases.extend(lint::phases());
    phases.push(rules::phase());
    phases.push(build_guests());

    let skip_log = SkipLog::create()?;
    let phase = Phase::start("tests (cargo test)");
    let outcome = cargo_test(&skip_log);
    let cargo_ok = outcome.as_ref().is_ok_and(|(ok, _)| *ok);
    phases.push(phase.finish(cargo_ok));
    phases.push(crate::fuzz::smoke());
    phases.extend(crate::dist::acceptance::phases());
    let (counts, output_err) = match outcome {
        Ok((_, counts)) => (counts, None),
        Err(err) => (Counts::default(), Some(err)),
    };
    let skips = summary::parse_skips(&skip_log.read());

    println!("\n==> summary");
    for phase in &phases {
        let verdict = if phase.ok { "ok" } else { "FAILED" };
        println!(
            "  {:<48} {verdict:<6} {:>8}",
            phase.name,
            seconds(phase.elapsed)
        );
    }
    if !skips.is_empty() || counts.ignored > 0 {
        println!("skipped tests ({}):", skips.len() as u64 + counts.ignored);
        for (name, reason) in &skips {
            println!("  {name}: {reason}");
        }
        if counts.ignored > 0 {
            println!("  {} test(s) marked #[ignore]", counts.ignored);
        }
    }
    if let Some(err) = output_err {
        println!("error: {err:#}");
    } else if !cargo_ok && counts.failed == 0 {
        println!("cargo test failed before all tests ran (see the errors above)");
    }
    let all_ok = phases.iter().all(|phase| phase.ok);
    println!("{}", summary::final_line(&counts, skips.len()));
    Ok(all_ok)
}

/// Integration tests start the guests crate's VMM binary, so it must exist before they run.
fn build_guests() -> PhaseResult {
    let phase = Phase::start("build test guests (cargo build -p guests --bins)");
    let ok = util::status(cargo().args(["build", "-p", "guests", "--bins"]))
        .inspect_err(|err| eprintln!("error: {err:#}"))
        .is_ok_and(|status| status.success());
    phase.finish(ok)
}

/// Runs the tests, passing their output through live while keeping a copy to count results.
fn cargo_test(skip_log: &SkipLog) -> Result<(bool, Counts)> {
    let mut test = cargo();
    test.args([
        "test",
        "--workspace",
        "--exclude",
        "monitor-ebpf",
        "--no-fail-fast",
    ])
    .env("KVMTOP_SKIP_LOG", &skip_log.path);
    if std::io::stdout().is_terminal() {
        // libtest only colours a terminal; its output now goes through a pipe.
        test.args(["--", "--color", "always"]);
    }
    util::echo(&test);
    let mut child = test
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start `cargo test`")?;
    let mut pipe = child.stdout.take().context("cargo test's stdout")?;
    let mut copy = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut stdout = std::io::stdout();
    loop {
        let read = pipe
            .read(&mut buffer)
            .context("reading cargo test's output")?;
        if read == 0 {
            break;
        }
        stdout.write_all(&buffer[..read])?;
        stdout.flush()?;
        copy.extend_from_slice(&buffer[..read]);
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((
        status.success(),
        Counts::from_output(&String::from_utf8_lossy(&copy)),
    ))
}

/// A fresh, empty file for this run's skip lines, removed afterwards.
struct SkipLog {
    path: PathBuf,
}

impl SkipLog {
    fn create() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let path =
            std::env::temp_dir().join(format!("kvmtop-skips-{}-{nanos}.log", std::process::id()));
        std::fs::write(&path, "")
            .with_context(|| format!("creating the skip log {}", path.display()))?;
        Ok(Self { path })
    }

    fn read(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for SkipLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
