//! One VM's vCPUs: exit rates and where each vCPU's time went over the window.

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Modifier, Style},
    widgets::{Block, Cell, Row, Table},
};

use crate::{
    format,
    model::{Vcpu, Vm},
    signals::exits::ExitSource,
};

pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm) {
    let rows: Vec<Row<'_>> = vm.vcpus.iter().map(row).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "vCPU",
            "TID",
            "EXITS/s",
            "USER/s",
            "HALT/s",
            "IN EXIT",
            "IN VMM",
            "HALTED",
            "TOP REASON",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::bordered()
            .title(format!(" {} (pid {}) — vCPUs ", vm.name, vm.pid))
            .title_bottom(" time shares of the window: handling exits, in the VMM, halted "),
    );
    frame.render_widget(table, area);
}

fn row(vcpu: &Vcpu) -> Row<'_> {
    let unknown = || "?".to_owned();
    Row::new([
        Cell::from(vcpu.index.map_or_else(unknown, |i| i.to_string())),
        Cell::from(vcpu.tid.map_or_else(unknown, |t| t.to_string())),
        Cell::from(format::rate(vcpu.exits.rate_of(ExitSource::KvmExit))),
        Cell::from(format::rate(vcpu.exits.rate_of(ExitSource::Userspace))),
        Cell::from(format::rate(vcpu.exits.rate_of(ExitSource::Halt))),
        Cell::from(format::share(vcpu.time.handling_exits)),
        Cell::from(format::share(vcpu.time.in_vmm)),
        Cell::from(format::share(vcpu.time.halted)),
        Cell::from(
            vcpu.exits
                .by_reason
                .iter()
                .find(|r| r.count > 0)
                .map(|r| format!("{} {}", r.reason, format::rate(r.rate)))
                .unwrap_or_default(),
        ),
    ])
}
