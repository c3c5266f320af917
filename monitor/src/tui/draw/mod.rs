//! Drawing. Pure: takes the state, writes to a frame. One module per view, the header, the
//! footer and the panes over them in modules of their own.

mod advice;
mod capacity;
mod chart;
mod exits;
mod fit;
mod footer;
mod header;
mod io;
mod overlay;
mod replay;
mod vcpus;
mod vms;

use ratatui::{
    Frame,
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Block, Paragraph, Wrap},
};

use super::state::{App, Drawn, Overlay, View};

/// Draws the view; returns where the VM list's rows went, for the mouse, and how much of a
/// scrolled table (a VM's view, the advice, the sources pane) it showed, for the scroll keys.
pub fn draw(frame: &mut Frame<'_>, app: &App) -> Drawn {
    let mut header = match &app.snapshot {
        Some(snapshot) => header::lines(snapshot, app, frame.area().width),
        None if app.replay.is_some() => vec![Line::from("")],
        None => vec![Line::from("kvmtop: taking the first sample…")],
    };
    let mut footer = footer::lines(app, frame.area().width);
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
    let mut drawn = Drawn::default();
    if let Some(snapshot) = &app.snapshot {
        match (app.view, app.selected_vm()) {
            (View::VmExits, Some(vm)) => {
                let rest = charts_over(frame, body, app, vm);
                drawn.table = Some(exits::draw(frame, rest, vm, app.drill.offset));
            }
            (View::Vcpus, Some(vm)) => {
                let rest = charts_over(frame, body, app, vm);
                drawn.table = Some(vcpus::draw(frame, rest, vm, &app.drill));
            }
            (View::Io, Some(vm)) => {
                let rest = charts_over(frame, body, app, vm);
                drawn.table = Some(io::draw(frame, rest, vm, app.drill.offset));
            }
            (View::Advice, _) => {
                drawn.table = Some(advice::draw(frame, body, snapshot, app.drill.offset));
            }
            _ => drawn.rows = vms::draw(frame, body, app, snapshot),
        }
    }
    if let Some(status) = &app.replay {
        replay::event_list(frame, body, status);
    }
    match (app.overlay, &app.snapshot) {
        (Some(Overlay::Help), _) => overlay::help(frame, body),
        (Some(Overlay::Sources), Some(snapshot)) => {
            drawn.pane = Some(overlay::sources(frame, body, snapshot, app.pane_offset));
        }
        _ => {}
    }
    drawn
}

/// A VM's history charts over `body` unless the operator turned them off (`c`); the space left
/// for the view's table.
fn charts_over(frame: &mut Frame<'_>, body: Rect, app: &App, vm: &crate::model::Vm) -> Rect {
    if app.charts {
        chart::over(frame, body, app, vm)
    } else {
        body
    }
}

/// The last touch to a frame, after the feed has drawn too: without colour (`NO_COLOR`) every
/// cell loses its colours and keeps its emphasis (bold, reversed), which carries the meaning.
pub fn finish(buffer: &mut Buffer, colour: bool) {
    if colour {
        return;
    }
    for cell in &mut buffer.content {
        cell.fg = Color::Reset;
        cell.bg = Color::Reset;
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

/// Run-queue wait shares drawn yellow and red: the defaults of rule C1's warning and critical
/// thresholds, so the colour agrees with the advice out of the box.
const STEAL_WARN: f64 = 0.05;
const STEAL_CRITICAL: f64 = 0.20;

/// The style of a run-queue wait (steal) share.
fn steal_style(steal: f64) -> Style {
    if steal >= STEAL_CRITICAL {
        Style::new().red().bold()
    } else if steal >= STEAL_WARN {
        Style::new().yellow()
    } else {
        Style::new()
    }
}

/// The style of a severity: red and bold for critical, yellow for a warning, cyan for
/// information.
#[must_use]
fn severity_style(severity: crate::model::advice::Severity) -> Style {
    use crate::model::advice::Severity;
    match severity {
        Severity::Critical => Style::new().red().bold(),
        Severity::Warning => Style::new().yellow(),
        Severity::Info => Style::new().cyan(),
    }
}

#[cfg(test)]
mod tests;

/// A line of `segments` (each a few spans that belong together) within `width`: segments are
/// taken in order and one that does not fit whole is left out, so nothing is cut in the middle
/// of a word or a number. Later ones still go in when they fit.
fn fitted_line(segments: Vec<Vec<ratatui::text::Span<'static>>>, width: u16) -> Line<'static> {
    let mut used = 0_usize;
    let mut spans = Vec::new();
    for segment in segments {
        let needed: usize = segment.iter().map(ratatui::text::Span::width).sum();
        if used + needed <= usize::from(width) {
            used += needed;
            spans.extend(segment);
        }
    }
    Line::from(spans)
}
