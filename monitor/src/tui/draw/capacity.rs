//! The header's host lines: what the VMs ask of the host beside what it has. CPUs: vCPUs against
//! online CPUs (CPU overcommit), the CPUs the vCPUs keep busy, the host's busy share and the
//! vCPUs' run-queue wait. Memory: the guests' configured RAM against host memory plus swap
//! (memory overcommit), what is still available, swap activity, and the memory-management
//! settings the advice looks at (THP, KSM, NUMA balancing).

use ratatui::{
    style::Style,
    text::{Line, Span},
};

use super::fitted_line;
use crate::{format, model::Snapshot};

/// Overcommit at or above which the ratio is shown as a warning: more vCPUs than CPUs is usual
/// (`OpenStack` allocates 4.0 by default) and only a warning well past it; any memory
/// overcommit is one, as the host must swap or kill when the guests touch their RAM.
const CPU_OVERCOMMIT_WARN: f64 = 4.0;
const MEMORY_OVERCOMMIT_WARN: f64 = 1.0;

/// "3 VMs · 6 vCPUs on 16 CPUs (0.4×) · vCPUs busy 2.4 CPUs · steal 12% · host busy 42%", the
/// segments that fit, in that order of importance.
pub fn cpus(snapshot: &Snapshot, width: u16) -> Line<'static> {
    let demand = snapshot.demand();
    let mut busy = 0.0;
    let mut steal_weighted = 0.0;
    let mut measured_threads = 0.0;
    for vm in &snapshot.vms {
        let figures = &vm.families.sched.vcpus;
        let threads = f64::from(figures.threads);
        if let (Some(on_cpu), Some(steal)) = (figures.on_cpu, figures.steal) {
            busy += on_cpu * threads;
            steal_weighted += steal * threads;
            measured_threads += threads;
        }
    }
    let host = &snapshot.host.state;
    let mut segments = vec![vec![Span::raw(format!(
        "{} VMs · {} vCPUs",
        snapshot.vms.len(),
        demand.vcpus
    ))]];
    if let (Some(cpus), Some(ratio)) = (host.cpus, demand.cpu_overcommit(host)) {
        segments.push(vec![
            Span::raw(format!(" on {cpus} CPUs ")),
            Span::styled(
                format!("({})", format::ratio(ratio)),
                warn_at(ratio, CPU_OVERCOMMIT_WARN),
            ),
        ]);
    }
    if measured_threads > 0.0 {
        segments.push(vec![Span::raw(format!(" · vCPUs busy {busy:.1} CPUs"))]);
        let steal = steal_weighted / measured_threads;
        segments.push(vec![
            Span::raw(" · steal "),
            Span::styled(format::share(Some(steal)), super::steal_style(steal)),
        ]);
    }
    if let Some(share) = host.cpu_busy {
        segments.push(vec![Span::raw(format!(
            " · host busy {}",
            format::share(Some(share))
        ))]);
    }
    fitted_line(segments, width)
}

/// "memory: guests 12GiB of 64GiB + 8GiB swap (0.2×) · swap in 0 out 12 pages/s · resident
/// 9.5GiB · available 20GiB · THP madvise · KSM running · NUMA balancing on", the segments that
/// fit, in that order of importance.
pub fn memory(snapshot: &Snapshot, width: u16) -> Line<'static> {
    let host = &snapshot.host.state;
    let demand = snapshot.demand();
    let resident: u64 = snapshot
        .vms
        .iter()
        .filter_map(|vm| vm.families.numa.memory.as_ref())
        .map(|m| m.resident_bytes)
        .sum();
    let mut segments = vec![vec![Span::raw("memory:")]];
    // Without any VM's RAM size there is nothing to set against the host's.
    if demand.memory_known > 0 {
        // A VM whose RAM size is not known makes the sum a lower bound.
        let at_least = if demand.memory_unknown > 0 { "≥" } else { "" };
        segments.push(vec![Span::raw(format!(
            " guests {at_least}{}",
            format::bytes(demand.memory_bytes)
        ))]);
        if let (Some(memory), Some(ratio)) = (host.memory_bytes, demand.memory_overcommit(host)) {
            let swap = host.swap_bytes.unwrap_or(0);
            let of = if swap > 0 {
                format!(
                    " of {} + {} swap ",
                    format::bytes(memory),
                    format::bytes(swap)
                )
            } else {
                format!(" of {} ", format::bytes(memory))
            };
            segments.push(vec![
                Span::raw(of),
                Span::styled(
                    format!("({})", format::ratio(ratio)),
                    warn_at(ratio, MEMORY_OVERCOMMIT_WARN),
                ),
            ]);
        }
    } else if let Some(memory) = host.memory_bytes {
        segments.push(vec![Span::raw(format!(" host {}", format::bytes(memory)))]);
    }
    // Without swap there is no swap activity to show (a host may still have swapped before
    // `swapoff`, but not in this window).
    if let (Some(swap_in), Some(swap_out), false) = (
        host.swap_in_pages_per_second,
        host.swap_out_pages_per_second,
        host.swap_bytes == Some(0),
    ) {
        let style = if swap_in + swap_out > 0.0 {
            Style::new().yellow()
        } else {
            Style::new()
        };
        segments.push(vec![
            Span::raw(" · swap "),
            Span::styled(
                format!(
                    "in {} out {} pages/s",
                    format::rate(swap_in),
                    format::rate(swap_out)
                ),
                style,
            ),
        ]);
    }
    if resident > 0 {
        segments.push(vec![Span::raw(format!(
            " · resident {}",
            format::bytes(resident)
        ))]);
    }
    if let Some(available) = host.memory_available_bytes {
        segments.push(vec![Span::raw(format!(
            " · available {}",
            format::bytes(available)
        ))]);
    }
    for setting in host.settings() {
        segments.push(vec![Span::raw(format!(" · {setting}"))]);
    }
    fitted_line(segments, width)
}

/// Yellow at or above `threshold`, plain below.
fn warn_at(value: f64, threshold: f64) -> Style {
    if value >= threshold {
        Style::new().yellow().bold()
    } else {
        Style::new()
    }
}
