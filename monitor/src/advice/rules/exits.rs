//! E1–E3 and E9: emulated I/O, MMIO and memory faults, and slow exit handling.

use std::collections::BTreeMap;

use super::catalog::{E1, E2, E3, E9};
use super::{
    Comparison, Ctx, Evidence, Recommendation, Severity, per_vcpu, vcpu_target, vm_target,
};
use crate::advice::inputs::{VcpuObservations, rate_in};

const IO: &[&str] = &["IO_INSTRUCTION", "io"];
const EPT_VIOLATION: &[&str] = &["EPT_VIOLATION", "npf"];
const EPT_MISCONFIG: &[&str] = &["EPT_MISCONFIG"];
/// Ports and MSRs shown as evidence, busiest first.
const TOP: usize = 3;

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    e1(ctx);
    e2(ctx);
    e3(ctx);
    e9(ctx);
}

/// What is usually behind a port.
fn port_meaning(port: u16) -> &'static str {
    match port {
        0x1f0..=0x1f7 | 0x3f6 => "primary IDE",
        0x170..=0x177 | 0x376 => "secondary IDE",
        0x40..=0x43 => "PIT",
        0x70 | 0x71 => "RTC/CMOS",
        0xb008 => "ACPI PM timer (i440fx): guest clocksource acpi_pm",
        0x608 => "ACPI PM timer (q35): guest clocksource acpi_pm",
        0x60 | 0x64 => "i8042 keyboard controller",
        0x3f8 | 0x2f8 => "serial port",
        0x80 => "POST/delay port",
        0xcf8..=0xcff => "PCI configuration space",
        0x510 | 0x511 => "fw_cfg",
        0xc000..=0xffff => "PCI I/O BAR (legacy virtio, rtl8139, e1000)",
        _ => "other",
    }
}

/// The busiest `TOP` entries, as evidence.
pub(super) fn top<K: Copy + Ord>(
    ctx: &Ctx<'_>,
    rates: Option<&BTreeMap<K, f64>>,
    label: impl Fn(K) -> String,
) -> Vec<Evidence> {
    let mut rows: Vec<(K, f64)> = rates
        .into_iter()
        .flatten()
        .map(|(k, v)| (*k, *v))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.into_iter()
        .take(TOP)
        .map(|(k, v)| ctx.measured(label(k), v, Comparison::Above, 0.0))
        .collect()
}

fn e1(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let (name, rate) = match (
            vm.observations.exit_rate(IO),
            vm.observations.pio_exits_per_s,
        ) {
            (Some(rate), _) => ("port I/O exits/s", rate),
            (None, Some(rate)) => ("port I/O exits/s (kvm_pio)", rate),
            (None, None) => {
                ctx.missing(E1.id, "VM exit rates or kvm_pio");
                continue;
            }
        };
        if rate <= t.e1_io_exits_per_s {
            continue;
        }
        let ports = top(ctx, vm.observations.pio_rates.as_ref(), |p| {
            format!("port I/O exits/s to {p:#x} ({})", port_meaning(p))
        });
        let first = ctx.measured(name, rate, Comparison::Above, t.e1_io_exits_per_s);
        ctx.push(
            Recommendation::new(&E1, Severity::Warning, vm_target(&vm.facts), first)
                .with_all(ports),
        );
    }
}

fn e2(ctx: &mut Ctx<'_>) {
    let t = ctx.t;
    let known = |v: &VcpuObservations| {
        let user = v.userspace_exit_rates.is_some();
        let slow = v.exit_rates.is_some() && v.fast_mmio_per_s.is_some();
        (user || slow).then_some(0.0)
    };
    per_vcpu(
        ctx,
        E2.id,
        "per-vCPU userspace MMIO exits or fast MMIO",
        known,
        |ctx, vm, index, _| {
            let Some(v) = vm.observations.vcpu(index) else {
                return;
            };
            let mut evidence = Vec::new();
            if let Some(mmio) = v
                .userspace_exit_rates
                .as_ref()
                .map(|m| rate_in(m, &["MMIO"]))
                && mmio > t.e2_mmio_exits_per_s
            {
                evidence.push(ctx.measured(
                    "MMIO exits to userspace/s",
                    mmio,
                    Comparison::Above,
                    t.e2_mmio_exits_per_s,
                ));
            }
            if let (Some(rates), Some(fast)) = (&v.exit_rates, v.fast_mmio_per_s) {
                let slow = (rate_in(rates, EPT_MISCONFIG) - fast).max(0.0);
                if slow > t.e2_mmio_exits_per_s {
                    evidence.push(ctx.measured(
                        "EPT_MISCONFIG exits/s not handled as fast MMIO",
                        slow,
                        Comparison::Above,
                        t.e2_mmio_exits_per_s,
                    ));
                }
            }
            let mut evidence = evidence.into_iter();
            let Some(first) = evidence.next() else {
                return;
            };
            let mut rec =
                Recommendation::new(&E2, Severity::Warning, vcpu_target(&vm.facts, index), first)
                    .with_all(evidence);
            let emulated: Vec<&str> = vm
                .facts
                .nics
                .iter()
                .filter(|n| n.model.starts_with("e1000") || n.model.starts_with("rtl8139"))
                .map(|n| n.model.as_str())
                .collect();
            if !emulated.is_empty() {
                rec = rec.diagnosis(format!(
                    "MMIO emulated in QEMU; the VM has emulated NICs ({}).",
                    emulated.join(", ")
                ));
            }
            ctx.push(rec);
        },
    );
}

fn e3(ctx: &mut Ctx<'_>) {
    let t = ctx.t;
    let rate = |v: &VcpuObservations| Some(rate_in(v.exit_rates.as_ref()?, EPT_VIOLATION));
    per_vcpu(
        ctx,
        E3.id,
        "per-vCPU exit rates",
        rate,
        |ctx, vm, index, rate| {
            if rate <= t.e3_ept_violations_per_s {
                return;
            }
            let Some(uptime) = vm.observations.uptime_seconds else {
                ctx.missing(E3.id, "VM uptime");
                return;
            };
            if uptime < t.e3_warmup_seconds {
                return;
            }
            let host = &ctx.inputs.host;
            let mut causes = Vec::new();
            if host.ksm.run == Some(1) && !vm.facts.memory.hugetlb {
                causes.push("KSM is running (copy-on-write faults)");
            }
            if host.numa_balancing == Some(1) {
                causes.push("NUMA balancing unmaps pages");
            }
            if host.thp.enabled.as_deref() == Some("never") && !vm.facts.memory.hugetlb {
                causes.push("THP is off (4 KiB faults)");
            }
            let rec = Recommendation::new(
                &E3,
                Severity::Warning,
                vcpu_target(&vm.facts, index),
                ctx.measured(
                    "EPT violation exits/s",
                    rate,
                    Comparison::Above,
                    t.e3_ept_violations_per_s,
                ),
            )
            .with(Evidence::fact(
                "VM uptime seconds",
                uptime,
                Comparison::AtLeast,
                t.e3_warmup_seconds,
            ));
            let rec = if causes.is_empty() {
                rec
            } else {
                let text = format!("{} Likely here: {}.", rec.diagnosis, causes.join("; "));
                rec.diagnosis(text)
            };
            ctx.push(rec);
        },
    );
}

fn e9(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let obs = &vm.observations;
        let shares = obs.vcpus.iter().any(|v| v.exit_time_share.is_some());
        if obs.exit_p99_ns.is_none() && !shares {
            ctx.missing(E9.id, "exit latency percentiles or time in exits");
            continue;
        }
        let mut slow: Vec<Evidence> = obs
            .exit_p99_ns
            .iter()
            .flatten()
            .filter(|(_, p99)| **p99 > t.e9_exit_p99_ns)
            .map(|(reason, p99)| {
                ctx.measured(
                    format!("p99 ns of {reason} exits"),
                    *p99,
                    Comparison::Above,
                    t.e9_exit_p99_ns,
                )
            })
            .collect();
        slow.sort_by(|a, b| match (&b.value, &a.value) {
            (super::Value::Number(x), super::Value::Number(y)) => x.total_cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        let mut slow = slow.into_iter();
        if let Some(first) = slow.next() {
            ctx.push(
                Recommendation::new(&E9, Severity::Warning, vm_target(&vm.facts), first)
                    .with_all(slow),
            );
        }
        for v in &obs.vcpus {
            if let Some(share) = v.exit_time_share.filter(|s| *s > t.e9_exit_time_share) {
                let first = ctx.measured(
                    "share of vCPU time in exits",
                    share,
                    Comparison::Above,
                    t.e9_exit_time_share,
                );
                ctx.push(Recommendation::new(
                    &E9,
                    Severity::Warning,
                    vcpu_target(&vm.facts, v.index),
                    first,
                ));
            }
        }
    }
}
