//! E1–E9.

use super::*;

fn with_vm(f: impl Fn(&mut VmObservations)) -> Inputs {
    let mut v = small_vm(100);
    f(&mut v.observations);
    inputs(host(), vec![v])
}

fn with_vcpu(f: impl Fn(&mut VcpuObservations)) -> Inputs {
    with_vm(|o| f(&mut o.vcpus[0]))
}

#[test]
fn e1_port_io() {
    let rec = fires(
        &with_vm(|o| {
            o.exit_rates = rates(&[("IO_INSTRUCTION", 5001.0)]);
            o.pio_rates = Some(BTreeMap::from([(0xb008, 4000.0), (0x70, 1001.0)]));
        }),
        "E1",
    );
    assert!(
        rec.evidence()[1]
            .name
            .exact()
            .contains("0xb008 (ACPI PM timer")
    );
    assert!(rec.evidence()[2].name.exact().contains("RTC"));
    quiet(&with_vm(|o| o.exit_rates = rates(&[("io", 5000.0)])), "E1");
    // Summed from the vCPUs when there is no VM-wide map.
    let mut v = small_vm(100);
    for vcpu in &mut v.observations.vcpus {
        vcpu.exit_rates = rates(&[("io", 2501.0)]);
    }
    fires(&inputs(host(), vec![v.clone()]), "E1");
    v.observations.vcpus[1].exit_rates = rates(&[("io", 2499.0)]);
    quiet(&inputs(host(), vec![v]), "E1");
    // Where kvm_exit is silent, kvm_pio's count is the measure.
    let rec = fires(&with_vm(|o| o.pio_exits_per_s = Some(5001.0)), "E1");
    assert_eq!(rec.evidence()[0].name, "port I/O exits/s (kvm_pio)");
    quiet(&with_vm(|o| o.pio_exits_per_s = Some(5000.0)), "E1");
}

#[test]
fn e2_userspace_mmio() {
    fires(
        &with_vcpu(|v| v.userspace_exit_rates = rates(&[("MMIO", 1001.0)])),
        "E2",
    );
    quiet(
        &with_vcpu(|v| v.userspace_exit_rates = rates(&[("MMIO", 1000.0)])),
        "E2",
    );
    let misconfig = |fast: f64| {
        with_vcpu(move |v| {
            v.exit_rates = rates(&[("EPT_MISCONFIG", 3000.0)]);
            v.fast_mmio_per_s = Some(fast);
        })
    };
    fires(&misconfig(1999.0), "E2");
    quiet(&misconfig(2000.0), "E2");
    // An emulated NIC is named in the diagnosis.
    let mut v = vm(
        100,
        &[
            "-m",
            "512",
            "-netdev",
            "tap,id=n0",
            "-device",
            "e1000,netdev=n0,id=net0",
        ],
        1,
    );
    v.observations.vcpus[0].userspace_exit_rates = rates(&[("MMIO", 9000.0)]);
    let rec = fires(&inputs(host(), vec![v]), "E2");
    assert!(rec.diagnosis.exact().contains("e1000"));
}

#[test]
fn e3_faults_after_warm_up() {
    let faulting = |rate: f64, uptime: f64| {
        with_vm(move |o| {
            o.uptime_seconds = Some(uptime);
            o.vcpus[0].exit_rates = rates(&[("EPT_VIOLATION", rate)]);
        })
    };
    fires(&faulting(1001.0, 600.0), "E3");
    quiet(&faulting(1000.0, 3600.0), "E3");
    quiet(&faulting(50_000.0, 599.0), "E3");
    let mut i = faulting(1001.0, 600.0);
    i.host = numa_host();
    let rec = fires(&i, "E3");
    assert!(
        rec.diagnosis.exact().contains("KSM is running"),
        "{}",
        rec.diagnosis
    );
}

#[test]
fn e4_msr_writes() {
    let rec = fires(
        &with_vm(|o| {
            o.vcpus[0].exit_rates = rates(&[("MSR_WRITE", 10_001.0)]);
            o.msr_write_rates = Some(BTreeMap::from([(0x6e0, 10_001.0)]));
        }),
        "E4",
    );
    assert!(rec.evidence()[1].name.exact().contains("TSC_DEADLINE"));
    quiet(
        &with_vcpu(|v| v.exit_rates = rates(&[("MSR_WRITE", 10_000.0)])),
        "E4",
    );
    // SVM: writes by index averaged over the 2 vCPUs; the host has AVIC off.
    let svm = |total: f64| {
        let mut v = small_vm(100);
        v.observations.msr_write_rates = Some(BTreeMap::from([(0x830, total)]));
        inputs(numa_host(), vec![v])
    };
    let rec = fires(&svm(20_002.0), "E4");
    assert!(matches!(rec.target, Target::Vm { .. }));
    assert!(
        rec.change
            .host
            .as_ref()
            .map(crate::model::Untrusted::exact)
            .unwrap()
            .contains("kvm_amd.avic=0")
    );
    quiet(&svm(20_000.0), "E4");
}

#[test]
fn e5_apic_access() {
    fires(
        &with_vcpu(|v| v.exit_rates = rates(&[("APIC_ACCESS", 1001.0)])),
        "E5",
    );
    quiet(
        &with_vcpu(|v| v.exit_rates = rates(&[("APIC_ACCESS", 1000.0)])),
        "E5",
    );
    fires(
        &with_vcpu(|v| v.exit_rates = rates(&[("avic_unaccelerated_access", 1001.0)])),
        "E5",
    );
}

#[test]
fn e6_external_interrupts() {
    fires(
        &with_vcpu(|v| v.exit_rates = rates(&[("EXTERNAL_INTERRUPT", 5001.0)])),
        "E6",
    );
    quiet(
        &with_vcpu(|v| v.exit_rates = rates(&[("interrupt", 5000.0)])),
        "E6",
    );
}

#[test]
fn e7_tlb_shootdowns() {
    let rec = fires(&with_vm(|o| o.tlb_shootdowns_per_s = Some(1001.0)), "E7");
    assert!(
        rec.evidence()
            .iter()
            .any(|e| e.name == "kernel.numa_balancing")
    );
    quiet(&with_vm(|o| o.tlb_shootdowns_per_s = Some(1000.0)), "E7");
}

#[test]
fn e8_guest_ipis_under_overcommit() {
    let ipis = |rate: f64, wait: f64| {
        with_vm(move |o| {
            o.guest_ipis_per_s = Some(rate);
            o.vcpus[0].run_delay_share = Some(wait);
        })
    };
    fires(&ipis(20_001.0, 0.06), "E8");
    quiet(&ipis(20_000.0, 0.06), "E8");
    // 2 vCPUs on 2 cores and no wait: not overcommitted.
    quiet(&ipis(90_000.0, 0.01), "E8");
    // Overcommitted by count: 3 vCPUs on 2 cores.
    let mut v = vm(100, &["-m", "512", "-smp", "3"], 3);
    v.observations.guest_ipis_per_s = Some(20_001.0);
    fires(&inputs(host(), vec![v]), "E8");
}

#[test]
fn e9_slow_exits() {
    let rec = fires(
        &with_vm(|o| {
            o.exit_p99_ns = rates(&[
                ("EPT_VIOLATION", 50_001.0),
                ("HLT", 80_000.0),
                ("CPUID", 10.0),
            ]);
        }),
        "E9",
    );
    assert_eq!(rec.evidence().len(), 2);
    assert!(rec.evidence()[0].name.exact().contains("HLT"));
    quiet(
        &with_vm(|o| o.exit_p99_ns = rates(&[("EPT_VIOLATION", 50_000.0)])),
        "E9",
    );
    let rec = fires(&with_vcpu(|v| v.exit_time_share = Some(0.11)), "E9");
    assert!(matches!(rec.target, Target::Vcpu { index: 0, .. }));
    quiet(&with_vcpu(|v| v.exit_time_share = Some(0.10)), "E9");
}
