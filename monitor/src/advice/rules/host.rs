//! H1–H3: host facts.

use super::catalog::{H1, H2, H3};
use super::{Comparison, Ctx, Evidence, Recommendation, Severity, Target, vm_target};
use crate::advice::facts::HwVirt;

/// CPU models without the features KVM guests benefit from (x2apic, tsc-deadline, pcid).
const OLD_MODELS: &[&str] = &[
    "qemu64", "qemu32", "kvm64", "kvm32", "486", "pentium", "pentium2", "pentium3", "coreduo",
    "core2duo", "athlon", "phenom", "n270", "Conroe", "Penryn",
];

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    if ctx.inputs.vms.iter().any(|v| !v.facts.qemu) {
        ctx.missing(H3.id, "QEMU command line (a VMM other than QEMU)");
    }
    h1(ctx);
    h2(ctx);
    h3(ctx);
}

fn h1(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let v = &inputs.host.virtualization;
    let mut evidence = Vec::new();
    if v.cpu_flag == Some(HwVirt::Absent) {
        evidence.push(Evidence::fact(
            "vmx or svm in /proc/cpuinfo flags",
            "absent",
            Comparison::Equals,
            "absent",
        ));
    }
    if v.kvm_loaded == Some(false) {
        evidence.push(Evidence::fact(
            "kvm module loaded",
            "no",
            Comparison::Equals,
            "no",
        ));
    }
    if v.kvm_device == Some(false) {
        evidence.push(Evidence::fact(
            "/dev/kvm registered",
            "no",
            Comparison::Equals,
            "no",
        ));
    }
    if v.cpu_flag.is_none() && v.kvm_loaded.is_none() && v.kvm_device.is_none() {
        ctx.missing(H1.id, "CPU flags, kvm module and /dev/kvm");
    }
    let mut evidence = evidence.into_iter();
    if let Some(first) = evidence.next() {
        ctx.push(
            Recommendation::new(&H1, Severity::Critical, Target::Host, first).with_all(evidence),
        );
    }
    for vm in inputs.vms.iter().filter(|v| v.facts.qemu) {
        if vm.facts.accelerators.first().is_some_and(|a| a == "tcg") {
            let evidence =
                Evidence::fact("preferred accelerator", "tcg", Comparison::Equals, "tcg");
            ctx.push(Recommendation::new(
                &H1,
                Severity::Critical,
                vm_target(&vm.facts),
                evidence,
            ));
        }
    }
}

fn h2(ctx: &mut Ctx<'_>) {
    let kvm = &ctx.inputs.host.kvm;
    if kvm.intel.is_none() && kvm.amd.is_none() {
        if ctx.inputs.host.virtualization.kvm_loaded == Some(true) {
            ctx.missing(H2.id, "kvm_intel or kvm_amd parameters");
        }
        return;
    }
    let mut evidence = Vec::new();
    if kvm.intel.as_ref().is_some_and(|i| i.ept == Some(false)) {
        evidence.push(Evidence::fact(
            "kvm_intel.ept",
            "N",
            Comparison::Equals,
            "N",
        ));
    }
    if kvm.amd.as_ref().is_some_and(|a| a.npt == Some(false)) {
        evidence.push(Evidence::fact("kvm_amd.npt", "0", Comparison::Equals, "0"));
    }
    let mut evidence = evidence.into_iter();
    if let Some(first) = evidence.next() {
        ctx.push(
            Recommendation::new(&H2, Severity::Critical, Target::Host, first).with_all(evidence),
        );
    }
}

fn h3(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    for vm in inputs.vms.iter().filter(|v| v.facts.qemu) {
        let model = match vm.facts.cpu_model.as_deref() {
            Some(m) => m.to_owned(),
            None if vm
                .facts
                .binary
                .as_deref()
                .is_some_and(|b| b.ends_with("x86_64")) =>
            {
                "qemu64 (QEMU's default: no -cpu)".to_owned()
            }
            None => {
                ctx.missing(
                    H3.id,
                    "CPU model (no -cpu, and the binary does not name x86-64)",
                );
                continue;
            }
        };
        let base = model.split_whitespace().next().unwrap_or_default();
        if OLD_MODELS.contains(&base) {
            let evidence =
                Evidence::fact("CPU model", model, Comparison::OneOf, OLD_MODELS.join(", "));
            ctx.push(Recommendation::new(
                &H3,
                Severity::Warning,
                vm_target(&vm.facts),
                evidence,
            ));
        }
    }
}
