//! The VM list: one row per VM, busiest first.

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Modifier, Style},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState},
};

use crate::{
    format,
    model::advice::Target,
    model::{ExitSource, Exits, Snapshot, Vm},
    tui::state::App,
};

const TOP_REASONS: usize = 3;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, snapshot: &Snapshot) {
    if snapshot.vms.is_empty() {
        frame.render_widget(
            Paragraph::new("no KVM virtual machines on this host").block(Block::bordered()),
            area,
        );
        return;
    }
    let rows: Vec<Row<'_>> = snapshot
        .vms
        .iter()
        .map(|vm| row(vm, &advice_marker(snapshot, vm.pid)))
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Fill(3),
        ],
    )
    .header(
        Row::new([
            "VM",
            "PID",
            "vCPU",
            "EXITS/s",
            "USER/s",
            "IOPS",
            "TLB/s",
            "STEAL",
            "ADVICE",
            "TOP REASONS (events/s)",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(Block::bordered().title(format!(" {} VMs ", snapshot.vms.len())));
    let mut state = TableState::default().with_selected(app.selected_row());
    frame.render_stateful_widget(table, area, &mut state);
}

/// The ids of the rules in force for a VM (or its vCPUs, drives, NICs): "C1 E1".
fn advice_marker(snapshot: &Snapshot, pid: u32) -> String {
    let mut ids: Vec<&str> = snapshot
        .recommendations
        .iter()
        .filter(|r| match &r.target {
            Target::Host => false,
            Target::Vm { pid: p, .. }
            | Target::Vcpu { pid: p, .. }
            | Target::Drive { pid: p, .. }
            | Target::Nic { pid: p, .. } => *p == pid,
        })
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.join(" ")
}

fn row<'a>(vm: &'a Vm, advice: &str) -> Row<'a> {
    Row::new([
        Cell::from(vm.name.to_string()),
        Cell::from(vm.pid.to_string()),
        Cell::from(
            vm.vcpus
                .iter()
                .filter(|v| v.index.is_some())
                .count()
                .to_string(),
        ),
        Cell::from(format::rate(vm.families.exits.rate_of(ExitSource::KvmExit))),
        Cell::from(format::rate(
            vm.families.exits.rate_of(ExitSource::Userspace),
        )),
        Cell::from(format::rate(
            vm.families
                .block
                .devices
                .iter()
                .map(|d| d.iops)
                .fold(0.0, |a, b| a + b),
        )),
        Cell::from(format::rate(
            vm.families.tlb.sent.rate + vm.families.tlb.received.rate,
        )),
        Cell::from(format::share(vm.families.sched.vcpus.steal)),
        Cell::from(advice.to_owned()),
        Cell::from(top_reasons(&vm.families.exits)),
    ])
}

/// "IO 101k  INTR 3" — the busiest reasons over all sources.
fn top_reasons(exits: &Exits) -> String {
    exits
        .by_reason
        .iter()
        .filter(|r| r.count > 0)
        .take(TOP_REASONS)
        .map(|r| format!("{} {}", r.reason, format::rate(r.rate)))
        .collect::<Vec<_>>()
        .join("  ")
}
