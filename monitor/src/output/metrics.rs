//! Prometheus metrics for a snapshot.
//!
//! Counters carry the kernel's running totals since kvmtop started watching each VM; Prometheus
//! computes rates with `rate()`. Label sets are bounded: per VM, per vCPU, per exit reason (the
//! reason tables are finite; unknown codes are rare by definition). Latency histograms are per
//! VM and reason, not per vCPU, to keep the series count at VMs × reasons × 19 buckets; per-vCPU
//! time goes in plain counters. Exit details (ports, MSRs, …) are gauges of the window's top
//! values, whose label values change as the top changes, plus a counter per kind.

use prometheus::{Encoder as _, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{
    model::{Snapshot, SourceState, advice::Severity, advice::Target},
    output::families,
};

/// Renders `snapshot` in the Prometheus text exposition format: the VMs' identities, every
/// family's metrics, the health of the kernel sources, and the advice in force.
pub fn render(snapshot: &Snapshot) -> anyhow::Result<String> {
    let registry = Registry::new();
    register_vms(&registry, snapshot)?;
    register_health(&registry, snapshot)?;
    registry.register(Box::new(recommendations(snapshot)?))?;
    let histograms = families::metrics(&registry, snapshot)?;
    let mut metric_families = registry.gather();
    metric_families.extend(histograms);
    let mut text = Vec::new();
    TextEncoder::new().encode(&metric_families, &mut text)?;
    Ok(String::from_utf8(text)?)
}

/// One info series per VM with its identity as labels, and its vCPU count.
fn register_vms(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<()> {
    let info = IntGaugeVec::new(
        Opts::new(
            "kvmtop_vm_info",
            "Always 1: one series per VM with its identity as labels.",
        ),
        &["vm", "pid", "uuid", "vmm"],
    )?;
    let vcpus = IntGaugeVec::new(
        Opts::new("kvmtop_vm_vcpus", "Number of vCPUs of the VM."),
        &["vm", "pid"],
    )?;
    for vm in &snapshot.vms {
        let pid = vm.pid.to_string();
        info.with_label_values(&[
            vm.name.exact(),
            pid.as_str(),
            vm.uuid.as_deref().unwrap_or(""),
            vm.vmm.exact(),
        ])
        .set(1);
        let indexed = vm.vcpus.iter().filter(|v| v.index.is_some()).count();
        vcpus
            .with_label_values(&[vm.name.exact(), pid.as_str()])
            .set(i64::try_from(indexed).unwrap_or(i64::MAX));
    }
    registry.register(Box::new(info))?;
    registry.register(Box::new(vcpus))?;
    Ok(())
}

/// Whether each kernel source is attached, and what the kernel programs lost: events dropped
/// on full maps, events the kernel skipped a program for, and the same per source.
fn register_health(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<()> {
    let source_up = IntGaugeVec::new(
        Opts::new(
            "kvmtop_source_up",
            "1 when a kernel source (tracepoint, kprobe or fentry) of a signal family is \
             attached, 0 when it is unavailable on this host (the snapshot says why).",
        ),
        &["family", "source"],
    )?;
    let dropped = IntCounterVec::new(
        Opts::new(
            "kvmtop_events_dropped_total",
            "Events of a signal family not counted because one of its kernel maps was full \
             (counted by the family's *_DROPS map).",
        ),
        &["family"],
    )?;
    let lost = IntCounterVec::new(
        Opts::new(
            "kvmtop_source_lost_events_total",
            "Events of an attached kernel source the kernel did not run its program for (another \
             BPF program was already running on that CPU): the source's figures undercount by as \
             much. Per source what kvmtop_program_skipped_events_total counts per program.",
        ),
        &["family", "source"],
    )?;
    let skipped = IntCounterVec::new(
        Opts::new(
            "kvmtop_program_skipped_events_total",
            "Events the kernel did not run a kvmtop program for because another BPF program was \
             already running on that CPU; figures from that program undercount by as much.",
        ),
        &["program"],
    )?;
    for (program, count) in &snapshot.skipped_events {
        skipped.with_label_values(&[program]).inc_by(count.total);
    }
    registry.register(Box::new(skipped))?;
    for family in snapshot.families.states() {
        for (source, state) in family.sources {
            let up = !matches!(state, SourceState::Unavailable(_));
            source_up
                .with_label_values(&[family.family, source.as_str()])
                .set(i64::from(up));
            if up {
                lost.with_label_values(&[family.family, source.as_str()])
                    .inc_by(family.lost.get(source).map_or(0, |l| l.total));
            }
        }
        dropped
            .with_label_values(&[family.family])
            .inc_by(family.dropped.total);
    }
    registry.register(Box::new(source_up))?;
    registry.register(Box::new(dropped))?;
    registry.register(Box::new(lost))?;
    Ok(())
}

/// One gauge per recommendation in force: 1 info, 2 warning, 3 critical. The evidence is in the
/// JSON snapshot and the live view; labels stay bounded (rule × target).
fn recommendations(snapshot: &Snapshot) -> anyhow::Result<IntGaugeVec> {
    let gauge = IntGaugeVec::new(
        Opts::new(
            "kvmtop_recommendation",
            "A tuning recommendation in force (value: 1 info, 2 warning, 3 critical). \
             `kvmtop explain RULE` describes the rule; the evidence is in the snapshot.",
        ),
        &["rule", "severity", "target", "vm", "pid"],
    )?;
    for r in &snapshot.recommendations {
        let (vm, pid) = match &r.target {
            Target::Host => (String::new(), String::new()),
            Target::Vm { pid, .. }
            | Target::Vcpu { pid, .. }
            | Target::Drive { pid, .. }
            | Target::Nic { pid, .. } => (
                snapshot
                    .vms
                    .iter()
                    .find(|v| v.pid == *pid)
                    .map_or_else(String::new, |v| v.name.exact().to_owned()),
                pid.to_string(),
            ),
        };
        let severity = format!("{:?}", r.severity).to_lowercase();
        let level = match r.severity {
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Critical => 3,
        };
        gauge
            .with_label_values(&[r.id, &severity, &r.target.to_string(), &vm, &pid])
            .set(level);
    }
    Ok(gauge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn exit_counters_carry_every_label() {
        let text = render(&fixture::snapshot()).unwrap();
        assert!(
            text.contains("# TYPE kvmtop_vm_exits_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_exits_total{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vcpu=\"0\",vm=\"web-1\"} 2000000"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_exits_total{isa=\"\",pid=\"4242\",reason=\"IO\",source=\"userspace\",vcpu=\"0\",vm=\"web-1\"} 1980000"
            ),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_vcpus{pid=\"4242\",vm=\"web-1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_source_up{family=\"exits\",source=\"kvm_exit\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn latency_is_a_histogram_on_power_of_two_bounds() {
        let text = render(&fixture::snapshot()).unwrap();
        assert!(
            text.contains("# TYPE kvmtop_vm_exit_latency_seconds histogram"),
            "{text}"
        );
        // The fixture's IO_INSTRUCTION: 2,000,000 intervals, 9/10 in [2048, 4096) ns.
        let series = |le: &str| {
            format!(
                "kvmtop_vm_exit_latency_seconds_bucket{{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vm=\"web-1\",le=\"{le}\"}}"
            )
        };
        assert!(
            text.contains(&format!("{} 0", series("0.000002048"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1800000", series("0.000004096"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 2000000", series("+Inf"))),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vcpu_exit_time_seconds_total{pid=\"4242\",source=\"kvm_exit\",vcpu=\"0\",vm=\"web-1\"}"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_exit_detail_rate{kind=\"pio\",pid=\"4242\",sub=\"out\",value=\"0x80\",vm=\"web-1\"} 99500"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_exit_detail_events_total{kind=\"pio\",pid=\"4242\",vm=\"web-1\"} 2000000"
            ),
            "{text}"
        );
    }

    #[test]
    fn scheduling_counters_and_memory_gauges() {
        let mut snapshot = fixture::snapshot();
        let vcpu = snapshot.vms[0].vcpus[0].sched.as_mut().unwrap();
        vcpu.figures.cumulative.wait_ns = 1_500_000_000;
        vcpu.figures.cumulative.migrations.insert("same_llc", 7);
        let text = render(&snapshot).unwrap();
        assert!(
            text.contains(
                "kvmtop_vcpu_run_queue_wait_seconds_total{pid=\"4242\",vcpu=\"0\",vm=\"web-1\"} 1.5"
            ),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vcpu_migrations_total{class=\"same_llc\",pid=\"4242\",vcpu=\"0\",vm=\"web-1\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vcpu_migrations_total{class=\"cross_node\",pid=\"4242\",vcpu=\"0\",vm=\"web-1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_memory_bytes{node=\"1\",pid=\"4242\",vm=\"web-1\"}"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_huge_page_coverage_ratio{pid=\"4242\",vm=\"web-1\"}"),
            "{text}"
        );
    }

    #[test]
    fn block_and_tlb_counters() {
        let mut snapshot = fixture::snapshot();
        let read = &mut snapshot.vms[0].families.block.devices[0].ops[0];
        read.cumulative_latency.count = 4_800;
        read.cumulative_latency.buckets[16] = 4_800;
        let text = render(&snapshot).unwrap();
        assert!(
            text.contains("# TYPE kvmtop_vm_block_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_block_requests_total{device=\"nvme0n1\",op=\"read\",pid=\"4242\",vm=\"web-1\"} 4800"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_tlb_shootdowns_total{direction=\"sent\",pid=\"4242\",vm=\"web-1\"}"
            ),
            "{text}"
        );
    }

    #[test]
    fn each_recommendation_is_a_gauge() {
        let text = render(&fixture::snapshot()).unwrap();
        assert!(
            text.contains("kvmtop_recommendation{pid=\"4242\",rule=\"C1\",severity=\"critical\",target=\"vCPU 0 of pid 4242 (tid 4250)\",vm=\"web-1\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn skipped_events_are_counted_per_program() {
        let text = render(&fixture::snapshot()).unwrap();
        assert!(
            text.contains("kvmtop_program_skipped_events_total{program=\"block_rq_complete\"} 400"),
            "{text}"
        );
    }

    #[test]
    fn losses_are_counted_per_source_and_expired_requests_per_device() {
        let text = render(&fixture::snapshot()).unwrap();
        for line in [
            "kvmtop_source_lost_events_total{family=\"block\",source=\"block_rq_complete\"} 400",
            "kvmtop_source_lost_events_total{family=\"block\",source=\"block_io_start\"} 0",
            "kvmtop_source_lost_events_total{family=\"exits\",source=\"kvm_exit\"} 0",
            "kvmtop_events_dropped_total{family=\"block\"} 0",
            "kvmtop_vm_block_expired_requests_total{device=\"nvme0n1\",pid=\"4242\",vm=\"web-1\"} 5",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // An unavailable source runs no program: it has no loss series, only kvmtop_source_up 0.
        assert!(
            !text.contains("kvmtop_source_lost_events_total{family=\"numa\",source=\"numa_fault\""),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_source_lost_events_total{family=\"numa\",source=\"sched_move_numa\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_host_without_vms_renders() {
        let mut snapshot = fixture::snapshot();
        snapshot.vms.clear();
        snapshot.recommendations.clear();
        let text = render(&snapshot).unwrap();
        assert!(text.contains("kvmtop_source_up"), "{text}");
        assert!(
            text.contains("kvmtop_source_up{family=\"numa\",source=\"numa_fault\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn hostile_names_are_escaped() {
        let mut snapshot = fixture::snapshot();
        snapshot.vms[0].name = "evil\"} 1\nfake_metric 2".into();
        let text = render(&snapshot).unwrap();
        assert!(
            !text.lines().any(|l| l.starts_with("fake_metric")),
            "{text}"
        );
    }
}
