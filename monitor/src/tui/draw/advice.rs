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
};

pub fn draw(frame: &mut Frame<'_>, area: Rect, snapshot: &Snapshot) {
    let mut advice: Vec<&Recommendation> = snapshot.recommendations.iter().collect();
    advice.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    let lines: Vec<Line<'static>> = if advice.is_empty() {
        vec![Line::from(
            "no recommendation in force: nothing observed crosses a rule's threshold",
        )]
    } else {
        advice.iter().flat_map(|r| lines(r)).collect()
    };
    let title = format!(
        " tuning advice ({}) — kvmtop explain RULE for details ",
        advice.len()
    );
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        area,
    );
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
