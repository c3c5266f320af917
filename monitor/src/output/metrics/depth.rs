//! Exits in depth: handling-latency histograms per VM and reason, per-vCPU time per exit
//! source, and each VM's exit details.

use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts, Registry, proto::MetricFamily};

use super::histograms;
use crate::model::{ExitSource, Snapshot};

/// Registers the counters and gauges with `registry` and returns the latency histogram family,
/// which is assembled directly (see [`histograms`]).
pub fn register(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<Option<MetricFamily>> {
    let exit_time = CounterVec::new(
        Opts::new(
            "kvmtop_vcpu_exit_time_seconds_total",
            "Time each vCPU spent per exit source: handling hardware exits (kvm_exit: from \
             kvm_exit to kvm_entry), in the VMM after a userspace exit (userspace: until the next \
             KVM_RUN), or halted (halt). Divide its rate by 1 s for the share of the vCPU's time.",
        ),
        &["vm", "pid", "vcpu", "source"],
    )?;
    let detail_events = IntCounterVec::new(
        Opts::new(
            "kvmtop_vm_exit_detail_events_total",
            "Exit detail events per VM and kind (pio, mmio, msr, page_fault, hypercall, apic_ipi, \
             halt_poll, emulation), from KVM's detail tracepoints.",
        ),
        &["vm", "pid", "kind"],
    )?;
    let detail_rate = GaugeVec::new(
        Opts::new(
            "kvmtop_vm_exit_detail_rate",
            "Events per second over the last window of each VM's top detail values (port, MSR, \
             guest page, …); the rest of a kind is value=\"other\".",
        ),
        &["vm", "pid", "kind", "sub", "value"],
    )?;
    let mut latency = histograms::Family::new(
        "kvmtop_vm_exit_latency_seconds",
        "Exit handling time per VM and reason, from in-kernel log2 histograms: kvm_exit to \
         kvm_entry (source kvm_exit), userspace exit to the next KVM_RUN (source userspace), or \
         halt duration (source halt).",
        histograms::EXIT_POWERS,
    );
    for vm in &snapshot.vms {
        let pid = vm.pid.to_string();
        for vcpu in &vm.vcpus {
            let label = super::vcpu_label(vcpu);
            for source in ExitSource::ALL {
                let ns: u64 = vcpu
                    .exits
                    .by_reason
                    .iter()
                    .filter(|r| r.source == source)
                    .filter_map(|r| r.cumulative_latency.as_ref().map(|h| h.sum_ns))
                    .sum();
                if ns > 0 {
                    #[expect(clippy::cast_precision_loss, reason = "seconds as f64")]
                    exit_time
                        .with_label_values(&[
                            vm.name.exact(),
                            pid.as_str(),
                            &label,
                            source.as_str(),
                        ])
                        .inc_by(ns as f64 / 1e9);
                }
            }
        }
        for reason in &vm.families.exits.by_reason {
            if let Some(histogram) = &reason.cumulative_latency {
                latency.add(
                    &[
                        ("vm", vm.name.exact()),
                        ("pid", &pid),
                        ("source", reason.source.as_str()),
                        ("isa", reason.isa.map_or("", |i| i.as_str())),
                        ("reason", &reason.reason),
                    ],
                    histogram,
                );
            }
        }
        for group in &vm.families.exits.details {
            let kind = group.kind.as_str();
            detail_events
                .with_label_values(&[vm.name.exact(), pid.as_str(), kind])
                .inc_by(group.cumulative);
            for detail in &group.top {
                detail_rate
                    .with_label_values(&[
                        vm.name.exact(),
                        pid.as_str(),
                        kind,
                        &detail.sub,
                        &detail.value,
                    ])
                    .set(detail.rate);
            }
            if group.other > 0 && group.count > 0 {
                #[expect(clippy::cast_precision_loss, reason = "event counts far below 2^52")]
                let other_rate = group.rate * group.other as f64 / group.count as f64;
                detail_rate
                    .with_label_values(&[vm.name.exact(), pid.as_str(), kind, "", "other"])
                    .set(other_rate);
            }
        }
    }
    registry.register(Box::new(exit_time))?;
    registry.register(Box::new(detail_events))?;
    registry.register(Box::new(detail_rate))?;
    Ok(latency.into_family())
}
