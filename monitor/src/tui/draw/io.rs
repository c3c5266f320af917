//! One VM's I/O: each host block device its requests reached (per operation: IOPS, throughput,
//! latency, in flight), requests that expired without a completion, the drives behind it with
//! their cache and aio modes, and its TLB shootdowns.

use std::fmt::Write as _;

use ratatui::{
    Frame,
    layout::Rect,
    text::Line,
    widgets::{Block, Paragraph},
};

use crate::{
    format,
    model::{Untrusted, Vm, block::VmBlock},
    tui::state::TableFit,
};

use super::fit::Column;

/// Draws the VM's I/O, the devices' table scrolled past `offset` rows; returns how much of it
/// the frame showed.
pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm, offset: usize) -> TableFit {
    let notes = notes(vm);
    let top = super::with_notes(frame, area, " drives, TLB shootdowns ", notes);
    let rows = rows(&vm.families.block);
    let title = format!(" {} (pid {}) — block I/O ", vm.name, vm.pid);
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new("no block requests from this VM in the window")
                .block(Block::bordered().title(title)),
            top,
        );
        return TableFit::default();
    }
    let table = super::fit::table(&COLUMNS, &rows, top.width.saturating_sub(2));
    let block = Block::bordered()
        .title(title)
        .title_bottom(" latency: issue → completion; queue: submission → issue ");
    super::fit::render_scrolled(frame, top, table, block, rows.len(), offset)
}

/// The columns, and which stay on a narrow terminal: rates and tail latency first.
const COLUMNS: [Column; 9] = [
    Column {
        title: "DEVICE",
        priority: 0,
    },
    Column {
        title: "OP",
        priority: 1,
    },
    Column {
        title: "IOPS",
        priority: 2,
    },
    Column {
        title: "BYTES/s",
        priority: 4,
    },
    Column {
        title: "p50",
        priority: 5,
    },
    Column {
        title: "p99",
        priority: 3,
    },
    Column {
        title: "QUEUE",
        priority: 7,
    },
    Column {
        title: "INFLIGHT",
        priority: 6,
    },
    Column {
        title: "DRIVES",
        priority: 8,
    },
];

/// One row per device and operation with requests in the window.
fn rows(block: &VmBlock) -> Vec<Vec<String>> {
    let latency = |l: Option<&crate::model::LatencySummary>, pick: fn(&_) -> u64| {
        l.map_or_else(|| "-".to_owned(), |l| format::duration_ns(pick(l)))
    };
    let mut rows = Vec::new();
    for device in &block.devices {
        for op in device.ops.iter().filter(|o| o.requests > 0) {
            rows.push(vec![
                device.device.clone(),
                op.op.to_owned(),
                format::rate(op.iops),
                format::byte_rate(op.bytes_per_second),
                latency(op.latency.as_ref(), |l| l.p50_ns),
                latency(op.latency.as_ref(), |l| l.p99_ns),
                latency(op.queue.as_ref(), |l| l.p50_ns),
                format!("{:.1}", device.avg_in_flight),
                Untrusted::join(&device.drives, " "),
            ]);
        }
    }
    rows
}

fn notes(vm: &Vm) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = vm
        .families
        .block
        .drives
        .iter()
        .map(|d| {
            let name = d.id.clone().or_else(|| d.file.clone()).unwrap_or_default();
            let place = match &d.unmapped {
                Some(why) => format!("not mapped: {why}"),
                None => format!("on {}", d.devices.join(", ")),
            };
            Line::from(format!(
                "drive {name}: {} cache={} aio={} {place}",
                d.interface, d.cache, d.aio
            ))
        })
        .collect();
    for device in vm.families.block.devices.iter().filter(|d| d.expired > 0) {
        lines.push(Line::from(format!(
            "{}: {} requests expired in the window (no completion seen)",
            device.device, device.expired
        )));
    }
    let tlb = &vm.families.tlb;
    let mut shootdowns = format!(
        "TLB shootdowns: sent {}/s ({} pages), received {}/s",
        format::rate(tlb.sent.rate),
        tlb.sent.pages,
        format::rate(tlb.received.rate),
    );
    if let Some(on_vcpus) = &tlb.received_on_vcpu_cpus {
        let _ = write!(
            shootdowns,
            ", on the vCPUs' CPUs {}/s",
            format::rate(on_vcpus.rate)
        );
    }
    lines.push(Line::from(shootdowns));
    lines
}
