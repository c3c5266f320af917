//! Scheduling: per-vCPU (or, at the `vm` level, per-VM) run-queue wait (steal), run time,
//! switches and migrations by class as counters; each VM's run-queue wait as a histogram; wait per thread class. In the text report:
//! who the VM waited behind, and each vCPU's steal, on-CPU share, migrations and placement.

use std::io::Write;


use super::Presenter;
use crate::{
    format,
    model::{
        Snapshot, Vcpu, Vm,
        sched::{MIGRATION_CLASSES, SchedCumulative},
    },
    output::series::{
        Context, histograms, ns_to_s,
        plain::{Gathered, Series},
        vcpu_label, vcpu_label_names, vcpu_label_values,
    },
};

pub struct Sched;

impl Presenter for Sched {
    fn metrics(
        gathered: &mut Gathered,
        snapshot: &Snapshot,
        context: Context<'_>,
    ) -> anyhow::Result<Vec<histograms::Family>> {
        let level = context.level;
        let seconds = |name: &'static str, help: &'static str| {
            Series::counter(
                name,
                help,
                &vcpu_label_names(level, &[]),
            )
        };
        let mut wait = seconds(
            "kvmtop_vcpu_run_queue_wait_seconds_total",
            "Time each vCPU thread was runnable but not running (the steal its guest sees); \
             rate() gives the steal share. At --metrics-detail vm, one series per VM: the sum \
             over its vCPUs (divide by kvmtop_vm_vcpus for the mean steal share).",
        );
        let mut run = seconds(
            "kvmtop_vcpu_run_seconds_total",
            "Time each vCPU thread ran on a host CPU. At --metrics-detail vm, one series per VM: \
             the sum over its vCPUs.",
        );
        let mut switches = Series::counter(
            "kvmtop_vcpu_context_switches_total",
            "Switches of each vCPU thread off its CPU: voluntary (it blocked, e.g. halted) \
             or involuntary (preempted while runnable). At --metrics-detail vm, one series \
             per VM and kind: the sum over its vCPUs.",
            &vcpu_label_names(level, &["kind"]),
        );
        let mut migrations = Series::counter(
            "kvmtop_vcpu_migrations_total",
            "Runs of each vCPU thread begun on another host CPU than its previous run, by \
             what the move crossed: same_core (SMT sibling), same_llc, cross_llc, cross_node. \
             At --metrics-detail vm, one series per VM and class: the sum over its vCPUs.",
            &vcpu_label_names(level, &["class"]),
        );
        let mut class_wait = Series::counter(
            "kvmtop_vm_thread_run_queue_wait_seconds_total",
            "Run-queue wait of each VMM thread class (vcpu, main, iothread, worker, vhost, \
             other), summed over its threads.",
            &["vm", "pid", "class"],
        );
        let mut wait_hist = histograms::Family::new(
            "kvmtop_vm_run_queue_wait_seconds",
            "Run-queue waits of the VM's vCPU threads (from wakeup or preemption to running), \
             from in-kernel log2 histograms.",
            histograms::powers(level, histograms::WAIT_POWERS, histograms::SUM_AND_COUNT),
        );
        for vm in &snapshot.vms {
            let pid = vm.pid.to_string();
            let name = vm.name.exact();
            for vcpu in &vm.vcpus {
                let Some(sched) = &vcpu.sched else { continue };
                let label = vcpu_label(vcpu);
                let labels = vcpu_label_values(level, name, &pid, &label, &[]);
                let c = &sched.figures.cumulative;
                wait.with_label_values(&labels).inc_by(ns_to_s(c.wait_ns));
                run.with_label_values(&labels).inc_by(ns_to_s(c.run_ns));
                for (kind, n) in [
                    ("voluntary", c.voluntary_switches),
                    ("involuntary", c.involuntary_switches),
                ] {
                    switches
                        .with_label_values(&vcpu_label_values(level, name, &pid, &label, &[kind]))
                        .inc_by(n);
                }
                if sched.figures.migrations.is_some() {
                    // Every class, at 0 when none happened, so queries find every series.
                    for class in MIGRATION_CLASSES {
                        migrations
                            .with_label_values(&vcpu_label_values(
                                level,
                                name,
                                &pid,
                                &label,
                                &[class],
                            ))
                            .inc_by(c.migrations.get(class).copied().unwrap_or(0));
                    }
                }
            }
            let vcpus = &vm.families.sched.vcpus.cumulative;
            if has_waits(vcpus) {
                wait_hist.add(&[("vm", name), ("pid", &pid)], &vcpus.wait);
            }
            for class in &vm.families.sched.classes {
                class_wait
                    .with_label_values(&[name, &pid, class.class.as_str()])
                    .inc_by(ns_to_s(class.figures.cumulative.wait_ns));
            }
        }
        gathered.add(wait);
        gathered.add(run);
        gathered.add(switches);
        gathered.add(migrations);
        gathered.add(class_wait);
        Ok(wait_hist.into_nonempty().into_iter().collect())
    }

    fn text_vm(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
        let contenders = &vm.families.sched.contenders;
        if contenders.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = contenders
            .iter()
            .map(|c| format!("{} {}", c.name, format::share(Some(c.share))))
            .collect();
        writeln!(out, "  waited behind: {}", parts.join(", "))
    }

    fn text_vcpu(out: &mut dyn Write, vcpu: &Vcpu) -> std::io::Result<()> {
        let Some(sched) = &vcpu.sched else {
            return Ok(());
        };
        let place = &sched.placement;
        let cpu = place.dominant_cpu.or(place.cpu);
        let node = place.dominant_node.or(place.node);
        writeln!(
            out,
            "           steal {}, on CPU {}, {} migrations/s, {} preempted; runs on cpu {} (node \
             {})",
            format::share(sched.figures.steal),
            format::share(sched.figures.on_cpu),
            sched
                .figures
                .migrations
                .as_ref()
                .map_or_else(|| "-".to_owned(), |m| format!("{:.1}", m.rate)),
            sched.figures.involuntary_switches,
            cpu.map_or_else(|| "?".to_owned(), |c| c.to_string()),
            node.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        )
    }
}

fn has_waits(c: &SchedCumulative) -> bool {
    c.wait.count > 0 || c.wait_ns > 0
}
