//! The recommendations in force: most severe first, each with its evidence, the change to make
//! and its source.

use ratatui::{
    Frame,
    layout::Rect,
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Paragraph, Wrap},
};

use crate::{
    model::Snapshot,
    model::advice::{Recommendation, Severity},
    tui::state::TableFit,
};

/// Draws the recommendations, scrolled past `offset` rows (as wrapped) but never beyond the last
/// at the bottom; returns how many rows they take and how many the frame showed.
pub fn draw(frame: &mut Frame<'_>, area: Rect, snapshot: &Snapshot, offset: usize) -> TableFit {
    let mut advice: Vec<&Recommendation> = snapshot.recommendations.iter().collect();
    advice.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    let title = format!(
        " tuning advice ({}) — kvmtop explain RULE for details ",
        advice.len()
    );
    let block = Block::bordered().title(title);
    if advice.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "no recommendation in force: nothing observed crosses a rule's threshold",
            )
            .wrap(Wrap { trim: false })
            .block(block),
            area,
        );
        return TableFit::default();
    }
    let inner = block.inner(area);
    let texts: Vec<Vec<Line<'static>>> = advice.iter().map(|r| lines(r)).collect();
    // Rows each recommendation takes once wrapped to the pane, to know which are in view.
    let heights: Vec<usize> = texts
        .iter()
        .map(|t| {
            Paragraph::new(t.clone())
                .wrap(Wrap { trim: false })
                .line_count(inner.width)
        })
        .collect();
    let rows: usize = heights.iter().sum();
    let fit = TableFit {
        rows,
        shown: rows.min(usize::from(inner.height)),
    };
    let offset = offset.min(fit.max_offset());
    let block = if (1..rows).contains(&fit.shown) {
        let at_row = |row: usize| {
            let mut end = 0;
            heights
                .iter()
                .position(|h| {
                    end += h;
                    row < end
                })
                .unwrap_or(heights.len() - 1)
        };
        block.title_top(super::fit::range_title(
            at_row(offset),
            at_row(offset + fit.shown - 1),
            advice.len(),
        ))
    } else {
        block
    };
    frame.render_widget(
        Paragraph::new(texts.concat())
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(offset).unwrap_or(u16::MAX), 0))
            .block(block),
        area,
    );
    fit
}

fn lines(r: &Recommendation) -> Vec<Line<'static>> {
    let severity = match r.severity {
        Severity::Critical => Style::new().red().add_modifier(Modifier::BOLD),
        Severity::Warning => Style::new().yellow(),
        Severity::Info => Style::new(),
    };
    let mut out = vec![Line::from(vec![
        Span::styled(
            format!("{:<8} ", format!("{:?}", r.severity).to_lowercase()),
            severity,
        ),
        Span::styled(
            format!("{} ", r.id),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("{} — {}", r.title, r.target)),
        Span::raw(if r.holding { " (clearing)" } else { "" }),
    ])];
    for evidence in r.evidence() {
        out.push(Line::from(format!("    evidence: {evidence}")));
    }
    for (form, text) in [
        ("libvirt", &r.change.libvirt),
        ("qemu", &r.change.qemu),
        ("host", &r.change.host),
    ] {
        if let Some(text) = text {
            out.push(Line::from(format!("    change ({form}): {text}")));
        }
    }
    out.push(Line::from(format!("    effect: {}", r.expected_effect)));
    out.push(Line::from(""));
    out
}
