//! A [`Report`] as JSON (for scripts), Markdown (to paste into a ticket) or one self-contained
//! HTML file (inline SVG charts, nothing fetched from the network). Every text a guest owner or
//! a local user chose (VM names, marks, evidence) is escaped for the format and sanitized, as
//! everywhere kvmtop writes for people.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{Report, figures::Figure};
use crate::{model::Untrusted, recording::playback::format_time};

/// Rows of each table shown in Markdown and HTML (JSON has them all).
const TOP: usize = 20;

/// The report as pretty JSON; `deviations` is largest first. It is printed to the terminal
/// when no file is named, so texts are escaped as in every JSON kvmtop writes: the same
/// meaning to a parser, nothing a terminal acts on.
pub fn json(report: &Report) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(report)?;
    let mut text = crate::model::untrusted::json_terminal_safe(&text).into_owned();
    text.push('\n');
    Ok(text)
}

fn value(figure: &Figure, v: f64) -> String {
    match figure.unit {
        "share" => format!("{:.1} %", v * 100.0),
        "s" if v < 0.001 => format!("{:.0} µs", v * 1e6),
        "s" => format!("{:.2} ms", v * 1e3),
        "1/s" => format!("{v:.1}/s"),
        _ => format!("{v:.2}"),
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "new".to_owned(), |r| format!("×{r:.2}"))
}

/// Text safe in a Markdown table cell: sanitized, with the characters Markdown acts on
/// escaped.
fn md(text: &str) -> String {
    let safe = Untrusted::new(text).display().into_owned();
    let mut out = String::with_capacity(safe.len());
    for c in safe.chars() {
        if matches!(
            c,
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn range(r: super::Range) -> String {
    format!("{} – {}", format_time(r.from_ns), format_time(r.to_ns))
}

/// The report as Markdown.
#[must_use]
pub fn markdown(report: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# kvmtop incident report: {}\n", md(&report.hostname));
    let _ = writeln!(
        o,
        "- Incident: {} ({} windows)\n- Baseline: {} ({} windows)\n",
        range(report.incident),
        report.incident_windows,
        range(report.baseline),
        report.baseline_windows
    );
    let _ = writeln!(o, "## What changed\n");
    if report.deviations.is_empty() {
        let _ = writeln!(o, "No figure moved by more than its floor.\n");
    } else {
        let _ = writeln!(
            o,
            "| # | What | Figure | Baseline | Incident | Ratio | Onset |\n|---|---|---|---|---|---|---|"
        );
        for (i, d) in report.deviations.iter().take(TOP).enumerate() {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                md(&d.entity.to_string()),
                d.figure.title,
                value(&d.figure, d.baseline),
                value(&d.figure, d.incident),
                ratio(d.ratio),
                d.onset.as_deref().unwrap_or("–")
            );
        }
        o.push('\n');
    }
    let _ = writeln!(o, "## Advice in force during the incident\n");
    if report.advice.is_empty() {
        let _ = writeln!(o, "None.\n");
    }
    for a in &report.advice {
        let _ = writeln!(
            o,
            "- **{} {}** ({:?}) on {}: from {} to {} ({} windows)",
            md(&a.rule),
            md(&a.title),
            a.severity,
            md(&a.target.to_string()),
            a.first,
            a.last,
            a.windows
        );
        for e in &a.evidence {
            let _ = writeln!(o, "  - {}", md(&e.to_string()));
        }
    }
    let _ = writeln!(o, "\n## Timeline\n");
    if report.timeline.is_empty() {
        let _ = writeln!(o, "No events.\n");
    }
    for t in &report.timeline {
        let _ = writeln!(o, "- {} — {}", t.time, md(&t.event.to_string()));
    }
    if !report.problems.is_empty() {
        let _ = writeln!(o, "\n## Damage stepped over\n");
        for p in &report.problems {
            let _ = writeln!(o, "- {}", md(p));
        }
    }
    o
}

/// Text safe in HTML, sanitized.
fn html(text: &str) -> String {
    let safe = Untrusted::new(text).display().into_owned();
    let mut out = String::with_capacity(safe.len());
    for c in safe.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as one self-contained HTML page.
#[must_use]
pub fn html_page(report: &Report) -> String {
    let mut o = String::new();
    let title = format!("kvmtop incident report: {}", html(&report.hostname));
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        o,
        "<p>Incident {} ({} windows); baseline {} ({} windows).</p>",
        html(&range(report.incident)),
        report.incident_windows,
        html(&range(report.baseline)),
        report.baseline_windows
    );
    let _ = writeln!(o, "<h2>What changed</h2>");
    if report.deviations.is_empty() {
        let _ = writeln!(o, "<p>No figure moved by more than its floor.</p>");
    } else {
        let _ = writeln!(
            o,
            "<table><tr><th>#</th><th>What</th><th>Figure</th><th>Baseline</th><th>Incident</th><th>Ratio</th><th>Onset</th></tr>"
        );
        for (i, d) in report.deviations.iter().take(TOP).enumerate() {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                i + 1,
                html(&d.entity.to_string()),
                html(d.figure.title),
                html(&value(&d.figure, d.baseline)),
                html(&value(&d.figure, d.incident)),
                html(&ratio(d.ratio)),
                html(d.onset.as_deref().unwrap_or("–"))
            );
        }
        let _ = writeln!(o, "</table>");
    }
    let _ = writeln!(o, "<h2>Over time</h2>");
    for d in report.deviations.iter().take(4) {
        o.push_str(&chart(report, d));
    }
    let _ = writeln!(o, "<h2>Advice in force during the incident</h2><ul>");
    for a in &report.advice {
        let _ = write!(
            o,
            "<li><b>{} {}</b> ({:?}) on {}: {} – {} ({} windows)<ul>",
            html(&a.rule),
            html(&a.title),
            a.severity,
            html(&a.target.to_string()),
            html(&a.first),
            html(&a.last),
            a.windows
        );
        for e in &a.evidence {
            let _ = write!(o, "<li>{}</li>", html(&e.to_string()));
        }
        let _ = writeln!(o, "</ul></li>");
    }
    let _ = writeln!(o, "</ul><h2>Timeline</h2><ul>");
    for t in &report.timeline {
        let class = if t.event.kind() == "mark" {
            " class=\"mark\""
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "<li{class}>{} — {}</li>",
            html(&t.time),
            html(&t.event.to_string())
        );
    }
    let _ = writeln!(o, "</ul>");
    if !report.problems.is_empty() {
        let _ = writeln!(o, "<h2>Damage stepped over</h2><ul>");
        for p in &report.problems {
            let _ = writeln!(o, "<li>{}</li>", html(p));
        }
        let _ = writeln!(o, "</ul>");
    }
    o.push_str("</body></html>\n");
    o
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:72em}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
td.n{white-space:nowrap}li.mark{color:#b00}svg{border:1px solid #ddd;margin:.5em 0}";

/// A line chart of one deviation's figure over both ranges, with the incident shaded and the
/// marks drawn as red lines.
#[allow(clippy::many_single_char_names)]
fn chart(report: &Report, d: &super::Deviation) -> String {
    let points: BTreeMap<u64, f64> = report
        .series
        .iter()
        .filter_map(|(t, figures)| {
            figures
                .iter()
                .find(|(e, f, _)| *e == d.entity && *f == d.figure)
                .map(|(_, _, v)| (*t, *v))
        })
        .collect();
    let (Some((&t0, _)), Some((&t1, _))) = (points.first_key_value(), points.last_key_value())
    else {
        return String::new();
    };
    let max = points.values().copied().fold(d.figure.floor, f64::max);
    let (w, h) = (720.0, 160.0);
    #[allow(clippy::cast_precision_loss)]
    let x = |t: u64| (t.saturating_sub(t0) as f64) / ((t1 - t0).max(1) as f64) * w;
    let y = |v: f64| h - v / max * (h - 10.0);
    let mut svg = format!(
        "<figure><figcaption>{} — {}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
        html(&d.entity.to_string()),
        html(d.figure.title)
    );
    let (i0, i1) = (
        x(report.incident.from_ns.max(t0)),
        x(report.incident.to_ns.min(t1)),
    );
    let _ = write!(
        svg,
        "<rect x=\"{i0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{h}\" fill=\"#fee\"/>",
        (i1 - i0).max(0.0)
    );
    let line: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#036\" stroke-width=\"1.5\" points=\"{}\"/>",
        line.join(" ")
    );
    for t in report.timeline.iter().filter(|t| t.event.kind() == "mark") {
        if (t0..=t1).contains(&t.time_ns) {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{h}\" stroke=\"#c00\"><title>{1}</title></line>",
                x(t.time_ns),
                html(&t.event.to_string())
            );
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"4\" y=\"12\" font-size=\"11\">max {}</text></svg></figure>",
        html(&value(&d.figure, max))
    );
    svg
}
