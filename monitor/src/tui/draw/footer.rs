//! The footer: the filter's input line or the filter in force, then the keys of the view shown,
//! as htop shows them (key in reverse, what it does beside it), as many as fit whole.

use ratatui::{
    style::{Modifier, Style},
    text::{Line, Span},
};

use super::fitted_line;
use crate::{
    model::Untrusted,
    tui::state::{App, View},
};

pub fn lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(typed) = &app.filter.editing {
        lines.push(Line::from(vec![
            Span::styled(" filter ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw(format!(" {}", Untrusted::new(typed))),
            Span::styled(" ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw("   name, pid or uuid · Enter applies · Esc clears"),
        ]));
    } else if let Some(applied) = &app.filter.applied {
        let shown = app.visible_vms().len();
        let of = app.snapshot.as_ref().map_or(0, |s| s.vms.len());
        lines.push(Line::from(vec![
            Span::styled(
                format!(" filter: {} ", Untrusted::new(applied)),
                Style::new().yellow().add_modifier(Modifier::REVERSED),
            ),
            Span::raw(format!(" {shown} of {of} VMs · / edits · Esc clears")),
        ]));
    }
    lines.push(keys(app, width));
    lines
}

fn keys(app: &App, width: u16) -> Line<'static> {
    let key = |k: &'static str, what: String| {
        vec![
            Span::styled(k, Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw(format!("{what} ")),
        ]
    };
    let mut segments = vec![key(" q ", " quit".into()), key(" ? ", " help".into())];
    match app.view {
        View::Vms => segments.extend([
            key(" Enter ", " exits".into()),
            key(" < > ", format!(" sort: {}", app.sort.column.title())),
            key(" r ", " reverse".into()),
            key(" / ", " filter".into()),
            key(" Tab ", " vCPUs".into()),
            key(" i ", " I/O".into()),
            key(" a ", " advice".into()),
            key(" s ", " sources".into()),
        ]),
        View::Advice => segments.push(key(" Esc ", " back".into())),
        View::VmExits | View::Vcpus | View::Io => segments.extend([
            key(" Esc ", " back".into()),
            key(
                " Tab ",
                match app.view {
                    View::VmExits => " vCPUs",
                    View::Vcpus => " I/O",
                    _ => " exits",
                }
                .into(),
            ),
        ]),
    }
    if app.view == View::Vcpus {
        segments.push(key(
            " < > ",
            format!(" sort: {}", app.drill.vcpu_sort.column.title()),
        ));
    }
    if app.replay.is_none() {
        segments.push(key(
            " Space ",
            if app.paused { " resume" } else { " pause" }.into(),
        ));
        segments.push(key(" D ", " dump".into()));
        segments.push(key(" m ", " mark".into()));
    }
    // Last: on a narrow terminal it gives way to the keys above (the help lists it).
    if matches!(app.view, View::VmExits | View::Vcpus | View::Io) {
        segments.push(key(" c ", " charts".into()));
    }
    fitted_line(segments, width)
}
