//! One VM's vCPUs: exit rates, where each vCPU's time went over the window, how long it waited
//! for a host CPU and where it ran; then the VMM's other threads, who took the CPU from it, and
//! where its memory is.

use ratatui::{Frame, layout::Rect, text::Line, widgets::Block};

use crate::{
    format,
    model::{
        ExitSource, Vcpu, Vm,
        sched::{ContenderKind, VmSched},
    },
};

use super::fit::Column;

pub fn draw(frame: &mut Frame<'_>, area: Rect, vm: &Vm) {
    let notes = notes(vm);
    let top = super::with_notes(frame, area, " threads, contenders, memory ", notes);
    let rows: Vec<Vec<String>> = vm.vcpus.iter().map(row).collect();
    let table = super::fit::table(&COLUMNS, &rows, top.width.saturating_sub(2)).block(
        Block::bordered()
            .title(format!(" {} (pid {}) — vCPUs ", vm.name, vm.pid))
            .title_bottom(" shares of the window: in exits, in the VMM, halted, steal "),
    );
    frame.render_widget(table, top);
}

/// The columns, and which stay on a narrow terminal: where the time went and the steal first.
const COLUMNS: [Column; 12] = [
    Column {
        title: "vCPU",
        priority: 0,
    },
    Column {
        title: "TID",
        priority: 9,
    },
    Column {
        title: "EXITS/s",
        priority: 1,
    },
    Column {
        title: "USER/s",
        priority: 5,
    },
    Column {
        title: "HALT/s",
        priority: 8,
    },
    Column {
        title: "IN EXIT",
        priority: 3,
    },
    Column {
        title: "IN VMM",
        priority: 4,
    },
    Column {
        title: "HALTED",
        priority: 6,
    },
    Column {
        title: "STEAL",
        priority: 2,
    },
    Column {
        title: "MIGR/s",
        priority: 10,
    },
    Column {
        title: "CPU(NODE)",
        priority: 11,
    },
    Column {
        title: "TOP REASON",
        priority: 7,
    },
];

fn row(vcpu: &Vcpu) -> Vec<String> {
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
    vec![
        vcpu.index.map_or_else(unknown, |i| i.to_string()),
        vcpu.tid.map_or_else(unknown, |t| t.to_string()),
        format::rate(vcpu.exits.rate_of(ExitSource::KvmExit)),
        format::rate(vcpu.exits.rate_of(ExitSource::Userspace)),
        format::rate(vcpu.exits.rate_of(ExitSource::Halt)),
        format::share(vcpu.time.handling_exits),
        format::share(vcpu.time.in_vmm),
        format::share(vcpu.time.halted),
        format::share(sched.and_then(|s| s.figures.steal)),
        sched
            .and_then(|s| s.figures.migrations.as_ref())
            .map_or_else(|| "-".to_owned(), |m| format::rate(m.rate)),
        cpu,
        vcpu.exits
            .seen()
            .next()
            .map(|r| format!("{} {}", r.reason, format::rate(r.rate)))
            .unwrap_or_default(),
    ]
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
