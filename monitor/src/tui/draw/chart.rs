//! A VM's recent past over its view: charts side by side of the view's figures per window, one
//! line per exit reason, vCPU or device where the view lists them, and the windows in which
//! advice started (or more rules came into force) as red bars.
//!
//! | view | left chart | right chart |
//! |---|---|---|
//! | exits | exits/s of the busiest reasons | their p99 handling latency |
//! | vCPUs | steal of the most stolen-from vCPUs | steal and CPU over all vCPUs |
//! | I/O | IOPS of the busiest devices, TLB shootdowns/s | the devices' p99 latency |

use std::collections::HashMap;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Style,
    symbols::Marker,
    text::{Line, Span},
    widgets::{Axis, Block, Chart, Dataset, GraphType},
};

use crate::{
    format,
    model::{Vm, untrusted::sanitize},
    tui::{
        history::{Measure, Point},
        state::{App, View},
    },
};

/// Rows the charts take, borders included, and the least the body must have to give them; on a
/// tall terminal they take more.
const HEIGHT: u16 = 8;
const ROOM_NEEDED: u16 = 16;
const TALL_HEIGHT: u16 = 12;
const TALL_ROOM: u16 = 40;
/// Columns a chart needs to be worth drawing: below twice this, only the left one is drawn.
const MIN_WIDTH: u16 = 36;
/// Lines per chart at most: the ones with the largest values over the span shown.
const LINES: usize = 4;
const COLOURS: [Style; LINES] = [
    Style::new().fg(ratatui::style::Color::Cyan),
    Style::new().fg(ratatui::style::Color::Yellow),
    Style::new().fg(ratatui::style::Color::Magenta),
    Style::new().fg(ratatui::style::Color::Green),
];

/// Draws the charts at the top of `area` when the VM has a past and there is room; returns the
/// space left for the view.
pub fn over(frame: &mut Frame<'_>, area: Rect, app: &App, vm: &Vm) -> Rect {
    let points: Vec<&Point> = app.shown_history(vm).collect();
    if points.len() < 2 || area.height < ROOM_NEEDED {
        return area;
    }
    let seconds = app
        .snapshot
        .as_ref()
        .map_or(1.0, |s| s.window.duration_seconds.max(0.001));
    let panels: Vec<Panel> = panels_of(app, &points)
        .into_iter()
        .filter(|p| !p.lines.is_empty())
        .take(if area.width >= 2 * MIN_WIDTH { 2 } else { 1 })
        .collect();
    if panels.is_empty() {
        return area;
    }
    let height = if area.height >= TALL_ROOM {
        TALL_HEIGHT
    } else {
        HEIGHT
    };
    let [top, rest] =
        Layout::vertical([Constraint::Length(height), Constraint::Fill(1)]).areas(area);
    let columns = Layout::horizontal(vec![Constraint::Fill(1); panels.len()]).split(top);
    // Advice starting: more rules in force than in the window before.
    let advice_at: Vec<usize> = (1..points.len())
        .filter(|&i| points[i].advice > points[i - 1].advice)
        .collect();
    for (panel, &cell) in panels.iter().zip(columns.iter()) {
        draw(frame, cell, panel, &advice_at, points.len(), seconds);
    }
    rest
}

/// One chart: its title, its lines (name and value per window; `None` where the window has
/// none) and how its axis reads.
struct Panel {
    title: &'static str,
    lines: Vec<(String, Vec<Option<f64>>)>,
    axis: fn(f64) -> String,
}

fn draw(
    frame: &mut Frame<'_>,
    area: Rect,
    panel: &Panel,
    advice_at: &[usize],
    windows: usize,
    seconds: f64,
) {
    let (legend, shown) = legend(panel, !advice_at.is_empty(), area.width.saturating_sub(2));
    #[expect(clippy::cast_precision_loss, reason = "at most 600 windows")]
    let x = |i: usize| (i as f64 - (windows - 1) as f64) * seconds;
    let data: Vec<Vec<(f64, f64)>> = panel.lines[..shown]
        .iter()
        .map(|(_, values)| {
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((x(i), (*v)?)))
                .collect()
        })
        .collect();
    let top_value = data
        .iter()
        .flatten()
        .map(|&(_, y)| y)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let advice: Vec<(f64, f64)> = advice_at.iter().map(|&i| (x(i), top_value)).collect();
    let mut datasets: Vec<Dataset<'_>> = data
        .iter()
        .zip(COLOURS)
        .map(|(points, style)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(style)
                .data(points)
        })
        .collect();
    if !advice.is_empty() {
        datasets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Bar)
                .style(Style::new().red())
                .data(&advice),
        );
    }
    let oldest = x(0);
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(legend))
        .x_axis(
            Axis::default()
                .bounds([oldest, 0.0])
                .labels([Span::raw(format!("{oldest:.0}s")), Span::raw("now")]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top_value])
                .labels([Span::raw("0"), Span::raw((panel.axis)(top_value))]),
        );
    frame.render_widget(chart, area);
}

/// The legend, in the title (a chart this low has no room for ratatui's own), within `width`:
/// the lines whose names fit, whole, and the advice marker when it fits after them. Returns it
/// and how many lines it names: only those are drawn, so every line drawn has its name.
fn legend(panel: &Panel, advice: bool, width: u16) -> (Line<'static>, usize) {
    let mut spans = vec![Span::raw(panel.title)];
    let mut used = spans[0].width();
    let mut shown = 0;
    for ((name, _), style) in panel.lines.iter().zip(COLOURS) {
        let entry = Span::styled(format!("━ {} ", sanitize(name)), style);
        if used + entry.width() > usize::from(width) {
            break;
        }
        used += entry.width();
        spans.push(entry);
        shown += 1;
    }
    let marker = Span::styled("┃ advice ", Style::new().red());
    if advice && used + marker.width() <= usize::from(width) {
        spans.push(marker);
    }
    (Line::from(spans), shown)
}

/// The charts of the view shown.
fn panels_of(app: &App, points: &[&Point]) -> Vec<Panel> {
    let rate = |v: f64| format::rate(v);
    let latency = |v: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an axis label"
        )]
        format::duration_ns(v as u64)
    };
    let percent = |v: f64| format!("{v:.0}%");
    let of = |measure, scale| detail_lines(app, points, measure, scale);
    match app.view {
        View::Vcpus => vec![
            Panel {
                title: " steal % per vCPU ",
                lines: of(Measure::VcpuSteal, 100.0),
                axis: percent,
            },
            Panel {
                title: " % of vCPU time ",
                lines: vec![
                    figure(points, "steal", |p| f64::from(p.steal) * 100.0),
                    figure(points, "CPU", |p| f64::from(p.on_cpu) * 100.0),
                ],
                axis: percent,
            },
        ],
        View::Io => {
            let mut per_second = of(Measure::DeviceIops, 1.0);
            per_second.truncate(LINES - 1);
            per_second.push(figure(points, "TLB/s", |p| f64::from(p.tlb)));
            vec![
                Panel {
                    title: " per second ",
                    lines: per_second,
                    axis: rate,
                },
                Panel {
                    title: " p99 per device ",
                    lines: of(Measure::DeviceP99, 1.0),
                    axis: latency,
                },
            ]
        }
        _ => {
            let rates = of(Measure::ReasonRate, 1.0);
            // The p99 of the same reasons, in the same colours, where they have one.
            let p99 = of(Measure::ReasonP99, 1.0);
            let p99 = rates
                .iter()
                .map(|(name, _)| {
                    p99.iter()
                        .find(|(n, _)| n == name)
                        .cloned()
                        .unwrap_or_else(|| (name.clone(), vec![None; points.len()]))
                })
                .collect();
            vec![
                Panel {
                    title: " exits/s ",
                    lines: rates,
                    axis: rate,
                },
                Panel {
                    title: " p99 handling ",
                    lines: p99,
                    axis: latency,
                },
            ]
        }
    }
}

/// A list figure as a line; unknown (negative) values leave gaps.
fn figure(points: &[&Point], name: &str, value: fn(&Point) -> f64) -> (String, Vec<Option<f64>>) {
    let values = points
        .iter()
        .map(|p| Some(value(p)).filter(|v| *v >= 0.0))
        .collect();
    (name.to_owned(), values)
}

/// The [`LINES`] lines of `measure` with the largest values over the span (by their sum), each
/// value times `scale`. A window without the line had none of the reason's exits or the
/// device's requests (a rate of 0), or no figure for it (a latency, an unknown vCPU: a gap).
fn detail_lines(
    app: &App,
    points: &[&Point],
    measure: Measure,
    scale: f64,
) -> Vec<(String, Vec<Option<f64>>)> {
    let missing = match measure {
        Measure::ReasonRate | Measure::DeviceIops => Some(0.0),
        Measure::ReasonP99 | Measure::DeviceP99 | Measure::VcpuSteal => None,
    };
    let mut totals: HashMap<u16, f64> = HashMap::new();
    for detail in points.iter().flat_map(|p| &p.details) {
        if detail.measure == measure {
            *totals.entry(detail.label).or_default() += f64::from(detail.value.max(0.0));
        }
    }
    let mut labels: Vec<(u16, f64)> = totals.into_iter().collect();
    labels.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    labels
        .into_iter()
        .take(LINES)
        .map(|(label, _)| {
            let values = points
                .iter()
                .map(|p| {
                    p.details
                        .iter()
                        .find(|d| d.measure == measure && d.label == label)
                        .map_or(missing, |d| Some(f64::from(d.value) * scale))
                })
                .collect();
            (app.history.label(label).to_owned(), values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(names: &[&str]) -> Panel {
        Panel {
            title: " exits/s ",
            lines: names
                .iter()
                .map(|n| ((*n).to_owned(), vec![Some(1.0)]))
                .collect(),
            axis: |v| format!("{v}"),
        }
    }

    #[test]
    fn the_legend_names_whole_lines_only_and_says_how_many() {
        let lines = panel(&["IO_INSTRUCTION", "HLT", "EPT_VIOLATION"]);
        let text = |line: &Line<'_>| {
            line.spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect::<String>()
        };
        let (wide, shown) = legend(&lines, true, 100);
        assert_eq!(shown, 3);
        assert_eq!(
            text(&wide),
            " exits/s ━ IO_INSTRUCTION ━ HLT ━ EPT_VIOLATION ┃ advice "
        );
        // Room for the first two names only: the third line is neither named nor drawn, and
        // the advice marker does not fit after them.
        let (narrow, shown) = legend(&lines, true, 34);
        assert_eq!(shown, 2);
        assert_eq!(text(&narrow), " exits/s ━ IO_INSTRUCTION ━ HLT ");
        assert!(narrow.width() <= 34);
    }

    #[test]
    fn a_name_from_a_recording_is_shown_sanitized() {
        let (line, shown) = legend(&panel(&["HLT\u{1b}[2J"]), false, 80);
        assert_eq!(shown, 1);
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
