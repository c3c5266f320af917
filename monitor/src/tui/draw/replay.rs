//! What a replay adds to the view: a banner in place of the live title, so a recording is never
//! taken for the present; the events of the window shown and the damage the reader stepped
//! over; the time keys in the footer; the `g` prompt and the list of events and marks.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Clear, List, ListItem, ListState},
};

use crate::{
    model::{Snapshot, untrusted::sanitize},
    tui::replay_status::Status,
};

/// The banner: REPLAY, playing or paused and the speed, the recorded time with its date (UTC),
/// the host, and the window's place in the replay.
pub fn banner(status: &Status, snapshot: Option<&Snapshot>) -> Line<'static> {
    let state = if status.playing {
        format!("▶ playing {}×", speed(status.speed))
    } else {
        format!("⏸ paused {}×", speed(status.speed))
    };
    let recorded = jiff::Timestamp::from_nanosecond(i128::from(status.time_ns)).map_or_else(
        |_| format!("{} ns", status.time_ns),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    let host = snapshot.map_or_else(
        || "?".to_owned(),
        |s| {
            format!(
                "{} (Linux {})",
                sanitize(&s.host.hostname),
                sanitize(&s.host.kernel)
            )
        },
    );
    let (window, windows) = status.window;
    Line::from(vec![
        Span::styled(
            " REPLAY ",
            Style::new()
                .black()
                .on_yellow()
                .add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!(" {state} — recorded {recorded} — {host} — window {window} of {windows} "),
            Style::new().yellow().add_modifier(Modifier::REVERSED),
        ),
    ])
}

/// "2", "16", "0.5".
fn speed(speed: f64) -> String {
    format!("{speed}")
}

/// Lines under the sources: the events of the window shown, then what went wrong, each only
/// when there is something to say.
pub fn notes(status: &Status) -> Vec<Line<'static>> {
    let here = status.current_events();
    let mut lines = vec![match here.as_slice() {
        [] => Line::styled(
            "no event or mark in this window (n/N: next/previous, e: list)",
            Style::new().dark_gray(),
        ),
        [only] => Line::styled(format!("this window: {only}"), Style::new().cyan()),
        [first, rest @ ..] => Line::styled(
            format!("this window: {first}  (+{} more: e)", rest.len()),
            Style::new().cyan(),
        ),
    }];
    if let Some(first) = status.problems.first() {
        lines.push(Line::styled(
            format!(
                "damage: {} stepped over; first: {}",
                status.problems.len(),
                sanitize(first)
            ),
            Style::new().red(),
        ));
    }
    if let Some(why) = &status.unreadable {
        lines.push(Line::styled(sanitize(why).into_owned(), Style::new().red()));
    }
    if let Some(message) = &status.message {
        lines.push(Line::styled(
            sanitize(message).into_owned(),
            Style::new().yellow(),
        ));
    }
    lines
}

/// The time keys, or the `g` prompt while it is open.
pub fn footer(status: &Status) -> Line<'static> {
    let key = |k: &'static str| Span::styled(k, Style::new().reversed());
    if let Some(typed) = &status.prompt {
        return Line::from(vec![
            Span::raw("go to (10:42, -30s, +2m, 2026-12-04T10:42:00Z): "),
            Span::raw(sanitize(typed).into_owned()),
            Span::styled(" ", Style::new().reversed()),
            Span::raw("  "),
            key(" Enter "),
            Span::raw(" go  "),
            key(" Esc "),
            Span::raw(" cancel"),
        ]);
    }
    Line::from(vec![
        key(" Space "),
        Span::raw(" play/pause  "),
        key(" ←→ "),
        Span::raw(" step  "),
        key(" +- "),
        Span::raw(" speed  "),
        key(" g "),
        Span::raw(" go to  "),
        key(" n N "),
        Span::raw(" next/prev event  "),
        key(" e "),
        Span::raw(" events  "),
        key(" Home End "),
        Span::raw(" first/last"),
    ])
}

/// The list of events and marks over the tables, while it is open.
pub fn event_list(frame: &mut Frame<'_>, area: Rect, status: &Status) {
    let Some(selected) = status.list else {
        return;
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "bounded by the area's height"
    )]
    let height = (status.events.len().min(usize::from(area.height)) as u16 + 2).min(area.height);
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, popup, _] = Layout::horizontal([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(2),
    ])
    .areas(middle);
    let items: Vec<ListItem<'_>> = status
        .events
        .iter()
        .map(|e| ListItem::new(e.line.as_str()))
        .collect();
    let list = List::new(items)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title(format!(
            " {} events and marks — Enter: go there, Esc: close ",
            status.events.len()
        )));
    frame.render_widget(Clear, popup);
    frame.render_stateful_widget(
        list,
        popup,
        &mut ListState::default().with_selected(Some(selected)),
    );
}
