//! The rule catalogue: what each rule checks, why, what it recommends, its thresholds and its
//! sources, for `kvmtop explain RULE` and for the recommendations themselves.

mod cpu;
mod exits;
mod io_host;
mod memory;

use std::fmt::Write as _;

use crate::{
    advice::config::{KEYS, KeyInfo, Thresholds},
    model::advice::RuleInfo,
};

pub use cpu::{C1, C2, C3, C4, C5, C6, C7, C8, C9};
pub use exits::{E1, E2, E3, E4, E5, E6, E7, E8, E9};
pub use io_host::{H1, H2, H3, I1, I2, I3, I4};
pub use memory::{M1, M2, M3, M4, M5, M6, M7};

/// The configuration keys of a rule's thresholds.
fn thresholds_of(rule: &RuleInfo) -> impl Iterator<Item = &'static KeyInfo> + use<> {
    let id = rule.id;
    KEYS.iter().filter(move |k| k.rules.contains(&id))
}

static CATALOG: [&RuleInfo; 32] = [
    &C1, &C2, &C3, &C4, &C5, &C6, &C7, &C8, &C9, //
    &E1, &E2, &E3, &E4, &E5, &E6, &E7, &E8, &E9, //
    &M1, &M2, &M3, &M4, &M5, &M6, &M7, //
    &I1, &I2, &I3, &I4, //
    &H1, &H2, &H3,
];

/// Every rule, in the reference's order.
#[must_use]
pub fn catalog() -> &'static [&'static RuleInfo] {
    &CATALOG
}

/// The rule with `id` (case-insensitive).
#[must_use]
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    CATALOG
        .iter()
        .copied()
        .find(|r| r.id.eq_ignore_ascii_case(id))
}

const WIDTH: usize = 78;
const INDENT: &str = "       ";

/// Appends `text` word-wrapped at [`WIDTH`] columns with `indent`.
fn wrap(out: &mut String, text: &str, indent: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

fn section(out: &mut String, heading: &str) {
    let _ = writeln!(out, "\n{heading}");
}

/// A manual page for rule `id` with the thresholds in effect; `None` for an unknown id.
#[must_use]
pub fn explain(id: &str, thresholds: &Thresholds) -> Option<String> {
    let rule = rule(id)?;
    let defaults = Thresholds::default();
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", rule.id, rule.title);
    section(&mut out, "FAMILY");
    wrap(&mut out, rule.family.title(), INDENT);
    section(&mut out, "CHECKS");
    wrap(&mut out, rule.checks, INDENT);
    section(&mut out, "WHY");
    wrap(&mut out, rule.diagnosis, INDENT);
    section(&mut out, "RECOMMENDATION");
    for (label, text) in [
        ("libvirt", rule.change.libvirt),
        ("QEMU", rule.change.qemu),
        ("host", rule.change.host),
    ] {
        if let Some(text) = text {
            let _ = writeln!(out, "{INDENT}{label}:");
            wrap(&mut out, text, &format!("{INDENT}    "));
        }
    }
    section(&mut out, "EXPECTED EFFECT");
    wrap(&mut out, rule.effect, INDENT);
    section(&mut out, "THRESHOLDS");
    let mut any = false;
    for key in thresholds_of(rule) {
        any = true;
        let current = thresholds.render(key.key).unwrap_or_default();
        let default = defaults.render(key.key).unwrap_or_default();
        let note = if current == default {
            "default".to_owned()
        } else {
            format!("configured; default {default}")
        };
        let _ = writeln!(
            out,
            "{INDENT}{} = {current} ({note}) {} [{}]",
            key.key,
            key.origin.tag(),
            key.unit
        );
        wrap(&mut out, &key.text(), &format!("{INDENT}    "));
    }
    if !any {
        wrap(
            &mut out,
            "None: the rule checks configuration facts, not measured values.",
            INDENT,
        );
    }
    let hysteresis = format!(
        "The rule fires after its condition holds on {} evaluations in a row, and clears \
         after {} evaluations in a row past its thresholds moved by {} % (fire_after, \
         clear_after, clear_margin).",
        thresholds.fire_after,
        thresholds.clear_after,
        (thresholds.clear_margin * 100.0).round()
    );
    section(&mut out, "HYSTERESIS");
    wrap(&mut out, &hysteresis, INDENT);
    section(&mut out, "SOURCES");
    for source in rule.sources {
        wrap(
            &mut out,
            &format!("{}, {}", source.title, source.section),
            INDENT,
        );
    }
    Some(out)
}
