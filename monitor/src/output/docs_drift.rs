//! The operator documentation (`docs/runbook.md`, `docs/README.md`, `docs/guide/*.md`) against
//! the code, so the docs cannot drift: every metric name they give is in the generated metrics
//! reference, every rule id is in the advice rule table, every threshold key exists (with the
//! default the docs state, where they state one), every exit reason is one kvmtop decodes, and
//! every live-view column the runbook and the live-view page name is one the views draw.

use std::path::{Path, PathBuf};

use crate::advice::{config::Thresholds, rules};

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// The pages checked, with their text.
fn pages() -> Vec<(String, String)> {
    let dir = docs_dir();
    let mut paths = vec![dir.join("runbook.md"), dir.join("README.md")];
    let mut guide: Vec<PathBuf> = std::fs::read_dir(dir.join("guide"))
        .expect("docs/guide")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guide.sort();
    paths.extend(guide);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect()
}

/// Words of `text`: runs of letters, digits and `_`, with where each starts.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.match_indices(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|(at, sep)| at + sep.len())
        .chain(std::iter::once(0))
        .filter_map(move |start| {
            let rest = &text[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| (start, &rest[..end]))
        })
}

/// The `` `quoted` `` spans of `text`.
fn backticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

#[test]
fn every_metric_the_docs_name_is_in_the_reference() {
    let reference = super::reference::entries();
    let mut problems = Vec::new();
    let mut named = 0;
    for (page, text) in pages() {
        for (at, word) in words(&text) {
            // `vm:kvmtop_…:rate2m` is a recording rule, not a metric.
            if !word.starts_with("kvmtop_") || text[..at].ends_with(':') {
                continue;
            }
            named += 1;
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    word.strip_suffix(s)
                        .filter(|base| reference.get(*base).is_some_and(|e| e.kind == "histogram"))
                })
                .unwrap_or(word);
            if !reference.contains_key(family) {
                problems.push(format!("{page}: {word} is not a metric kvmtop serves"));
            }
        }
    }
    assert!(named > 20, "too few metric names found: {named}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_id_the_docs_name_is_a_rule() {
    let mut problems = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for (page, text) in pages() {
        for (_, word) in words(&text) {
            let mut chars = word.chars();
            let is_id = matches!(chars.next(), Some('C' | 'E' | 'M' | 'I' | 'H'))
                && (1..=2).contains(&chars.clone().count())
                && chars.all(|c| c.is_ascii_digit());
            if !is_id {
                continue;
            }
            named.insert(word.to_owned());
            if rules::rule(word).is_none() {
                problems.push(format!("{page}: {word} is not a tuning rule"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The advice page lists every rule.
    let advice = std::fs::read_to_string(docs_dir().join("guide/advice.md")).unwrap();
    for rule in rules::catalog() {
        assert!(
            advice.contains(&format!("| `{}` |", rule.id)),
            "docs/guide/advice.md does not list rule {}",
            rule.id
        );
    }
    assert!(named.len() > 20, "{named:?}");
}

#[test]
fn every_threshold_the_docs_name_exists_with_its_default() {
    let defaults = Thresholds::default();
    let mut problems = Vec::new();
    for (page, text) in pages() {
        let mut spans = text.split('`').skip(1);
        while let Some(key) = spans.next() {
            let after = spans.next().unwrap_or_default();
            let is_key = key.len() > 3
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && (key.as_bytes()[1].is_ascii_digit()
                    || key.contains("after")
                    || key.starts_with("clear_"))
                && key.contains('_');
            if !is_key {
                continue;
            }
            let Some(default) = defaults.get(key) else {
                problems.push(format!("{page}: {key} is not a threshold key"));
                continue;
            };
            // "`key` = 0.05": the stated default must be the code's.
            if let Some(stated) = after.strip_prefix(" = ") {
                let number: String = stated
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                match number.parse::<f64>() {
                    Ok(n) if (n - default).abs() <= f64::EPSILON * default.abs().max(1.0) => {}
                    _ => problems.push(format!(
                        "{page}: {key} = {number}, but its default is {default}"
                    )),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_exit_reason_the_docs_name_is_decoded() {
    let exits = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/families/exits");
    let tables: String = ["vmx.tsv", "svm.tsv", "reasons.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(exits.join(f)).unwrap())
        .collect();
    let known = |name: &str| {
        words(&tables).any(|(_, w)| w == name) || matches!(name, "HALT_POLLED" | "HALT_BLOCKED")
    };
    let mut problems = Vec::new();
    for (page, text) in pages() {
        for span in backticked(&text) {
            // Capabilities and kernel options are upper case too.
            let is_reason = span.len() > 2
                && !span.starts_with("CAP_")
                && !span.starts_with("CONFIG_")
                && span.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && (span.contains('_') || matches!(span, "HLT" | "IO" | "MMIO" | "INTR"));
            if is_reason && !known(span) {
                problems.push(format!(
                    "{page}: {span} is not an exit reason kvmtop decodes"
                ));
            }
        }
        // AMD's reasons are lower case in the kernel's table.
        if text.contains("`npf`") && !known("npf") {
            problems.push(format!("{page}: npf is not an SVM exit reason"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Acronyms the runbook's view and figure lines use that are not column names.
const NOT_COLUMNS: &[&str] = &[
    "CPU", "VM", "NUMA", "TLB", "KSM", "THP", "RAM", "SSD", "I/O",
];

#[test]
fn every_column_the_docs_name_is_drawn() {
    // The list's columns are named in `tui/columns.rs`, the vCPU view's in
    // `tui/vcpu_columns.rs`, the other views' in `tui/draw/`.
    let tui = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui");
    let drawn: String = [tui.clone(), tui.join("draw")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut check = |page: &str, token: &str| {
        let token = token.trim_matches(|c: char| ",.;:*`\"".contains(c));
        let token = token
            .strip_suffix(')')
            .filter(|t| !t.contains('('))
            .unwrap_or(token);
        let caps = token.chars().take(2).all(|c| c.is_ascii_uppercase());
        if !caps || NOT_COLUMNS.contains(&token) {
            return;
        }
        checked += 1;
        if !drawn.contains(&format!("\"{token}")) && !drawn.contains(&format!(" {token}")) {
            problems.push(format!(
                "{page}: {token} is not a column the live view draws"
            ));
        }
    };
    let runbook = std::fs::read_to_string(docs_dir().join("runbook.md")).unwrap();
    // Each "- **View**" item with its continuation lines.
    let mut in_view = false;
    for line in runbook.lines() {
        if line.starts_with("- ") {
            in_view = line.starts_with("- **View**");
        } else if !line.starts_with("  ") {
            in_view = false;
        }
        if in_view {
            for token in line.split_whitespace() {
                check("runbook.md", token);
            }
        }
    }
    let live_view = std::fs::read_to_string(docs_dir().join("guide/live-view.md")).unwrap();
    let mut in_columns = false;
    for line in live_view.lines() {
        if line.starts_with("| column |") {
            in_columns = true;
            continue;
        }
        if !line.starts_with('|') {
            in_columns = false;
        }
        if in_columns && !line.starts_with("|---") {
            let first = line.split('|').nth(1).unwrap_or_default();
            for token in first.split(", ") {
                check("live-view.md", token.trim());
            }
        }
    }
    assert!(checked > 20, "too few columns checked: {checked}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
