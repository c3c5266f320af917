//! Tables of a VM's views that fit the terminal: each column as wide as its widest cell, the
//! columns taken in order of priority while they fit, the last one given what is left. A cell
//! is never cut inside a word or a number: only the last column's free text may be shortened,
//! between words, ending in "…".

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Row, Table, TableState},
};

use crate::tui::{
    columns::{width_of, word_ellipsized},
    state::TableFit,
};

/// A column: its title and its priority (lower stays longer on a narrow terminal).
pub struct Column {
    pub title: &'static str,
    pub priority: u8,
}

/// The narrowest the last column is given: below this it is left out.
const LAST_MIN: usize = 12;

/// A table of `rows` (one text per column) within `width` (inside the borders).
#[must_use]
pub fn table(columns: &[Column], rows: &[Vec<String>], width: u16) -> Table<'static> {
    table_marked(columns, rows, width, None)
}

/// [`table`], with the title of column `marked.0` followed by the mark `marked.1` (the sort
/// column's ▼ or ▲).
#[must_use]
pub fn table_marked(
    columns: &[Column],
    rows: &[Vec<String>],
    width: u16,
    marked: Option<(usize, char)>,
) -> Table<'static> {
    let header: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match marked {
            Some((at, mark)) if at == i => format!("{}{mark}", c.title),
            _ => c.title.to_owned(),
        })
        .collect();
    let last = columns.len() - 1;
    let natural: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, title)| {
            rows.iter()
                .map(|r| width_of(&r[i]))
                .chain([width_of(title)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let needed = |i: usize| {
        if i == last {
            natural[i].min(LAST_MIN)
        } else {
            natural[i]
        }
    };
    let mut by_priority: Vec<usize> = (0..columns.len()).collect();
    // The sort column stays whatever the width: the order would make no sense without it.
    by_priority.sort_by_key(|&i| (marked.is_none_or(|(at, _)| at != i), columns[i].priority));
    let mut taken = Vec::new();
    let mut used = 0;
    for i in by_priority {
        let gap = usize::from(!taken.is_empty());
        if used + gap + needed(i) <= usize::from(width) || taken.is_empty() {
            used += gap + needed(i);
            taken.push(i);
        }
    }
    taken.sort_unstable();
    let spare = usize::from(width).saturating_sub(used);
    let widths: Vec<usize> = taken
        .iter()
        .map(|&i| {
            if i == last {
                (needed(i) + spare).min(natural[i])
            } else {
                needed(i)
            }
        })
        .collect();
    let pick = |cells: &[String]| -> Row<'static> {
        Row::new(
            taken
                .iter()
                .zip(&widths)
                .map(|(&i, &w)| word_ellipsized(&cells[i], w)),
        )
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "within the terminal's width"
    )]
    let constraints: Vec<Constraint> = widths
        .iter()
        .map(|&w| Constraint::Length(w as u16))
        .collect();
    Table::new(rows.iter().map(|r| pick(r)), constraints)
        .header(pick(&header).style(Style::new().add_modifier(Modifier::BOLD)))
}

/// Draws `table` of `rows` data rows in `block` over `area`, scrolled past `offset` rows but
/// never beyond its last row at the bottom. When not every row fits, the top border says which
/// are shown. Returns how much of the table the frame showed, for the scroll keys.
pub fn render_scrolled(
    frame: &mut Frame<'_>,
    area: Rect,
    table: Table<'static>,
    block: Block<'static>,
    rows: usize,
    offset: usize,
) -> TableFit {
    // Inside the borders, below the header row.
    let room = usize::from(area.height.saturating_sub(3));
    let fit = TableFit {
        rows,
        shown: rows.min(room),
    };
    let offset = offset.min(fit.max_offset());
    let block = if (1..rows).contains(&fit.shown) {
        block.title_top(range_title(offset, offset + fit.shown - 1, rows))
    } else {
        block
    };
    let mut state = TableState::default().with_offset(offset);
    frame.render_stateful_widget(table.block(block), area, &mut state);
    fit
}

/// What a scrolled table shows, for the right of its top border: items `first` to `last`
/// (counted from 0) of `of`, "1–9 of 64 ↑↓".
#[must_use]
pub fn range_title(first: usize, last: usize, of: usize) -> Line<'static> {
    Line::from(format!(" {}–{} of {of} ↑↓ ", first + 1, last + 1)).right_aligned()
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;

    #[test]
    fn columns_go_by_priority_and_none_is_cut() {
        let columns = [
            Column {
                title: "A",
                priority: 0,
            },
            Column {
                title: "BB",
                priority: 2,
            },
            Column {
                title: "C",
                priority: 1,
            },
            Column {
                title: "NOTE",
                priority: 3,
            },
        ];
        let rows = vec![vec![
            "alpha".to_owned(),
            "12345".to_owned(),
            "9.9k".to_owned(),
            "a long free text".to_owned(),
        ]];
        let render = |width: u16| {
            let mut terminal = Terminal::new(TestBackend::new(width, 2)).unwrap();
            terminal
                .draw(|f| f.render_widget(table(&columns, &rows, width), f.area()))
                .unwrap();
            terminal.backend().to_string()
        };
        assert!(render(11).contains("alpha 9.9k "), "{}", render(11));
        assert!(!render(11).contains("123"), "{}", render(11));
        assert!(render(24).contains("alpha 12345 9.9k"), "{}", render(24));
        assert!(!render(24).contains("long"), "the note needs 12");
        assert!(render(30).contains("a long free …"), "{}", render(30));
        assert!(render(40).contains("a long free text"), "{}", render(40));
    }
}
