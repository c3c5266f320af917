//! One VM's vCPUs: exit rates, where each vCPU's time went over the window, how long it waited
//! for a host CPU and where it ran; then the VMM's other threads, who took the CPU from it, and
//! where its memory is.

use ratatui::{Frame, layout::Rect, text::Line, widgets::Block};

use crate::{
    format,
    model::{
        Vm,
        sched::{ContenderKind, VmSched},
    },
    tui::{
        state::{Drill, TableFit},
        vcpu_columns::{ALL, VcpuSort},
    },
};

use super::fit::Column;

/// Draws the VM's vCPUs in the order `drill` says, scrolled as far as it says; returns how much
/// of the table the frame showed.
pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm, drill: &Drill) -> TableFit {
    let notes = notes(vm);
    let top = super::with_notes(frame, area, " threads, contenders, memory ", notes);
    let sort = drill.vcpu_sort;
    let rows: Vec<Vec<String>> = sort
        .sorted(&vm.vcpus)
        .into_iter()
        .map(|vcpu| ALL.iter().map(|c| c.text(vcpu)).collect())
        .collect();
    let columns = ALL.map(|c| Column {
        title: c.title(),
        priority: c.priority(),
    });
    // The sort column is marked ▼ (▲ reversed), as in the VM list; by vCPU index, unmarked.
    let marked = (sort != VcpuSort::default()).then(|| {
        let at = ALL.iter().position(|&c| c == sort.column).unwrap_or(0);
        (at, if sort.reversed { '▲' } else { '▼' })
    });
    let table = super::fit::table_marked(&columns, &rows, top.width.saturating_sub(2), marked);
    let block = Block::bordered()
        .title(format!(" {} (pid {}) — vCPUs ", vm.name, vm.pid))
        .title_bottom(" shares of the window: in exits, in the VMM, halted, steal ");
    super::fit::render_scrolled(frame, top, table, block, rows.len(), drill.offset)
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
        // The live modes read the contenders over a span of several windows.
        let seconds = vm.families.sched.contenders_seconds;
        let span = if seconds > 0.0 {
            format!(" (last {seconds:.0} s)")
        } else {
            String::new()
        };
        lines.push(Line::from(format!(
            "who handed it the CPU after a wait{span}: {}",
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
