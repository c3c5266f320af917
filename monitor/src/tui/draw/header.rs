//! The header: the title (host, kernel, window; PAUSED while paused) and the health line —
//! whether every kernel source is live, what was lost in the window, the advice in force by
//! severity — and the host's capacity against the VMs' demand ([`super::capacity`]). The sources
//! themselves are one key away (`s`, [`super::overlay::sources`]).

use ratatui::{
    style::{Modifier, Style},
    text::{Line, Span},
};

use super::{fitted_line, severity_style};
use crate::{
    model::{Snapshot, SourceState, advice::Severity, untrusted::sanitize},
    tui::state::App,
};

pub fn lines(snapshot: &Snapshot, app: &App, width: u16) -> Vec<Line<'static>> {
    vec![
        title(snapshot, app, width),
        health(snapshot, width),
        super::capacity::cpus(snapshot, width),
        super::capacity::memory(snapshot, width),
    ]
}

fn title(snapshot: &Snapshot, app: &App, width: u16) -> Line<'static> {
    let mut segments = Vec::new();
    if app.paused {
        segments.push(vec![
            Span::styled(
                " PAUSED ",
                Style::new()
                    .black()
                    .on_yellow()
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ),
            Span::raw(" "),
        ]);
    }
    segments.push(vec![Span::styled(
        format!("kvmtop {}", snapshot.kvmtop_version),
        Style::new().add_modifier(Modifier::BOLD),
    )]);
    segments.push(vec![Span::raw(format!(
        " — {} (Linux {})",
        sanitize(&snapshot.host.hostname),
        sanitize(&snapshot.host.kernel),
    ))]);
    segments.push(vec![Span::raw(format!(
        " — every {:.1} s",
        snapshot.window.duration_seconds
    ))]);
    // The window's end, so a frozen view (paused) is plainly not the present.
    #[expect(clippy::cast_possible_truncation, reason = "unix seconds")]
    let end = (snapshot.window.start_unix_seconds + snapshot.window.duration_seconds) as i64;
    if let Ok(at) = jiff::Timestamp::from_second(end) {
        segments.push(vec![Span::raw(format!(
            " — {} UTC",
            at.strftime("%H:%M:%S")
        ))]);
    }
    if app.paused {
        segments.push(vec![Span::raw(" — Space resumes")]);
    }
    fitted_line(segments, width)
}

/// "● all 12 sources attached · lost: 35 events · advice: 1 critical 2 warning · s: sources"
pub fn health(snapshot: &Snapshot, width: u16) -> Line<'static> {
    let families = snapshot.families.states();
    let states: Vec<&SourceState> = families.iter().flat_map(|f| f.sources.values()).collect();
    // Only a source that could not be attached is a problem: a silent one is attached and saw
    // nothing this window (an idle VM, kvm_exit on a nested host), and counting it would make
    // the line flip every second as VMs go quiet and busy.
    let unavailable = states
        .iter()
        .filter(|s| matches!(s, SourceState::Unavailable(_)))
        .count();
    let sources = if unavailable == 0 {
        Span::styled(
            format!("● all {} sources attached", states.len()),
            Style::new().green(),
        )
    } else {
        Span::styled(
            format!("▲ {unavailable} of {} sources unavailable", states.len()),
            Style::new().red().bold(),
        )
    };
    let mut segments = vec![vec![sources]];
    let lost = losses(snapshot);
    if lost > 0 {
        segments.push(vec![
            Span::raw("  "),
            Span::styled(format!("lost: {lost} events"), Style::new().red().bold()),
        ]);
    } else {
        segments.push(vec![Span::raw("  nothing lost")]);
    }
    segments.push(advice_counts(snapshot));
    segments.push(vec![Span::styled(
        "  (s: sources)",
        Style::new().dark_gray(),
    )]);
    fitted_line(segments, width)
}

/// "advice: 1 critical 2 warning" in the severities' colours, or "advice: none".
fn advice_counts(snapshot: &Snapshot) -> Vec<Span<'static>> {
    let mut spans = vec![Span::raw("  advice:")];
    let mut any = false;
    for (severity, label) in [
        (Severity::Critical, "critical"),
        (Severity::Warning, "warning"),
        (Severity::Info, "info"),
    ] {
        let count = snapshot
            .recommendations
            .iter()
            .filter(|r| r.severity == severity)
            .count();
        if count > 0 {
            any = true;
            spans.push(Span::styled(
                format!(" {count} {label}"),
                severity_style(severity),
            ));
        }
    }
    if !any {
        spans.push(Span::raw(" none"));
    }
    spans
}

/// Events lost in the window: those the kernel skipped a source's program for, those full maps
/// dropped, and the block requests that expired without a completion.
#[must_use]
pub fn losses(snapshot: &Snapshot) -> u64 {
    let families = snapshot.families.states();
    let skipped: u64 = families
        .iter()
        .flat_map(|f| f.lost.values())
        .map(|lost| lost.count)
        .sum();
    let dropped: u64 = families.iter().map(|f| f.dropped.count).sum();
    skipped + dropped + snapshot.families.block.expired.count
}
