//! Drawing. Pure: takes the state, writes to a frame. One module per view.

mod advice;
mod exits;
mod io;
mod replay;
mod vcpus;
mod vms;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Block, Paragraph, Wrap},
};

use super::state::{App, View};
use crate::model::{Snapshot, SourceState};

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let mut header = match &app.snapshot {
        Some(snapshot) => header_lines(snapshot),
        None if app.replay.is_some() => vec![Line::from("")],
        None => vec![Line::from("kvmtop: taking the first sample…")],
    };
    let mut footer = vec![footer_line(app.view)];
    if let Some(status) = &app.replay {
        // A replay's banner takes the live title's place: nothing may read as the present.
        header[0] = replay::banner(status, app.snapshot.as_ref());
        header.extend(replay::notes(status));
        footer.push(replay::footer(status));
    }
    #[expect(clippy::cast_possible_truncation, reason = "a handful of lines")]
    let [header_area, body, footer_area] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Min(3),
        Constraint::Length(footer.len() as u16),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(footer), footer_area);
    frame.render_widget(Paragraph::new(header), header_area);
    if let Some(snapshot) = &app.snapshot {
        match (app.view, app.selected_vm()) {
            (View::VmExits, Some(vm)) => exits::draw(frame, body, vm),
            (View::Vcpus, Some(vm)) => vcpus::draw(frame, body, vm),
            (View::Io, Some(vm)) => io::draw(frame, body, vm),
            (View::Advice, _) => advice::draw(frame, body, snapshot),
            _ => vms::draw(frame, body, app, snapshot),
        }
    }
    if let Some(status) = &app.replay {
        replay::event_list(frame, body, status);
    }
}

/// Draws `lines` in a bordered pane at the bottom of `area`, as tall as they need up to half of
/// it, and returns the space left above for the view's table.
fn with_notes(
    frame: &mut Frame<'_>,
    area: Rect,
    title: &'static str,
    lines: Vec<Line<'static>>,
) -> Rect {
    #[expect(clippy::cast_possible_truncation, reason = "a handful of lines")]
    let height = (lines.len() as u16 + 2).min(area.height / 2);
    let [top, bottom] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(height)]).areas(area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(title)),
        bottom,
    );
    top
}

/// Title line, then the kernel sources grouped by state, so a silent `kvm_exit` (nested or PVM
/// hosts) or an unavailable source is visible at a glance.
fn header_lines(snapshot: &Snapshot) -> Vec<Line<'static>> {
    let mut live = Vec::new();
    let mut silent = Vec::new();
    let mut unavailable = Vec::new();
    let families = snapshot.families.states();
    for (name, state) in families.iter().flat_map(|f| f.sources.iter()) {
        match state {
            SourceState::Live => live.push(name.clone()),
            SourceState::Silent => silent.push(name.clone()),
            SourceState::Unavailable(_) => unavailable.push(name.clone()),
        }
    }
    // Live sources are the rule, so only their number is shown; the others by name. What was
    // lost comes first, so a narrow terminal cuts the advice count rather than the losses.
    let mut sources = vec![
        Span::raw("sources: "),
        Span::styled(format!("{} live  ", live.len()), Style::new().green()),
    ];
    sources.extend(
        losses(snapshot)
            .into_iter()
            .map(|loss| Span::styled(format!("{loss}  "), Style::new().red())),
    );
    for (label, names, style) in [
        ("silent", silent, Style::new().yellow()),
        ("unavailable", unavailable, Style::new().red()),
    ] {
        if !names.is_empty() {
            sources.push(Span::styled(
                format!("{label}: {}  ", names.join(" ")),
                style,
            ));
        }
    }
    if !snapshot.recommendations.is_empty() {
        sources.push(Span::styled(
            format!("advice: {} (a)  ", snapshot.recommendations.len()),
            Style::new().yellow(),
        ));
    }
    vec![
        Line::from(format!(
            "kvmtop {} — {} (Linux {}) — every {:.1} s",
            snapshot.kvmtop_version,
            crate::model::untrusted::sanitize(&snapshot.host.hostname),
            crate::model::untrusted::sanitize(&snapshot.host.kernel),
            snapshot.window.duration_seconds
        )),
        Line::from(sources),
    ]
}

/// What was lost in the window, in red in the header: each source that lost events (the
/// kernel skipped its program) with how many, the events full maps dropped, and the block
/// requests that expired without a completion.
fn losses(snapshot: &Snapshot) -> Vec<String> {
    let families = snapshot.families.states();
    let mut losses = Vec::new();
    let lost: Vec<String> = families
        .iter()
        .flat_map(|f| f.lost.iter())
        .filter(|(_, lost)| lost.count > 0)
        .map(|(source, lost)| format!("{source} {}", lost.count))
        .collect();
    if !lost.is_empty() {
        losses.push(format!("lost: {}", lost.join(" ")));
    }
    let dropped: u64 = families.iter().map(|f| f.dropped.count).sum();
    if dropped > 0 {
        losses.push(format!("{dropped} dropped (map full)"));
    }
    let expired = snapshot.families.block.expired.count;
    if expired > 0 {
        losses.push(format!("{expired} I/O expired"));
    }
    losses
}

fn footer_line(view: View) -> Line<'static> {
    let key = |k: &'static str| Span::styled(k, Style::new().reversed());
    let mut spans = vec![key(" q "), Span::raw(" quit  ")];
    match view {
        View::Vms => spans.extend([
            key(" ↑↓ "),
            Span::raw(" select  "),
            key(" Enter "),
            Span::raw(" exits  "),
            key(" Tab "),
            Span::raw(" vCPUs  "),
            key(" i "),
            Span::raw(" I/O  "),
            key(" a "),
            Span::raw(" advice"),
        ]),
        View::Advice => spans.extend([key(" Esc "), Span::raw(" back")]),
        View::VmExits | View::Vcpus | View::Io => spans.extend([
            key(" Esc "),
            Span::raw(" back  "),
            key(" Tab "),
            Span::raw(match view {
                View::VmExits => " vCPUs",
                View::Vcpus => " I/O",
                _ => " exits",
            }),
        ]),
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::testing::fixture;

    pub fn render(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        terminal.backend().to_string()
    }

    fn app() -> App {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        app
    }

    #[test]
    fn vm_table_at_100_columns() {
        insta::assert_snapshot!(render(&app(), 100, 12));
    }

    #[test]
    fn exit_drill_down_at_120_columns() {
        let mut app = app();
        app.open();
        insta::assert_snapshot!(render(&app, 120, 20));
    }

    #[test]
    fn vcpu_view_at_100_columns() {
        let mut app = app();
        app.open();
        app.toggle_vm_view();
        insta::assert_snapshot!(render(&app, 110, 18));
    }

    #[test]
    fn advice_pane_shows_evidence_and_change() {
        let mut app = app();
        app.toggle_advice();
        let screen = render(&app, 100, 16);
        assert!(screen.contains("C1"), "{screen}");
        assert!(
            screen.contains("run-queue wait share = 0.31 (> 0.2) over 2 s"),
            "{screen}"
        );
        assert!(screen.contains("vcpupin"), "{screen}");
        // The VM row carries a marker.
        let list = render(&app_on_list(), 100, 12);
        assert!(list.contains("C1"), "{list}");
    }

    fn app_on_list() -> App {
        app()
    }

    #[test]
    fn io_view_at_110_columns() {
        let mut app = app();
        app.open_io();
        insta::assert_snapshot!(render(&app, 110, 16));
    }

    #[test]
    fn narrow_terminal_keeps_names_and_rates() {
        let screen = render(&app(), 60, 10);
        assert!(
            screen.contains("web-1") && screen.contains("idle-db"),
            "{screen}"
        );
        assert!(screen.contains("101k"), "{screen}");
        let mut drill = app();
        drill.open();
        let screen = render(&drill, 60, 16);
        assert!(screen.contains("IO_INSTRUCTION"), "{screen}");
        assert!(screen.contains("0x80"), "{screen}");
    }

    #[test]
    fn hostile_names_reach_no_cell_raw() {
        let hostile = crate::model::Untrusted::new(crate::model::untrusted::HOSTILE_NAME);
        let mut snapshot = fixture::snapshot();
        snapshot.vms[0].name = hostile.clone();
        for drive in &mut snapshot.vms[0].families.block.drives {
            drive.id = Some(hostile.clone());
        }
        let mut app = App::new(Duration::from_secs(1));
        app.update(snapshot);
        let mut screens = vec![render(&app, 200, 20)];
        app.open();
        screens.push(render(&app, 200, 20));
        app.open_io();
        screens.push(render(&app, 200, 20));
        for screen in screens {
            assert!(screen.contains("vm-ü-日本"), "{screen}");
            crate::testing::assert_terminal_safe(&screen);
        }
    }

    #[test]
    fn the_header_marks_what_was_lost_in_the_window() {
        let mut snapshot = fixture::snapshot();
        snapshot.families.sched.dropped = crate::model::LostEvents { count: 3, total: 9 };
        let mut app = App::new(Duration::from_secs(1));
        app.update(snapshot);
        let screen = render(&app, 200, 6);
        assert!(
            screen.contains("lost: block_rq_complete 30  3 dropped (map full)  2 I/O expired"),
            "{screen}"
        );
        // Losses of earlier windows only: nothing marked.
        let mut quiet = fixture::snapshot();
        quiet.families.block.lost.clear();
        quiet.families.block.expired.count = 0;
        app.update(quiet);
        let screen = render(&app, 200, 6);
        assert!(!screen.contains("lost:"), "{screen}");
        assert!(!screen.contains("expired"), "{screen}");
    }

    #[test]
    fn waiting_for_first_sample() {
        let app = App::new(Duration::from_secs(1));
        assert!(render(&app, 60, 5).contains("taking the first sample"));
    }

    #[test]
    fn empty_host_says_so() {
        let mut app = App::new(Duration::from_secs(1));
        let mut snapshot = fixture::snapshot();
        snapshot.vms.clear();
        app.update(snapshot);
        assert!(render(&app, 80, 8).contains("no KVM virtual machines"));
    }

    #[test]
    fn a_vm_without_exits_says_so() {
        let mut app = app();
        app.select_next();
        app.open();
        let screen = render(&app, 80, 12);
        assert!(screen.contains("no exits in this window"), "{screen}");
    }
}
