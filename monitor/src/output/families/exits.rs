//! VM exits: counts per vCPU (or per VM), source and reason; handling-latency histograms per VM
//! and reason; time per exit source per vCPU (or per VM); each VM's exit details, per kind and,
//! at the `full` level, per value (bounded, see `output::series::details`). In the text report:
//! the VM's exit
//! rates and top reasons with their latency, what they were about, and each vCPU's rates and
//! where its time went.

use std::io::Write;


use super::Presenter;
use crate::{
    format,
    model::{DetailGroup, ExitSource, LatencySummary, Snapshot, Vcpu, Vm},
    output::series::{
        Context, Level,
        details::KindCounters,
        histograms, ns_to_s,
        plain::{Gathered, Series},
        vcpu_label, vcpu_label_names, vcpu_label_values,
    },
};

/// How many reasons the text report lists per VM.
const TOP_REASONS: usize = 5;

pub struct Exits;

impl Presenter for Exits {
    fn metrics(
        gathered: &mut Gathered,
        snapshot: &Snapshot,
        context: Context<'_>,
    ) -> anyhow::Result<Vec<histograms::Family>> {
        let mut per_vcpu = PerVcpu::new(context.level);
        let mut details = Details::new(context);
        let mut latency = histograms::Family::new(
            "kvmtop_vm_exit_latency_seconds",
            "Exit handling time per VM and reason, from in-kernel log2 histograms: kvm_exit to \
             kvm_entry (source kvm_exit), userspace exit to the next KVM_RUN (source userspace), \
             or halt duration (source halt).",
            histograms::powers(
                context.level,
                histograms::EXIT_POWERS,
                histograms::SUM_AND_COUNT,
            ),
        );
        for vm in &snapshot.vms {
            let pid = vm.pid.to_string();
            let name = vm.name.exact();
            for vcpu in &vm.vcpus {
                per_vcpu.add(name, &pid, vcpu);
            }
            for reason in &vm.families.exits.by_reason {
                if let Some(histogram) = &reason.cumulative_latency {
                    latency.add(
                        &[
                            ("vm", name),
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
                details.add(name, &pid, group);
            }
            if context.level.full()
                && let Some(kinds) = context.details.of(vm.pid, vm.start_time)
            {
                for (kind, counters) in kinds {
                    details.add_values(name, &pid, kind, counters);
                }
            }
        }
        gathered.add(per_vcpu.exits);
        gathered.add(per_vcpu.time);
        gathered.add(details.events);
        if context.level.full() {
            gathered.add(details.rate);
            gathered.add(details.values);
        }
        Ok(latency.into_nonempty().into_iter().collect())
    }

    fn text_vm(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
        let exits = &vm.families.exits;
        writeln!(
            out,
            "  exits/s: {:.0} hardware, {:.0} to userspace, {:.0} halts",
            exits.rate_of(ExitSource::KvmExit),
            exits.rate_of(ExitSource::Userspace),
            exits.rate_of(ExitSource::Halt)
        )?;
        writeln!(
            out,
            "  {:<10} {:<24} {:>10} {:>10} {:>6} {:>8} {:>8} {:>8}",
            "source", "reason", "count", "rate/s", "share", "p50", "p99", "max"
        )?;
        for reason in exits.by_reason.iter().take(TOP_REASONS) {
            let latency = |pick: fn(&LatencySummary) -> u64| {
                reason
                    .latency
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |l| format::duration_ns(pick(l)))
            };
            writeln!(
                out,
                "  {:<10} {:<24} {:>10} {:>10.1} {:>6} {:>8} {:>8} {:>8}",
                reason.source.as_str(),
                reason.reason,
                reason.count,
                reason.rate,
                format::share(Some(reason.share)),
                latency(|l| l.p50_ns),
                latency(|l| l.p99_ns),
                latency(|l| l.max_ns),
            )?;
        }
        for group in &exits.details {
            write_details(out, group)?;
        }
        Ok(())
    }

    fn text_vcpu(out: &mut dyn Write, vcpu: &Vcpu) -> std::io::Result<()> {
        let index = vcpu.index.map_or_else(|| "?".to_owned(), |i| i.to_string());
        let tid = vcpu.tid.map_or_else(|| "?".to_owned(), |t| t.to_string());
        writeln!(
            out,
            "  vcpu {index:<3} tid {tid:<8} {:>10.1} exits/s ({:.1} to userspace); time: {} in \
             exits, {} in the VMM, {} halted",
            vcpu.exits.rate_of(ExitSource::KvmExit),
            vcpu.exits.rate_of(ExitSource::Userspace),
            format::share(vcpu.time.handling_exits),
            format::share(vcpu.time.in_vmm),
            format::share(vcpu.time.halted),
        )
    }
}

/// Exits and the time they took, per vCPU, or per VM (summed over its vCPUs) at the `vm` level.
struct PerVcpu {
    level: Level,
    exits: Series,
    time: Series,
}

impl PerVcpu {
    fn new(level: Level) -> Self {
        Self {
            level,
            exits: Series::counter(
                "kvmtop_vm_exits_total",
                "VM exits handled, by VM, vCPU, kernel source (kvm_exit: hardware exits; \
                 userspace: returns of KVM_RUN to the VMM), ISA (vmx/svm, empty for \
                 userspace) and reason. At --metrics-detail vm, one series per VM and \
                 reason: the sum over its vCPUs.",
                &vcpu_label_names(level, &["source", "isa", "reason"]),
            ),
            time: Series::counter(
                "kvmtop_vcpu_exit_time_seconds_total",
                "Time each vCPU spent per exit source: handling hardware exits (kvm_exit: \
                 from kvm_exit to kvm_entry), in the VMM after a userspace exit (userspace: \
                 until the next KVM_RUN), or halted (halt). Divide its rate by 1 s for the \
                 share of the vCPU's time. At --metrics-detail vm, one series per VM and \
                 source: the sum over its vCPUs (divide by kvmtop_vm_vcpus for the mean \
                 share).",
                &vcpu_label_names(level, &["source"]),
            ),
        }
    }

    fn add(&mut self, name: &str, pid: &str, vcpu: &Vcpu) {
        let label = vcpu_label(vcpu);
        for reason in &vcpu.exits.by_reason {
            let isa = reason.isa.map_or("", |i| i.as_str());
            self.exits
                .with_label_values(&vcpu_label_values(
                    self.level,
                    name,
                    pid,
                    &label,
                    &[reason.source.as_str(), isa, &reason.reason],
                ))
                .inc_by(reason.cumulative);
        }
        for source in ExitSource::ALL {
            let ns: u64 = vcpu
                .exits
                .by_reason
                .iter()
                .filter(|r| r.source == source)
                .filter_map(|r| r.cumulative_latency.as_ref().map(|h| h.sum_ns))
                .sum();
            if ns > 0 {
                self.time
                    .with_label_values(&vcpu_label_values(
                        self.level,
                        name,
                        pid,
                        &label,
                        &[source.as_str()],
                    ))
                    .inc_by(ns_to_s(ns));
            }
        }
    }
}

/// What a VM's exits were about: events per kind; at the `full` level also the rates of the
/// window's top N values and the events of each value with a series.
struct Details {
    top_n: usize,
    events: Series,
    rate: Series,
    values: Series,
}

impl Details {
    fn new(context: Context<'_>) -> Self {
        Self {
            top_n: context.details.top_n(),
            events: Series::counter(
                "kvmtop_vm_exit_detail_events_total",
                "Exit detail events per VM and kind (pio, mmio, msr, page_fault, hypercall, \
                 apic_ipi, halt_poll, emulation), from KVM's detail tracepoints.",
                &["vm", "pid", "kind"],
            ),
            rate: Series::gauge(
                "kvmtop_vm_exit_detail_rate",
                "Events per second over the last window of each VM's top detail values \
                 (port, MSR, guest page, …), the --metrics-top-n largest of each kind; the \
                 rest of a kind is value=\"other\".",
                &["vm", "pid", "kind", "sub", "value"],
            ),
            values: Series::counter(
                "kvmtop_vm_exit_detail_value_events_total",
                "Exit detail events per VM, kind and value (port, MSR, guest page, …). A \
                 value gets a series once it is among the --metrics-top-n largest of its \
                 kind in a window, and keeps it until the VM exits; at most twice \
                 --metrics-top-n values per VM and kind, every other event is \
                 value=\"other\".",
                &["vm", "pid", "kind", "sub", "value"],
            ),
        }
    }

    fn add_values(&mut self, name: &str, pid: &str, kind: &str, counters: &KindCounters) {
        for ((sub, value), count) in &counters.values {
            self.values
                .with_label_values(&[name, pid, kind, sub, value])
                .inc_by(*count);
        }
        self.values
            .with_label_values(&[name, pid, kind, "", "other"])
            .inc_by(counters.other);
    }

    fn add(&mut self, name: &str, pid: &str, group: &DetailGroup) {
        let kind = group.kind.as_str();
        self.events
            .with_label_values(&[name, pid, kind])
            .inc_by(group.cumulative);
        let top = &group.top[..group.top.len().min(self.top_n)];
        for detail in top {
            self.rate
                .with_label_values(&[name, pid, kind, &detail.sub, &detail.value])
                .set(detail.rate);
        }
        let other = group.count - top.iter().map(|d| d.count).sum::<u64>().min(group.count);
        if other > 0 {
            #[expect(clippy::cast_precision_loss, reason = "event counts far below 2^52")]
            let other_rate = group.rate * other as f64 / group.count as f64;
            self.rate
                .with_label_values(&[name, pid, kind, "", "other"])
                .set(other_rate);
        }
    }
}

/// `  pio (port, kvm:kvm_pio) 99.5k/s: out 0x80 99.5k/s, in 0x71 300/s, other ×400`
fn write_details(out: &mut dyn Write, group: &DetailGroup) -> std::io::Result<()> {
    let mut parts: Vec<String> = group
        .top
        .iter()
        .map(|d| {
            let label = if d.sub.is_empty() {
                d.value.clone()
            } else {
                format!("{} {}", d.sub, d.value)
            };
            format!("{} {}/s", label.trim(), format::rate(d.rate))
        })
        .collect();
    if group.other > 0 {
        parts.push(format!("other ×{}", group.other));
    }
    writeln!(
        out,
        "  {} ({}, {}) {}/s: {}",
        group.kind.as_str(),
        group.value_name,
        group.source,
        format::rate(group.rate),
        parts.join(", ")
    )
}
