//! Scheduling and NUMA metrics: per-vCPU run-queue wait (steal), run time, switches and
//! migrations by class as counters; each VM's run-queue wait as a histogram; per thread class
//! wait; memory per NUMA node and huge-page coverage as gauges.

use prometheus::{
    CounterVec, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, proto::MetricFamily,
};

use super::{histograms, vcpu_label};
use crate::model::{Snapshot, Vm, sched::SchedCumulative};

/// Migration classes, all exported (at 0 when none happened) so queries find every series.
const CLASSES: [&str; 5] = [
    "same_core",
    "same_llc",
    "cross_llc",
    "cross_node",
    "unknown",
];

/// Registers the counters and gauges with `registry` and returns the wait histogram family.
pub fn register(registry: &Registry, snapshot: &Snapshot) -> anyhow::Result<Option<MetricFamily>> {
    let mut metrics = SchedMetrics::new()?;
    for vm in &snapshot.vms {
        metrics.add(vm);
    }
    metrics.register(registry)
}

struct SchedMetrics {
    wait: CounterVec,
    run: CounterVec,
    switches: IntCounterVec,
    migrations: IntCounterVec,
    class_wait: CounterVec,
    memory: IntGaugeVec,
    coverage: GaugeVec,
    wait_hist: histograms::Family,
}

impl SchedMetrics {
    fn new() -> anyhow::Result<Self> {
        let seconds =
            |name: &str, help: &str| CounterVec::new(Opts::new(name, help), &["vm", "pid", "vcpu"]);
        Ok(Self {
            wait: seconds(
                "kvmtop_vcpu_run_queue_wait_seconds_total",
                "Time each vCPU thread was runnable but not running (the steal its guest \
                 sees); rate() gives the steal share.",
            )?,
            run: seconds(
                "kvmtop_vcpu_run_seconds_total",
                "Time each vCPU thread ran on a host CPU.",
            )?,
            switches: IntCounterVec::new(
                Opts::new(
                    "kvmtop_vcpu_context_switches_total",
                    "Switches of each vCPU thread off its CPU: voluntary (it blocked, e.g. \
                     halted) or involuntary (preempted while runnable).",
                ),
                &["vm", "pid", "vcpu", "kind"],
            )?,
            migrations: IntCounterVec::new(
                Opts::new(
                    "kvmtop_vcpu_migrations_total",
                    "Moves of each vCPU thread to another host CPU, by what the move crossed: \
                     same_core (SMT sibling), same_llc, cross_llc, cross_node.",
                ),
                &["vm", "pid", "vcpu", "class"],
            )?,
            class_wait: CounterVec::new(
                Opts::new(
                    "kvmtop_vm_thread_run_queue_wait_seconds_total",
                    "Run-queue wait of each VMM thread class (vcpu, main, iothread, worker, \
                     vhost, other), summed over its threads.",
                ),
                &["vm", "pid", "class"],
            )?,
            memory: IntGaugeVec::new(
                Opts::new(
                    "kvmtop_vm_memory_bytes",
                    "Memory mapped by the VMM process per NUMA node (numa_maps; read at most \
                     every 30 s).",
                ),
                &["vm", "pid", "node"],
            )?,
            coverage: GaugeVec::new(
                Opts::new(
                    "kvmtop_vm_huge_page_coverage_ratio",
                    "Share of the guest's RAM backed by transparent or hugetlbfs huge pages.",
                ),
                &["vm", "pid"],
            )?,
            wait_hist: histograms::Family::new(
                "kvmtop_vm_run_queue_wait_seconds",
                "Run-queue waits of the VM's vCPU threads (from wakeup or preemption to \
                 running), from in-kernel log2 histograms.",
                histograms::WAIT_POWERS,
            ),
        })
    }

    fn add(&mut self, vm: &Vm) {
        let pid = vm.pid.to_string();
        for vcpu in &vm.vcpus {
            let Some(sched) = &vcpu.sched else { continue };
            let label = vcpu_label(vcpu);
            let labels = [vm.name.exact(), pid.as_str(), label.as_str()];
            let c = &sched.figures.cumulative;
            self.wait
                .with_label_values(&labels)
                .inc_by(ns_to_s(c.wait_ns));
            self.run
                .with_label_values(&labels)
                .inc_by(ns_to_s(c.run_ns));
            for (kind, n) in [
                ("voluntary", c.voluntary_switches),
                ("involuntary", c.involuntary_switches),
            ] {
                self.switches
                    .with_label_values(&[vm.name.exact(), pid.as_str(), &label, kind])
                    .inc_by(n);
            }
            if sched.figures.migrations.is_some() {
                for class in CLASSES {
                    self.migrations
                        .with_label_values(&[vm.name.exact(), pid.as_str(), &label, class])
                        .inc_by(c.migrations.get(class).copied().unwrap_or(0));
                }
            }
        }
        if has_waits(&vm.families.sched.vcpus.cumulative) {
            self.wait_hist.add(
                &[("vm", vm.name.exact()), ("pid", &pid)],
                &vm.families.sched.vcpus.cumulative.wait,
            );
        }
        for class in &vm.families.sched.classes {
            self.class_wait
                .with_label_values(&[vm.name.exact(), pid.as_str(), class.class.as_str()])
                .inc_by(ns_to_s(class.figures.cumulative.wait_ns));
        }
        if let Some(m) = &vm.families.numa.memory {
            for node in &m.by_node {
                self.memory
                    .with_label_values(&[vm.name.exact(), pid.as_str(), &node.node.to_string()])
                    .set(i64::try_from(node.bytes).unwrap_or(i64::MAX));
            }
            if let Some(share) = m.huge_page_coverage {
                self.coverage
                    .with_label_values(&[vm.name.exact(), pid.as_str()])
                    .set(share);
            }
        }
    }

    fn register(self, registry: &Registry) -> anyhow::Result<Option<MetricFamily>> {
        registry.register(Box::new(self.wait))?;
        registry.register(Box::new(self.run))?;
        registry.register(Box::new(self.switches))?;
        registry.register(Box::new(self.migrations))?;
        registry.register(Box::new(self.class_wait))?;
        registry.register(Box::new(self.memory))?;
        registry.register(Box::new(self.coverage))?;
        Ok(self.wait_hist.into_family())
    }
}

fn has_waits(c: &SchedCumulative) -> bool {
    c.wait.count > 0 || c.wait_ns > 0
}

#[expect(
    clippy::cast_precision_loss,
    reason = "seconds as f64, as Prometheus keeps them"
)]
fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}
