//! One VM's vCPUs: exit rates, where each vCPU's time went over the window, how long it waited
//! for a host CPU and where it ran; then the VMM's other threads, who took the CPU from it, and
//! where its memory is.

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Row, Table},
};

use crate::{
    format,
    model::{
        ExitSource, Vcpu, Vm,
        sched::{ContenderKind, VmSched},
    },
};

pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm) {
    let notes = notes(vm);
    let top = super::with_notes(frame, area, " threads, contenders, memory ", notes);
    let rows: Vec<Row<'_>> = vm.vcpus.iter().map(row).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "vCPU", "TID", "EXITS/s", "USER/s", "HALT/s", "IN EXIT", "IN VMM", "HALTED", "STEAL",
            "MIGR/s", "CPU(NODE)", "TOP REASON",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::bordered()
            .title(format!(" {} (pid {}) — vCPUs ", vm.name, vm.pid))
            .title_bottom(
                " shares of the window: handling exits, in the VMM, halted, waiting for a CPU (steal) ",
            ),
    );
    frame.render_widget(table, top);
}

fn row(vcpu: &Vcpu) -> Row<'_> {
    let unknown = || "?".to_owned();
    let sched = vcpu.sched.as_ref();
    let place = sched.map(|s| &s.placement);
    let cpu = match (
        place.and_then(|p| p.dominant_cpu.or(p.cpu)),
        place.and_then(|p| p.dominant_node.or(p.node)),
    ) {
        (Some(cpu), Some(node)) => format!("{cpu}({node})"),
        (Some(cpu), None) => cpu.to_string(),
        _ => "-".to_owned(),
    };
    Row::new([
        Cell::from(vcpu.index.map_or_else(unknown, |i| i.to_string())),
        Cell::from(vcpu.tid.map_or_else(unknown, |t| t.to_string())),
        Cell::from(format::rate(vcpu.exits.rate_of(ExitSource::KvmExit))),
        Cell::from(format::rate(vcpu.exits.rate_of(ExitSource::Userspace))),
        Cell::from(format::rate(vcpu.exits.rate_of(ExitSource::Halt))),
        Cell::from(format::share(vcpu.time.handling_exits)),
        Cell::from(format::share(vcpu.time.in_vmm)),
        Cell::from(format::share(vcpu.time.halted)),
        Cell::from(format::share(sched.and_then(|s| s.figures.steal))),
        Cell::from(
            sched
                .and_then(|s| s.figures.migrations.as_ref())
                .map_or_else(|| "-".to_owned(), |m| format::rate(m.rate)),
        ),
        Cell::from(cpu),
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

/// Thread classes, contenders and memory placement, one line each.
fn notes(vm: &Vm) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(line) = classes(&vm.families.sched) {
        lines.push(Line::from(line));
    }
    if !vm.families.sched.contenders.is_empty() {
        let parts: Vec<String> = vm
            .families
            .sched
            .contenders
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    ContenderKind::SameVm => "same VM",
                    ContenderKind::Vm => "VM",
                    ContenderKind::Host => "host",
                    ContenderKind::Idle => "idle",
                    ContenderKind::Other => "other",
                };
                format!("{} ({kind}) {}", c.name, format::share(Some(c.share)))
            })
            .collect();
        lines.push(Line::from(format!(
            "who handed it the CPU after a wait: {}",
            parts.join(", ")
        )));
    }
    if let Some(memory) = &vm.families.numa.memory {
        let nodes: Vec<String> = memory
            .by_node
            .iter()
            .map(|n| format!("node {} {}", n.node, format::share(Some(n.share))))
            .collect();
        lines.push(Line::from(format!(
            "memory: {} resident, {}; huge pages {}",
            format::bytes(memory.resident_bytes),
            nodes.join(", "),
            format::share(memory.huge_page_coverage),
        )));
    }
    if let Some(b) = &vm.families.numa.balancing {
        let nodes: Vec<String> = b
            .recent_faults_by_node
            .iter()
            .map(|n| format!("node {} {}", n.node, format::share(Some(n.share))))
            .collect();
        lines.push(Line::from(format!(
            "NUMA faults (procfs fallback): recent {}, {} off their node; {} pages migrated",
            if nodes.is_empty() {
                "none".to_owned()
            } else {
                nodes.join(", ")
            },
            format::share(b.recent_remote_share),
            b.migrated_pages
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        )));
    }
    if let Some(p) = &vm.families.numa.placement
        && p.moves + p.swaps + p.stuck > 0
    {
        lines.push(Line::from(format!(
            "NUMA placement: {} moves, {} swaps, {} stuck",
            p.moves, p.swaps, p.stuck
        )));
    }
    if lines.is_empty() {
        lines.push(Line::from("no scheduling figures yet"));
    }
    lines
}

/// "steal by thread: vcpu 12% · main 1% · iothread 0.2%"
fn classes(sched: &VmSched) -> Option<String> {
    let parts: Vec<String> = sched
        .classes
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{} ×{} {}",
                c.class.as_str(),
                c.figures.threads,
                format::share(Some(c.figures.steal?))
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("steal by thread class: {}", parts.join(" · ")))
}
