//! One VM's exits: per reason its source, rate, share of its source, handling latency; then what
//! the exits were about (ports, MSRs, guest pages, …).

use ratatui::{
    Frame,
    layout::Rect,
    text::Line,
    widgets::{Block, Paragraph},
};

use crate::{
    format,
    model::{DetailCount, DetailGroup, DetailKind, ReasonCount, Vm},
    tui::state::TableFit,
};

/// Detail values listed per kind on one line.
const DETAILS_PER_LINE: usize = 3;

use super::fit::Column;

/// Draws the VM's exits, the reasons' table scrolled past `offset` rows; returns how much of it
/// the frame showed.
pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm, offset: usize) -> TableFit {
    let title = format!(" {} (pid {}) — exits ", vm.name, vm.pid);
    let reasons: Vec<&ReasonCount> = vm.families.exits.seen().collect();
    if reasons.is_empty() && vm.families.exits.details.is_empty() {
        frame.render_widget(
            Paragraph::new("no exits in this window").block(Block::bordered().title(title)),
            area,
        );
        return TableFit::default();
    }
    let details = detail_lines(&vm.families.exits.details);
    let top = super::with_notes(frame, area, " exit details (events/s) ", details);
    let rows: Vec<Vec<String>> = reasons
        .iter()
        .map(|r| reason_cells(r, &vm.families.exits.details).to_vec())
        .collect();
    let table = super::fit::table(&COLUMNS, &rows, top.width.saturating_sub(2));
    let block = Block::bordered()
        .title(title)
        .title_bottom(crate::tui::columns::word_ellipsized(
            &latency_note(&reasons),
            usize::from(top.width.saturating_sub(4)),
        ));
    super::fit::render_scrolled(frame, top, table, block, rows.len(), offset)
}

/// The columns, and which stay on a narrow terminal: the reason, its rate and tail latency.
const COLUMNS: [Column; 8] = [
    Column {
        title: "REASON",
        priority: 0,
    },
    Column {
        title: "SOURCE",
        priority: 5,
    },
    Column {
        title: "RATE/s",
        priority: 1,
    },
    Column {
        title: "SHARE",
        priority: 4,
    },
    Column {
        title: "p50",
        priority: 3,
    },
    Column {
        title: "p99",
        priority: 2,
    },
    Column {
        title: "MAX",
        priority: 6,
    },
    Column {
        title: "TOP DETAIL",
        priority: 7,
    },
];

fn reason_cells(r: &ReasonCount, details: &[DetailGroup]) -> [String; 8] {
    let latency = |pick: fn(&crate::model::LatencySummary) -> u64| {
        r.latency
            .as_ref()
            .map_or_else(|| "-".to_owned(), |l| format::duration_ns(pick(l)))
    };
    [
        r.reason.to_string(),
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
fn latency_note(reasons: &[&ReasonCount]) -> String {
    let mut meanings: Vec<String> = Vec::new();
    for r in reasons {
        let text = format!("{}: {}", r.source.as_str(), r.latency_meaning);
        if !meanings.contains(&text) {
            meanings.push(text);
        }
    }
    format!(" latency — {} ", meanings.join("; "))
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
