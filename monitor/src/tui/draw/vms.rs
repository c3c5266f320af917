//! The VM list: one row per VM passing the filter, in the chosen order, with the columns that
//! fit the terminal (see [`columns::layout`]); the sort column marked ▼ (or ▲ reversed).

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Rect},
    style::{Modifier, Style},
    text::{Line, Text},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState},
};

use super::{severity_style, steal_style};
use crate::{
    model::{Snapshot, Vm},
    tui::{
        columns::{self, VmColumn, width_of},
        history::sparkline,
        state::App,
    },
};

/// Draws the list; returns the screen rows of its body (first row, how many) and the index of
/// the VM on the first, for the mouse.
pub fn draw(
    frame: &mut Frame<'_>,
    area: Rect,
    app: &App,
    snapshot: &Snapshot,
) -> Option<(u16, u16, usize)> {
    let vms = app.visible_vms();
    let title = if app.filter.applied.is_some() {
        format!(" {} of {} VMs ", vms.len(), snapshot.vms.len())
    } else {
        format!(" {} VMs ", snapshot.vms.len())
    };
    if vms.is_empty() {
        let why = if snapshot.vms.is_empty() {
            "no KVM virtual machines on this host"
        } else {
            "no VM matches the filter (Esc clears it)"
        };
        frame.render_widget(
            Paragraph::new(why).block(Block::bordered().title(title)),
            area,
        );
        return None;
    }
    let longest_name = vms
        .iter()
        .map(|vm| width_of(&vm.name.to_string()))
        .max()
        .unwrap_or(0);
    let layout = columns::layout(area.width.saturating_sub(2), longest_name);
    let rows: Vec<Row<'_>> = vms
        .iter()
        .map(|vm| {
            Row::new(
                layout
                    .iter()
                    .map(|&(column, width)| cell(column, width, vm, app, snapshot)),
            )
        })
        .collect();
    let header = Row::new(layout.iter().map(|&(column, _)| {
        let mut title = column.title().to_owned();
        if column == app.sort.column {
            // Every column's narrowest width leaves room for the mark.
            title.push(if app.sort.reversed { '▲' } else { '▼' });
        }
        let style = if column == app.sort.column {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        aligned(column, title).style(style)
    }));
    let table = Table::new(rows, layout.iter().map(|&(_, w)| Constraint::Length(w)))
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title(title));
    let mut state = TableState::default().with_selected(app.selected_row());
    frame.render_stateful_widget(table, area, &mut state);
    // Inside the border, below the header.
    let first = area.y + 2;
    let count = area.height.saturating_sub(3);
    Some((first, count, state.offset()))
}

/// Numbers to the right, so their digits line up; text to the left.
fn aligned(column: VmColumn, text: String) -> Cell<'static> {
    let alignment = if column.numeric() && column != VmColumn::Advice {
        Alignment::Right
    } else {
        Alignment::Left
    };
    Cell::from(Text::from(Line::from(text).alignment(alignment)))
}

fn cell(column: VmColumn, width: u16, vm: &Vm, app: &App, snapshot: &Snapshot) -> Cell<'static> {
    if column == VmColumn::History {
        // The sorted column's recent past.
        let points = app.shown_history(vm).map(|p| p.of(app.sort.column));
        let line = sparkline(points, usize::from(width));
        return Cell::from(line).style(Style::new().cyan());
    }
    let text = column.fitted(vm, snapshot, width);
    let style = match column {
        VmColumn::Steal => vm
            .families
            .sched
            .vcpus
            .steal
            .map_or_else(Style::new, steal_style),
        VmColumn::Advice => {
            worst_severity(snapshot, vm.pid).map_or_else(Style::new, severity_style)
        }
        _ => Style::new(),
    };
    aligned(column, text).style(style)
}

/// The most severe advice in force for a VM.
fn worst_severity(snapshot: &Snapshot, pid: u32) -> Option<crate::model::advice::Severity> {
    columns::advice_for(snapshot, pid).map(|r| r.severity).max()
}
