//! NUMA: memory per node and huge-page coverage of each VM as gauges, the scheduler's placement
//! decisions as counters, which source the fault figures come from, and the procfs fallback's
//! figures while it runs; in the text report, the VM's memory by node, its placement decisions
//! and the fallback's figures.

use std::io::Write;


use super::Presenter;
use crate::{
    format,
    model::{
        Snapshot, SourceState, Vm,
        numa::{BalancingFigures, PlacementDecisions},
    },
    output::series::{
        Context, histograms,
        plain::{Gathered, Series},
    },
};

pub struct Numa;

impl Presenter for Numa {
    fn metrics(
        gathered: &mut Gathered,
        snapshot: &Snapshot,
        _context: Context<'_>,
    ) -> anyhow::Result<Vec<histograms::Family>> {
        let mut memory = Series::gauge(
            "kvmtop_vm_memory_bytes",
            "Memory mapped by the VMM process per NUMA node (numa_maps; read at most every \
             30 s).",
            &["vm", "pid", "node"],
        );
        let mut coverage = Series::gauge(
            "kvmtop_vm_huge_page_coverage_ratio",
            "Share of the guest's RAM backed by transparent or hugetlbfs huge pages.",
            &["vm", "pid"],
        );
        for vm in &snapshot.vms {
            let Some(m) = &vm.families.numa.memory else {
                continue;
            };
            let pid = vm.pid.to_string();
            for node in &m.by_node {
                memory
                    .with_label_values(&[vm.name.exact(), &pid, &node.node.to_string()])
                    .set(i64::try_from(node.bytes).unwrap_or(i64::MAX));
            }
            if let Some(share) = m.huge_page_coverage {
                coverage
                    .with_label_values(&[vm.name.exact(), &pid])
                    .set(share);
            }
        }
        gathered.add(memory);
        gathered.add(coverage);
        register_fault_source(gathered, snapshot);
        register_placement(gathered, snapshot);
        register_balancing(gathered, snapshot);
        Ok(Vec::new())
    }

    fn text_vm(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
        let numa = &vm.families.numa;
        if let Some(memory) = &numa.memory {
            let nodes: Vec<String> = memory
                .by_node
                .iter()
                .map(|n| format!("node {} {}", n.node, format::bytes(n.bytes)))
                .collect();
            writeln!(
                out,
                "  memory: {} ({}), huge pages {}",
                format::bytes(memory.resident_bytes),
                nodes.join(", "),
                format::share(memory.huge_page_coverage)
            )?;
        }
        if let Some(placement) = &numa.placement {
            text_placement(out, placement)?;
        }
        if let Some(balancing) = &numa.balancing {
            text_balancing(out, balancing)?;
        }
        Ok(())
    }
}

/// One series naming where the fault figures come from and, when the hook was refused, why in
/// a few bounded words (the snapshot's `numa.sources.numa_fault` has the kernel's full answer).
fn register_fault_source(gathered: &mut Gathered, snapshot: &Snapshot) {
    let mut source = Series::gauge(
        "kvmtop_numa_fault_source",
        "Where the VMs' NUMA fault figures come from (always 1): kind hook (every fault \
         counted at task_numa_fault), procfs_fallback (the hook was refused; NUMA balancing's \
         per-thread statistics from /proc/PID/task/TID/sched) or none. hook_refused says \
         why, per hook tried (e.g. fentry:permission_denied,kprobe:unsupported).",
        &["kind", "hook_refused"],
    );
    let numa = &snapshot.families.numa;
    let refused = match numa.sources.get("numa_fault") {
        Some(SourceState::Unavailable(why)) => refusal(why),
        _ => String::new(),
    };
    source
        .with_label_values(&[numa.fault_source.name(), refused.as_str()])
        .set(1);
    gathered.add(source);
}

/// `fentry:permission_denied,kprobe:unsupported` from the attach errors of the fault hook (one
/// per attempt, joined by "; "): a label of a few values, whatever the kernel said.
#[must_use]
pub fn refusal(why: &str) -> String {
    why.split("; ")
        .map(|attempt| {
            let hook = if attempt.contains("fentry") {
                "fentry"
            } else if attempt.contains("kprobe") {
                "kprobe"
            } else {
                "hook"
            };
            let reason = if attempt.contains("Operation not permitted")
                || attempt.contains("Permission denied")
            {
                "permission_denied"
            } else if attempt.contains("No such file or directory")
                || attempt.contains("not supported")
            {
                "unsupported"
            } else {
                "rejected"
            };
            format!("{hook}:{reason}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn register_placement(gathered: &mut Gathered, snapshot: &Snapshot) {
    let mut decisions = Series::counter(
        "kvmtop_vm_numa_placement_decisions_total",
        "The scheduler's NUMA placement decisions about the VMM's threads: move (to a CPU of \
         another node, sched_move_numa), swap (exchanged CPUs with a task on another node, \
         sched_swap_numa) and stuck (a wanted move found no CPU, sched_stick_numa).",
        &["vm", "pid", "kind"],
    );
    for vm in &snapshot.vms {
        let Some(p) = &vm.families.numa.placement else {
            continue;
        };
        let pid = vm.pid.to_string();
        for (kind, count) in ["move", "swap", "stuck"].iter().zip(p.cumulative) {
            decisions
                .with_label_values(&[vm.name.exact(), &pid, kind])
                .inc_by(count);
        }
    }
    gathered.add(decisions);
}

fn register_balancing(gathered: &mut Gathered, snapshot: &Snapshot) {
    let mut migrated = Series::counter(
        "kvmtop_vm_numa_balancing_pages_migrated_total",
        "Pages NUMA balancing migrated on the VMM's faults (numa_pages_migrated of its \
         threads), from the procfs fallback: only while task_numa_fault cannot be hooked. \
         Each VM is read at most every 10 s, so the counter moves in steps.",
        &["vm", "pid"],
    );
    let mut remote = Series::gauge(
        "kvmtop_vm_numa_recent_remote_fault_share",
        "Of the VMM threads' recent NUMA hinting faults (the kernel's decaying averages), the \
         share on memory of a node other than the one each thread runs on; from the procfs \
         fallback, only while task_numa_fault cannot be hooked.",
        &["vm", "pid"],
    );
    for vm in &snapshot.vms {
        let Some(b) = &vm.families.numa.balancing else {
            continue;
        };
        let pid = vm.pid.to_string();
        migrated
            .with_label_values(&[vm.name.exact(), &pid])
            .inc_by(b.migrated_pages_cumulative);
        if let Some(share) = b.recent_remote_share {
            remote.with_label_values(&[vm.name.exact(), &pid]).set(share);
        }
    }
    gathered.add(migrated);
    gathered.add(remote);
}

fn text_placement(out: &mut dyn Write, p: &PlacementDecisions) -> std::io::Result<()> {
    if p.moves + p.swaps + p.stuck == 0 {
        return Ok(());
    }
    let node = |n: Option<u32>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let pairs: Vec<String> = p
        .by_node
        .iter()
        .map(|m| {
            format!(
                "{} {}→{} ×{}",
                m.kind,
                node(m.from_node),
                node(m.to_node),
                m.count
            )
        })
        .collect();
    writeln!(
        out,
        "  NUMA placement: {} moves, {} swaps, {} stuck ({})",
        p.moves,
        p.swaps,
        p.stuck,
        pairs.join(", ")
    )
}

fn text_balancing(out: &mut dyn Write, b: &BalancingFigures) -> std::io::Result<()> {
    let nodes: Vec<String> = b
        .recent_faults_by_node
        .iter()
        .map(|n| format!("node {} {}", n.node, format::share(Some(n.share))))
        .collect();
    let migrated = match (b.migrated_pages, b.span_seconds) {
        (Some(pages), Some(span)) => format!("{pages} pages migrated in {span:.0} s"),
        _ => "pages migrated: after the next reading".to_owned(),
    };
    writeln!(
        out,
        "  NUMA faults (procfs fallback, read {:.0} s ago): recent faults {}, {} off the \
         running node; {migrated}",
        b.age_seconds,
        if nodes.is_empty() {
            "none".to_owned()
        } else {
            nodes.join(", ")
        },
        format::share(b.recent_remote_share),
    )?;
    for vcpu in &b.vcpus {
        let node = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "    vcpu {}: on node {}, prefers node {}, {} of recent faults off its node",
            vcpu.index,
            node(vcpu.current_node),
            node(vcpu.preferred_node),
            format::share(vcpu.recent_remote_share),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_few_bounded_words() {
        let why = "fentry on task_numa_fault rejected: the BPF_PROG_LOAD syscall returned \
                   Operation not permitted (os error 1). Verifier output: : Operation not \
                   permitted (os error 1); cannot attach a kprobe to task_numa_fault: \
                   `/sys/bus/event_source/devices/kprobe/type`: No such file or directory (os \
                   error 2)";
        assert_eq!(refusal(why), "fentry:permission_denied,kprobe:unsupported");
        assert_eq!(refusal("something new"), "hook:rejected");
    }
}
