//! H1–H3.

use super::*;
use crate::advice::facts::HwVirt;

#[test]
fn h1_software_emulation() {
    quiet(&inputs(host(), vec![small_vm(100)]), "H1");
    let mut h = host();
    h.virtualization.cpu_flag = Some(HwVirt::Absent);
    h.virtualization.kvm_device = Some(false);
    let rec = fires(&inputs(h, vec![]), "H1");
    assert_eq!((&rec.target, rec.evidence().len()), (&Target::Host, 2));
    assert_eq!(rec.severity, Severity::Critical);
    let tcg = vm(100, &["-accel", "tcg", "-m", "512"], 1);
    let rec = fires(&inputs(host(), vec![tcg]), "H1");
    assert!(matches!(rec.target, Target::Vm { pid: 100, .. }));
    quiet(
        &inputs(
            host(),
            vec![vm(100, &["-accel", "kvm", "-accel", "tcg"], 1)],
        ),
        "H1",
    );
    // Nothing known: quiet and listed.
    let unknown = inputs(HostFacts::default(), vec![]);
    quiet(&unknown, "H1");
    assert!(!unavailable(&unknown, "H1").is_empty());
}

#[test]
fn h2_shadow_paging() {
    quiet(&inputs(host(), vec![]), "H2");
    let mut h = host();
    if let Some(intel) = h.kvm.intel.as_mut() {
        intel.ept = Some(false);
    }
    fires(&inputs(h, vec![]), "H2");
    let mut h = numa_host();
    quiet(&inputs(h.clone(), vec![]), "H2");
    if let Some(amd) = h.kvm.amd.as_mut() {
        amd.npt = Some(false);
    }
    fires(&inputs(h, vec![]), "H2");
}

#[test]
fn h3_old_cpu_model() {
    let cpu = |args: &[&str]| inputs(host(), vec![vm(100, args, 1)]);
    let rec = fires(&cpu(&["-cpu", "qemu64,+ssse3"]), "H3");
    assert_eq!(rec.evidence()[0].value, Value::Text("qemu64".into()));
    fires(&cpu(&["-m", "512"]), "H3");
    quiet(&cpu(&["-cpu", "host"]), "H3");
    quiet(&cpu(&["-cpu", "Skylake-Server-v4"]), "H3");
}
