//! E4–E8: MSR writes, APIC accesses, interrupts, TLB shootdowns and guest IPIs.

use super::catalog::{E4, E5, E6, E7, E8};
use super::exits::top;
use super::{
    Comparison, Ctx, Evidence, Recommendation, Severity, num, per_vcpu, vcpu_target, vm_target,
};
use crate::advice::inputs::{VcpuObservations, VmInputs, rate_in};

const MSR_WRITE: &[&str] = &["MSR_WRITE"];
const APIC_ACCESS: &[&str] = &["APIC_ACCESS", "avic_unaccelerated_access"];
const EXTERNAL_INTERRUPT: &[&str] = &["EXTERNAL_INTERRUPT", "interrupt"];

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    let t = ctx.t;
    e4(ctx);
    vcpu_rate_rule(
        ctx,
        &E5,
        APIC_ACCESS,
        "APIC access exits/s",
        t.e5_apic_access_per_s,
    );
    vcpu_rate_rule(
        ctx,
        &E6,
        EXTERNAL_INTERRUPT,
        "external-interrupt exits/s",
        t.e6_external_interrupts_per_s,
    );
    e7(ctx);
    e8(ctx);
}

fn msr_name(index: u32) -> &'static str {
    match index {
        0x6e0 => "TSC_DEADLINE",
        0x830 => "x2APIC ICR",
        0x80b => "x2APIC EOI",
        0x838 => "x2APIC timer initial count",
        0x832 => "x2APIC LVT timer",
        0x186..=0x189 | 0xc1..=0xc8 | 0x38d..=0x390 => "PMU",
        _ => "other",
    }
}

/// The APIC virtualisation state of the host, to say what to switch on.
fn apic_advice(ctx: &Ctx<'_>) -> Option<String> {
    let kvm = &ctx.inputs.host.kvm;
    let mut off = Vec::new();
    if let Some(i) = &kvm.intel {
        if i.enable_apicv == Some(false) {
            off.push("kvm_intel.enable_apicv=N");
        }
        if i.enable_ipiv == Some(false) {
            off.push("kvm_intel.enable_ipiv=N");
        }
    }
    if kvm.amd.as_ref().is_some_and(|a| a.avic == Some(false)) {
        off.push("kvm_amd.avic=0");
    }
    (!off.is_empty()).then(|| format!("switch on APIC virtualisation (now {})", off.join(", ")))
}

fn e4(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let before = ctx.made().len();
        let obs = &vm.observations;
        let indices = top(ctx, obs.msr_write_rates.as_ref(), |i| {
            format!("MSR writes/s to {i:#x} ({})", msr_name(i))
        });
        let mut seen = false;
        for v in &obs.vcpus {
            let Some(rates) = &v.exit_rates else {
                continue;
            };
            seen = true;
            let rate = rate_in(rates, MSR_WRITE);
            if rate > t.e4_msr_writes_per_s {
                let first = ctx.measured(
                    "MSR write exits/s",
                    rate,
                    Comparison::Above,
                    t.e4_msr_writes_per_s,
                );
                let rec = Recommendation::new(
                    &E4,
                    Severity::Warning,
                    vcpu_target(&vm.facts, v.index),
                    first,
                )
                .with_all(indices.clone());
                push_with_apic(ctx, rec);
            }
        }
        // SVM reports MSR reads and writes under one reason: fall back to the writes by
        // index. An average above the threshold means at least one vCPU is above it.
        if ctx.made().len() == before
            && let (Some(rates), Some(vcpus)) =
                (&obs.msr_write_rates, vm.facts.vcpus.filter(|n| *n > 0))
        {
            seen = true;
            let average = rates.values().sum::<f64>() / f64::from(vcpus);
            if average > t.e4_msr_writes_per_s {
                let first = ctx.measured(
                    "MSR writes/s per vCPU (VM average)",
                    average,
                    Comparison::Above,
                    t.e4_msr_writes_per_s,
                );
                let rec = Recommendation::new(&E4, Severity::Warning, vm_target(&vm.facts), first)
                    .with_all(indices);
                push_with_apic(ctx, rec);
            }
        }
        if !seen {
            ctx.missing(E4.id, "per-vCPU exit rates or MSR writes by index");
        }
    }
}

fn push_with_apic(ctx: &mut Ctx<'_>, rec: Recommendation) {
    let rec = match apic_advice(ctx) {
        Some(host) => {
            let change = rec.change.clone().with_host(host);
            rec.change(change)
        }
        None => rec,
    };
    ctx.push(rec);
}

/// A rule that fires when one reason's per-vCPU rate exceeds a threshold (E5, E6).
fn vcpu_rate_rule(
    ctx: &mut Ctx<'_>,
    rule: &'static super::RuleInfo,
    names: &'static [&'static str],
    label: &'static str,
    threshold: f64,
) {
    let rate = |v: &VcpuObservations| Some(rate_in(v.exit_rates.as_ref()?, names));
    per_vcpu(
        ctx,
        rule.id,
        "per-vCPU exit rates",
        rate,
        |ctx, vm, index, rate| {
            if rate > threshold {
                let first = ctx.measured(label, rate, Comparison::Above, threshold);
                let rec = Recommendation::new(
                    rule,
                    Severity::Warning,
                    vcpu_target(&vm.facts, index),
                    first,
                );
                if rule.id == E5.id {
                    push_with_apic(ctx, rec);
                } else {
                    ctx.push(rec);
                }
            }
        },
    );
}

fn e7(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let Some(rate) = vm.observations.tlb_shootdowns_per_s else {
            ctx.missing(E7.id, "TLB shootdowns to vCPU CPUs");
            continue;
        };
        if rate <= t.e7_tlb_shootdowns_per_s {
            continue;
        }
        let mut rec = Recommendation::new(
            &E7,
            Severity::Warning,
            vm_target(&vm.facts),
            ctx.measured(
                "TLB shootdown IPIs/s to vCPU CPUs",
                rate,
                Comparison::Above,
                t.e7_tlb_shootdowns_per_s,
            ),
        );
        if inputs.host.numa_balancing == Some(1) {
            rec = rec.with(Evidence::fact(
                "kernel.numa_balancing",
                1.0,
                Comparison::Equals,
                1.0,
            ));
        }
        if inputs.host.ksm.run == Some(1) {
            rec = rec.with(Evidence::fact("KSM run", 1.0, Comparison::Equals, 1.0));
        }
        ctx.push(rec);
    }
}

/// Whether the host is overcommitted for a VM.
enum Overcommit {
    Yes(Evidence),
    No,
    Unknown,
}

fn overcommit(ctx: &Ctx<'_>, vm: &VmInputs) -> Overcommit {
    let t = ctx.t;
    let wait = vm.observations.max_run_delay_share();
    if let Some(w) = wait.filter(|w| *w > t.c1_wait_warn) {
        return Overcommit::Yes(ctx.measured(
            "highest vCPU run-queue wait share",
            w,
            Comparison::Above,
            t.c1_wait_warn,
        ));
    }
    let inputs = ctx.inputs;
    let cores = inputs.host.physical_cores();
    let total: Option<u64> = inputs
        .vms
        .iter()
        .try_fold(0u64, |acc, v| Some(acc + u64::from(v.facts.vcpus?)));
    match (cores, total) {
        (Some(c), Some(n)) if n > u64::from(c) => Overcommit::Yes(Evidence::fact(
            "vCPUs of all VMs",
            num(n),
            Comparison::Above,
            f64::from(c),
        )),
        (Some(_), Some(_)) => Overcommit::No,
        _ if wait.is_some() => Overcommit::No,
        _ => Overcommit::Unknown,
    }
}

fn e8(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let Some(rate) = vm.observations.guest_ipis_per_s else {
            ctx.missing(E8.id, "guest IPIs");
            continue;
        };
        if rate <= t.e8_guest_ipis_per_s {
            continue;
        }
        match overcommit(ctx, vm) {
            Overcommit::Unknown => {
                ctx.missing(E8.id, "run-queue wait or host core count (overcommit)");
            }
            Overcommit::No => {}
            Overcommit::Yes(why) => {
                let first = ctx.measured(
                    "guest IPIs/s",
                    rate,
                    Comparison::Above,
                    t.e8_guest_ipis_per_s,
                );
                ctx.push(
                    Recommendation::new(&E8, Severity::Warning, vm_target(&vm.facts), first)
                        .with(why),
                );
            }
        }
    }
}
