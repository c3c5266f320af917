//! A VM's recent past over its view: the view's figures per window as lines, and the windows in
//! which advice started (or more rules came into force) as red bars.

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
    model::Vm,
    tui::{
        history::Point,
        state::{App, View},
    },
};

/// Rows the chart takes, borders included, and the least the body must have to give them.
const HEIGHT: u16 = 8;
const ROOM_NEEDED: u16 = 20;

/// Draws the chart at the top of `area` when the VM has a past and there is room; returns the
/// space left for the view.
pub fn over(frame: &mut Frame<'_>, area: Rect, app: &App, vm: &Vm) -> Rect {
    let points: Vec<Point> = app.shown_history(vm).copied().collect();
    if points.len() < 2 || area.height < ROOM_NEEDED {
        return area;
    }
    let [top, rest] =
        Layout::vertical([Constraint::Length(HEIGHT), Constraint::Fill(1)]).areas(area);
    let seconds = app
        .snapshot
        .as_ref()
        .map_or(1.0, |s| s.window.duration_seconds.max(0.001));
    let (title, series) = series_of(app.view);
    #[expect(clippy::cast_precision_loss, reason = "at most 600 windows")]
    let x = |i: usize| (i as f64 - (points.len() - 1) as f64) * seconds;
    let lines: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, figure)| {
            points
                .iter()
                .enumerate()
                .map(|(i, p)| (x(i), figure(p)))
                .collect()
        })
        .collect();
    let top_value = lines
        .iter()
        .flatten()
        .map(|&(_, y)| y)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    // Advice starting: more rules in force than in the window before.
    let advice: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, p)| p.advice > points[i - 1].advice)
        .map(|(i, _)| (x(i), top_value))
        .collect();
    let colours = [Style::new().cyan(), Style::new().yellow()];
    let mut datasets: Vec<Dataset<'_>> = series
        .iter()
        .zip(&lines)
        .zip(colours)
        .map(|(((name, _), data), style)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(style)
                .data(data)
        })
        .collect();
    if !advice.is_empty() {
        datasets.push(
            Dataset::default()
                .name("advice")
                .marker(Marker::Braille)
                .graph_type(GraphType::Bar)
                .style(Style::new().red())
                .data(&advice),
        );
    }
    let oldest = x(0);
    let legend = legend(title, &series, &colours, !advice.is_empty());
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
                .labels([Span::raw("0"), Span::raw(format::rate(top_value))]),
        );
    frame.render_widget(chart, top);
    rest
}

/// A line of the chart: its name and the figure it draws.
type Series = (&'static str, fn(&Point) -> f64);

/// The chart's title and lines for a VM's view.
fn series_of(view: View) -> (&'static str, [Series; 2]) {
    match view {
        View::Vcpus => (
            " over time, % of the vCPUs' time: ",
            [
                ("steal %", |p| f64::from(p.steal.max(0.0)) * 100.0),
                ("CPU %", |p| f64::from(p.on_cpu.max(0.0)) * 100.0),
            ],
        ),
        View::Io => (
            " over time, per second: ",
            [
                ("IOPS", |p| f64::from(p.iops)),
                ("TLB/s", |p| f64::from(p.tlb)),
            ],
        ),
        _ => (
            " over time, per second: ",
            [
                ("exits/s", |p| f64::from(p.exits)),
                ("user/s", |p| f64::from(p.user)),
            ],
        ),
    }
}

/// The legend, in the title: a chart this low has no room for ratatui's own.
fn legend(
    title: &'static str,
    series: &[Series],
    colours: &[Style],
    advice: bool,
) -> Line<'static> {
    let mut legend = vec![Span::raw(title)];
    for ((name, _), style) in series.iter().zip(colours) {
        legend.push(Span::styled(format!("━ {name} "), *style));
    }
    if advice {
        legend.push(Span::styled("┃ advice started ", Style::new().red()));
    }
    Line::from(legend)
}
