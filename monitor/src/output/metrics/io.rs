//! Block I/O and TLB-shootdown metrics: requests, bytes and latency per VM, host device and
//! operation; shootdowns sent and received per VM, and received per host CPU.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, proto::MetricFamily};

use super::histograms;
use crate::model::Snapshot;

/// Registers the counters and gauges with `registry` and returns the block latency and queue
/// time histogram families (those with series).
pub fn register(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<Vec<MetricFamily>> {
    let labels = ["vm", "pid", "device", "op"];
    let requests = IntCounterVec::new(
        Opts::new(
            "kvmtop_vm_block_requests_total",
            "Block requests of each VM completed, per host device and operation (read, write, \
             flush, discard, other), attributed to the VMM process that submitted them.",
        ),
        &labels,
    )?;
    let bytes = IntCounterVec::new(
        Opts::new(
            "kvmtop_vm_block_bytes_total",
            "Bytes of each VM's block requests, per host device and operation.",
        ),
        &labels,
    )?;
    let in_flight = IntGaugeVec::new(
        Opts::new(
            "kvmtop_vm_block_in_flight_requests",
            "Block requests of each VM issued and not yet completed at the end of the window.",
        ),
        &["vm", "pid", "device"],
    )?;
    let mut latency = histograms::Family::new(
        "kvmtop_vm_block_latency_seconds",
        "Block request latency, issue to completion, per VM, host device and operation, from \
         in-kernel log2 histograms.",
        histograms::WAIT_POWERS,
    );
    let mut queue = histograms::Family::new(
        "kvmtop_vm_block_queue_seconds",
        "Time block requests of each VM spent before being issued to the device (submission \
         to issue), per host device and operation.",
        histograms::WAIT_POWERS,
    );
    for vm in &snapshot.vms {
        let pid = vm.pid.to_string();
        for device in &vm.families.block.devices {
            in_flight
                .with_label_values(&[vm.name.exact(), pid.as_str(), &device.device])
                .set(i64::try_from(device.in_flight).unwrap_or(i64::MAX));
            for op in &device.ops {
                let values = [vm.name.exact(), pid.as_str(), device.device.as_str(), op.op];
                requests
                    .with_label_values(&values)
                    .inc_by(op.cumulative_latency.count);
                bytes.with_label_values(&values).inc_by(op.cumulative_bytes);
                let labels = [
                    ("vm", vm.name.exact()),
                    ("pid", pid.as_str()),
                    ("device", device.device.as_str()),
                    ("op", op.op),
                ];
                for (family, histogram) in [
                    (&mut queue, &op.cumulative_queue),
                    (&mut latency, &op.cumulative_latency),
                ] {
                    if histogram.count > 0 {
                        family.add(&labels, histogram);
                    }
                }
            }
        }
    }
    registry.register(Box::new(requests))?;
    registry.register(Box::new(bytes))?;
    registry.register(Box::new(in_flight))?;
    register_tlb(registry, snapshot)?;
    Ok([latency.into_family(), queue.into_family()]
        .into_iter()
        .flatten()
        .collect())
}

/// Shootdowns sent and received per VM, and received per host CPU.
fn register_tlb(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<()> {
    let shootdowns = IntCounterVec::new(
        Opts::new(
            "kvmtop_vm_tlb_shootdowns_total",
            "TLB shootdowns of each VMM process: sent (its threads asked other CPUs to flush, \
             TLB_REMOTE_SEND_IPI) and received (its threads flushed for another CPU, \
             TLB_REMOTE_SHOOTDOWN).",
        ),
        &["vm", "pid", "direction"],
    )?;
    let cpu_received = IntCounterVec::new(
        Opts::new(
            "kvmtop_cpu_tlb_shootdowns_received_total",
            "TLB shootdowns received by each host CPU, whatever task ran there.",
        ),
        &["cpu"],
    )?;
    for vm in &snapshot.vms {
        let pid = vm.pid.to_string();
        for (direction, count) in [
            ("sent", &vm.families.tlb.sent),
            ("received", &vm.families.tlb.received),
        ] {
            shootdowns
                .with_label_values(&[vm.name.exact(), pid.as_str(), direction])
                .inc_by(count.cumulative);
        }
    }
    for cpu in &snapshot.families.tlb.cpus {
        cpu_received
            .with_label_values(&[&cpu.cpu.to_string()])
            .inc_by(cpu.received.cumulative);
    }
    registry.register(Box::new(shootdowns))?;
    registry.register(Box::new(cpu_received))?;
    Ok(())
}
