//! Panes over the view: the help (every key) and the kernel sources (state, hook, losses),
//! which scroll when a host's sources outnumber the terminal's rows.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap},
};

use crate::{
    model::{Snapshot, SourceState, untrusted::sanitize},
    tui::{
        keys::{HELP, HELP_LEFT_GROUPS},
        state::TableFit,
    },
};

/// A pane over the middle of `area`, `height` rows tall at most (borders included).
fn pane(area: Rect, height: u16) -> Rect {
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height.min(area.height)),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, pane, _] = Layout::horizontal([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(middle);
    pane
}

/// Every key, grouped; two columns of groups when the pane is wide enough.
pub fn help(frame: &mut Frame<'_>, area: Rect) {
    let group_lines = |groups: &[(&str, &[(&str, &str)])]| -> Vec<Line<'static>> {
        let mut lines = Vec::new();
        for (group, keys) in groups {
            lines.push(Line::styled(
                (*group).to_owned(),
                Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            ));
            for (key, what) in *keys {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {key:<10} "),
                        Style::new().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw((*what).to_owned()),
                ]));
            }
        }
        lines
    };
    let block = Block::bordered().title(" keys — Esc or ? closes ");
    frame.render_widget(Clear, area);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width >= 76 {
        let split = HELP_LEFT_GROUPS;
        let [left, right] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(inner);
        let wrap = Wrap { trim: false };
        frame.render_widget(Paragraph::new(group_lines(&HELP[..split])).wrap(wrap), left);
        frame.render_widget(
            Paragraph::new(group_lines(&HELP[split..])).wrap(wrap),
            right,
        );
    } else {
        frame.render_widget(
            Paragraph::new(group_lines(HELP)).wrap(Wrap { trim: false }),
            inner,
        );
    }
}

/// Every kernel source: its family, state (with why when unavailable), where it is hooked and
/// what it lost in the window; scrolled past `offset` rows when they do not all fit. Returns
/// how much of the list the frame showed.
pub fn sources(frame: &mut Frame<'_>, area: Rect, snapshot: &Snapshot, offset: usize) -> TableFit {
    // The hook or the reason takes what the other columns leave, ended by "…" where cut.
    let room = usize::from(area.width.saturating_sub(2 + 2 + 6 + 18 + 11 + 6 + 4));
    let fit = |text: String| crate::tui::columns::word_ellipsized(&text, room);
    let fit_hook = |hook: String| shorter_hook(&hook, room);
    let mut rows = Vec::new();
    for family in snapshot.families.states() {
        for (name, state) in family.sources {
            let hook = family.hooks.get(name).cloned().unwrap_or_default();
            // An unavailable source has no hook; why it is unavailable takes its place.
            let (label, style, hook) = match state {
                SourceState::Live => ("live", Style::new().green(), fit_hook(hook)),
                SourceState::Silent => ("silent", Style::new().yellow(), fit_hook(hook)),
                SourceState::Unavailable(why) => (
                    "unavailable",
                    Style::new().red().add_modifier(Modifier::BOLD),
                    fit(sanitize(why).into_owned()),
                ),
            };
            let lost = family.lost_in_window(name);
            rows.push(Row::new([
                Cell::from(family.family),
                Cell::from(name.clone()),
                Cell::from(label).style(style),
                Cell::from(if lost > 0 {
                    lost.to_string()
                } else {
                    String::new()
                }),
                Cell::from(hook),
            ]));
        }
        if family.dropped.count > 0 {
            rows.push(Row::new([
                Cell::from(family.family),
                Cell::from("(map full)"),
                Cell::from("dropped").style(Style::new().red()),
                Cell::from(family.dropped.count.to_string()),
                Cell::from(""),
            ]));
        }
    }
    let expired = snapshot.families.block.expired.count;
    if expired > 0 {
        rows.push(Row::new([
            Cell::from("block"),
            Cell::from("(requests)"),
            Cell::from("expired").style(Style::new().red()),
            Cell::from(expired.to_string()),
            Cell::from("no completion seen"),
        ]));
    }
    let count = rows.len();
    #[expect(clippy::cast_possible_truncation, reason = "a few dozen sources")]
    let area = pane(area, count as u16 + 3);
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(18),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "FAMILY",
            "SOURCE",
            "STATE",
            "LOST",
            "HOOK (or why unavailable)",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(" kernel sources — Esc or s closes ");
    super::fit::render_scrolled(frame, area, table, block, count, offset)
}

/// A hook within `room` columns, shortened at its separators rather than inside a name:
/// `tracepoint:sched:sched_switch`, else `sched:sched_switch`, else `sched_switch`, else
/// nothing.
fn shorter_hook(hook: &str, room: usize) -> String {
    let mut rest = hook;
    loop {
        if crate::tui::columns::width_of(rest) <= room {
            return rest.to_owned();
        }
        match rest.split_once(':') {
            Some((_, tail)) => rest = tail,
            None => return String::new(),
        }
    }
}
