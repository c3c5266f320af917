//! The Prometheus rules shipped in `dashboards/rules/`: `promtool check rules` (syntax, and
//! that every expression parses), `promtool check config` of the example configuration that
//! loads them, `promtool test rules` (their unit tests on synthetic series), and the conventions promtool does not check: every alert has a severity, a
//! summary, a description and a runbook link to its own section of `docs/alerts.md`, and its
//! unit tests hold it both firing and silent.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::util::{self, Phase, PhaseResult, cmd, find_program};

const RULES: &str = "dashboards/rules";
const RULE_TESTS: &str = "dashboards/rules/tests";
const RUNBOOK: &str = "docs/alerts.md";
/// The example Prometheus configuration that loads the rules.
const EXAMPLE_CONFIG: &str = "dashboards/prometheus.yml";

/// One phase of `cargo xtask test`; it fails, saying which step and why, when any step fails.
pub fn phase() -> PhaseResult {
    let phase = Phase::start("Prometheus rules (promtool check rules, promtool test rules)");
    let ok = match check() {
        Ok(()) => true,
        Err(err) => {
            eprintln!("error: {err:#}");
            false
        }
    };
    phase.finish(ok)
}

/// `cargo xtask rules`: the rule checks alone, after installing promtool if it is missing.
pub fn run() -> Result<bool> {
    crate::setup::ensure(crate::setup::Purpose::Test)?;
    Ok(phase().ok)
}

fn check() -> Result<()> {
    let root = util::workspace_root();
    // `cargo xtask setup` (the first phase of `test`) installs it with the prometheus package.
    let promtool = find_program("promtool").context(
        "promtool is not installed; `cargo xtask setup` installs it (Debian/Ubuntu package \
         `prometheus`)",
    )?;
    let rule_files = yaml_files(&root.join(RULES))?;
    let test_files = yaml_files(&root.join(RULE_TESTS))?;
    if rule_files.is_empty() || test_files.is_empty() {
        bail!("no rule files in {RULES} or no unit tests in {RULE_TESTS}");
    }
    let check = util::status(
        cmd(&promtool)
            .current_dir(root)
            .args(["check", "rules"])
            .args(&rule_files),
    )?;
    if !check.success() {
        bail!("`promtool check rules` rejected the rules in {RULES} (its output is above)");
    }
    let config =
        util::status(
            cmd(&promtool)
                .current_dir(root)
                .args(["check", "config", EXAMPLE_CONFIG]),
        )?;
    if !config.success() {
        bail!("`promtool check config` rejected the example configuration {EXAMPLE_CONFIG}");
    }
    let test = util::status(
        cmd(&promtool)
            .current_dir(root)
            .args(["test", "rules"])
            .args(&test_files),
    )?;
    if !test.success() {
        bail!("`promtool test rules` failed for the unit tests in {RULE_TESTS} (see above)");
    }
    let problems = convention_problems(root, &rule_files, &test_files)?;
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        bail!("{} alert(s) break the conventions above", problems.len());
    }
    Ok(())
}

/// The `.yml` files directly in `dir`, sorted, relative to the workspace root.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yml") {
            files.push(
                path.strip_prefix(util::workspace_root())
                    .unwrap_or(&path)
                    .to_path_buf(),
            );
        }
    }
    files.sort();
    Ok(files)
}

/// What each alert lacks of the conventions. The rule files are read as text: an alert is the
/// lines from its `- alert:` to the next rule.
fn convention_problems(
    root: &Path,
    rule_files: &[PathBuf],
    test_files: &[PathBuf],
) -> Result<Vec<String>> {
    let read = |path: &Path| {
        std::fs::read_to_string(root.join(path))
            .with_context(|| format!("reading {}", path.display()))
    };
    let runbook = read(Path::new(RUNBOOK))?;
    let tests: String = test_files
        .iter()
        .map(|path| read(path))
        .collect::<Result<Vec<_>>>()?
        .concat();
    let mut problems = Vec::new();
    for file in rule_files {
        let text = read(file)?;
        for (name, body) in alerts(&text) {
            let mut lacks = Vec::new();
            for key in ["severity:", "summary:", "description:", "runbook_url:"] {
                if !body.contains(key) {
                    lacks.push(format!("no {key}"));
                }
            }
            let anchor = name.to_lowercase();
            if !body.contains(&format!("{RUNBOOK}#{anchor}")) {
                lacks.push(format!("no runbook_url ending in {RUNBOOK}#{anchor}"));
            }
            if !runbook
                .lines()
                .any(|line| line.starts_with('#') && line.trim_start_matches('#').trim() == name)
            {
                lacks.push(format!("no heading `## {name}` in {RUNBOOK}"));
            }
            let cases: Vec<&str> = tests
                .split("alertname: ")
                .skip(1)
                .filter(|case| case.lines().next() == Some(name))
                .collect();
            if !cases.iter().any(|case| case.contains("exp_alerts: []")) {
                lacks.push("no unit test where it stays silent (exp_alerts: [])".into());
            }
            if !cases.iter().any(|case| case.contains("exp_labels:")) {
                lacks.push("no unit test where it fires (exp_labels)".into());
            }
            if !lacks.is_empty() {
                problems.push(format!(
                    "{}: alert {name}: {}",
                    file.display(),
                    lacks.join("; ")
                ));
            }
        }
    }
    Ok(problems)
}

/// Each alert's name and the text of its rule.
fn alerts(text: &str) -> Vec<(&str, &str)> {
    let starts: Vec<usize> = text.match_indices("- alert: ").map(|(at, _)| at).collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts.get(i + 1).copied().unwrap_or(text.len());
            let body = &text[start..end];
            let name = body["- alert: ".len()..]
                .lines()
                .next()
                .unwrap_or("")
                .trim();
            (name, body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_alert_is_cut_at_the_next_rule() {
        let text = "rules:\n  - alert: A\n    expr: up == 0\n  - alert: B\n    expr: x > 1\n";
        let found = alerts(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, "A");
        assert!(found[0].1.contains("up == 0") && !found[0].1.contains("x > 1"));
        assert_eq!(found[1].0, "B");
    }

    #[test]
    fn the_shipped_alerts_keep_the_conventions() {
        let root = util::workspace_root();
        let problems = convention_problems(
            root,
            &yaml_files(&root.join(RULES)).unwrap(),
            &yaml_files(&root.join(RULE_TESTS)).unwrap(),
        )
        .unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
