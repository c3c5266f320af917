//! NUMA: memory per node and huge-page coverage of each VM as gauges; in the text report, the
//! VM's memory by node.

use std::io::Write;

use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry, proto::MetricFamily};

use super::Presenter;
use crate::{
    format,
    model::{Snapshot, Vm},
};

pub struct Numa;

impl Presenter for Numa {
    fn metrics(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<Vec<MetricFamily>> {
        let memory = IntGaugeVec::new(
            Opts::new(
                "kvmtop_vm_memory_bytes",
                "Memory mapped by the VMM process per NUMA node (numa_maps; read at most every \
                 30 s).",
            ),
            &["vm", "pid", "node"],
        )?;
        let coverage = GaugeVec::new(
            Opts::new(
                "kvmtop_vm_huge_page_coverage_ratio",
                "Share of the guest's RAM backed by transparent or hugetlbfs huge pages.",
            ),
            &["vm", "pid"],
        )?;
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
        registry.register(Box::new(memory))?;
        registry.register(Box::new(coverage))?;
        Ok(Vec::new())
    }

    fn text_vm(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
        let Some(memory) = &vm.families.numa.memory else {
            return Ok(());
        };
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
        )
    }
}
