//! Drawing the live table. Pure: takes the state, writes to a frame.

use ratatui::{
    Frame,
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState},
};

use super::state::App;
use crate::{
    model::{Exits, Snapshot},
    signals::{SourceState, exits::ExitSource},
};

const TOP_REASONS: usize = 3;

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let Some(snapshot) = &app.snapshot else {
        frame.render_widget(Paragraph::new("kvmtop: taking the first sample…"), header);
        frame.render_widget(footer_line(), footer);
        return;
    };
    frame.render_widget(Paragraph::new(header_lines(snapshot)), header);
    let rows: Vec<Row<'_>> = snapshot
        .vms
        .iter()
        .map(|vm| {
            Row::new([
                Cell::from(vm.name.clone()),
                Cell::from(vm.pid.to_string()),
                Cell::from(
                    vm.vcpus
                        .iter()
                        .filter(|v| v.index.is_some())
                        .count()
                        .to_string(),
                ),
                Cell::from(format_rate(vm.exits.rate_of(ExitSource::KvmExit))),
                Cell::from(format_rate(vm.exits.rate_of(ExitSource::Userspace))),
                Cell::from(top_reasons(&vm.exits)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(12),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Fill(3),
        ],
    )
    .header(
        Row::new([
            "VM",
            "PID",
            "vCPU",
            "EXITS/s",
            "USER/s",
            "TOP REASONS (events/s)",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(Block::bordered().title(format!(" {} VMs ", snapshot.vms.len())));
    let mut state = TableState::default().with_selected(app.selected_row());
    if snapshot.vms.is_empty() {
        frame.render_widget(
            Paragraph::new("no KVM virtual machines on this host").block(Block::bordered()),
            body,
        );
    } else {
        frame.render_stateful_widget(table, body, &mut state);
    }
    frame.render_widget(footer_line(), footer);
}

fn header_lines(snapshot: &Snapshot) -> Vec<Line<'static>> {
    let mut sources: Vec<Span<'static>> = vec![Span::raw("exit sources: ")];
    for (name, state) in &snapshot.exits.sources {
        let style = match state {
            SourceState::Live => Style::new().green(),
            SourceState::Silent => Style::new().yellow(),
            SourceState::Unavailable(_) => Style::new().red(),
        };
        sources.push(Span::styled(format!("{name} {state}  "), style));
    }
    vec![
        Line::from(format!(
            "kvmtop {} — {} (Linux {}) — every {:.1} s",
            snapshot.kvmtop_version,
            snapshot.host.hostname,
            snapshot.host.kernel,
            snapshot.window.duration_seconds
        )),
        Line::from(sources),
    ]
}

fn footer_line() -> Paragraph<'static> {
    Paragraph::new(Line::from(vec![
        Span::styled(" q ", Style::new().reversed()),
        Span::raw(" quit  "),
        Span::styled(" ↑↓ ", Style::new().reversed()),
        Span::raw(" select"),
    ]))
}

/// "IO 101k  INTR 3" — the busiest reasons over all sources.
fn top_reasons(exits: &Exits) -> String {
    exits
        .by_reason
        .iter()
        .filter(|r| r.count > 0)
        .take(TOP_REASONS)
        .map(|r| format!("{} {}", r.reason, format_rate(r.rate)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Compact rate: 950, 12.3k, 4.5M.
#[must_use]
pub fn format_rate(rate: f64) -> String {
    if rate >= 999_500.0 {
        format!("{:.1}M", rate / 1e6)
    } else if rate >= 9_995.0 {
        format!("{:.0}k", rate / 1e3)
    } else if rate >= 999.5 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::model::fixture;

    fn render(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        terminal.backend().to_string()
    }

    #[test]
    fn vm_table_at_100_columns() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        insta::assert_snapshot!(render(&app, 100, 12));
    }

    #[test]
    fn narrow_terminal_keeps_names_and_rates() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        let screen = render(&app, 60, 10);
        assert!(
            screen.contains("web-1") && screen.contains("idle-db"),
            "{screen}"
        );
        assert!(screen.contains("101k"), "{screen}");
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
    fn rates_are_compact() {
        assert_eq!(format_rate(0.4), "0");
        assert_eq!(format_rate(950.0), "950");
        assert_eq!(format_rate(1_234.0), "1.2k");
        assert_eq!(format_rate(99_000.0), "99k");
        assert_eq!(format_rate(4_500_000.0), "4.5M");
    }
}
