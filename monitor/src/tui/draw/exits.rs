//! One VM's exits: per reason its source, rate, share of its source, handling latency; then what
//! the exits were about (ports, MSRs, guest pages, …).

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Paragraph, Row, Table},
};

use crate::{
    format,
    model::{DetailCount, DetailGroup, DetailKind, ReasonCount, Vm},
};

/// Detail values listed per kind on one line.
const DETAILS_PER_LINE: usize = 3;

pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm) {
    let title = format!(" {} (pid {}) — exits ", vm.name, vm.pid);
    let reasons: Vec<&ReasonCount> = vm
        .families
        .exits
        .by_reason
        .iter()
        .filter(|r| r.count > 0)
        .collect();
    if reasons.is_empty() && vm.families.exits.details.is_empty() {
        frame.render_widget(
            Paragraph::new("no exits in this window").block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let details = detail_lines(&vm.families.exits.details);
    let top = super::with_notes(frame, area, " exit details (events/s) ", details);
    // Narrow terminals drop the columns that matter least, so reasons stay readable.
    let columns: &[usize] = if top.width >= 90 {
        &[0, 1, 2, 3, 4, 5, 6, 7]
    } else {
        &[0, 2, 4, 5, 7]
    };
    let pick = |cells: [String; 8]| -> Row<'static> {
        Row::new(columns.iter().map(|&i| Cell::from(cells[i].clone())))
    };
    let widths = [
        Constraint::Length(22),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let rows: Vec<Row<'_>> = reasons
        .iter()
        .map(|r| pick(reason_cells(r, &vm.families.exits.details)))
        .collect();
    let header = [
        "REASON",
        "SOURCE",
        "RATE/s",
        "SHARE",
        "p50",
        "p99",
        "MAX",
        "TOP DETAIL",
    ]
    .map(str::to_owned);
    let table = Table::new(rows, columns.iter().map(|&i| widths[i]))
        .header(pick(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(
            Block::bordered()
                .title(title)
                .title_bottom(latency_note(&reasons)),
        );
    frame.render_widget(table, top);
}

fn reason_cells(r: &ReasonCount, details: &[DetailGroup]) -> [String; 8] {
    let latency = |pick: fn(&crate::model::LatencySummary) -> u64| {
        r.latency
            .as_ref()
            .map_or_else(|| "-".to_owned(), |l| format::duration_ns(pick(l)))
    };
    [
        r.reason.clone(),
        r.source.as_str().to_owned(),
        format::rate(r.rate),
        format::share(Some(r.share)),
        latency(|l| l.p50_ns),
        latency(|l| l.p99_ns),
        latency(|l| l.max_ns),
        top_detail(r, details),
    ]
}

/// The leading value of the detail kind that explains this reason: "out 0x80 (99%)".
fn top_detail(r: &ReasonCount, details: &[DetailGroup]) -> String {
    let Some(kind) = DetailKind::for_reason(&r.reason) else {
        return String::new();
    };
    let Some(group) = details.iter().find(|g| g.kind == kind) else {
        return String::new();
    };
    let Some(first) = group.top.first() else {
        return String::new();
    };
    let label = detail_label(first);
    #[expect(clippy::cast_precision_loss, reason = "a display percentage")]
    let share = first.count as f64 / group.count.max(1) as f64;
    format!("{label} ({})", format::share(Some(share)))
}

fn detail_label(detail: &DetailCount) -> String {
    [detail.sub.as_str(), detail.value.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Says what the latency columns measure for the sources on screen.
fn latency_note(reasons: &[&ReasonCount]) -> Line<'static> {
    let mut meanings: Vec<String> = Vec::new();
    for r in reasons {
        let text = format!("{}: {}", r.source.as_str(), r.latency_meaning);
        if !meanings.contains(&text) {
            meanings.push(text);
        }
    }
    Line::from(format!(" latency — {} ", meanings.join("; ")))
}

/// "pio (port)  out 0x80 99k  in 0x71 300  other 200"
fn detail_lines(groups: &[DetailGroup]) -> Vec<Line<'static>> {
    if groups.is_empty() {
        return vec![Line::from("none in this window")];
    }
    groups
        .iter()
        .map(|group| {
            let mut parts = vec![format!(
                "{} ({}) {}:",
                group.kind.as_str(),
                group.value_name,
                format::rate(group.rate)
            )];
            for detail in group.top.iter().take(DETAILS_PER_LINE) {
                parts.push(format!(
                    "{} {}",
                    detail_label(detail),
                    format::rate(detail.rate)
                ));
            }
            let shown: u64 = group
                .top
                .iter()
                .take(DETAILS_PER_LINE)
                .map(|d| d.count)
                .sum();
            let rest = group.count.saturating_sub(shown);
            if rest > 0 {
                parts.push(format!("other ×{rest}"));
            }
            Line::from(parts.join("  "))
        })
        .collect()
}
