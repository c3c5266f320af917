//! C1–C9.

use super::*;

fn with_vcpu(f: impl Fn(&mut VcpuObservations)) -> Inputs {
    let mut v = small_vm(100);
    f(&mut v.observations.vcpus[0]);
    inputs(host(), vec![v])
}

#[test]
fn c1_run_queue_wait() {
    let rec = fires(&with_vcpu(|v| v.run_delay_share = Some(0.051)), "C1");
    assert_eq!(rec.severity, Severity::Warning);
    assert_eq!(
        rec.target,
        Target::Vcpu {
            pid: 100,
            index: 0,
            tid: Some(101)
        }
    );
    let rec = fires(&with_vcpu(|v| v.run_delay_share = Some(0.21)), "C1");
    assert_eq!(rec.severity, Severity::Critical);
    quiet(&with_vcpu(|v| v.run_delay_share = Some(0.05)), "C1");
}

fn facts_vm(pid: u32, vcpus: u32) -> VmInputs {
    VmInputs {
        facts: VmFacts {
            pid,
            name: format!("vm{pid}").into(),
            vcpus: Some(vcpus),
            ..VmFacts::default()
        },
        observations: VmObservations::default(),
    }
}

#[test]
fn c2_more_vcpus_than_cores() {
    // The defaults host has 2 physical cores.
    let rec = fires(&inputs(host(), vec![facts_vm(1, 3)]), "C2");
    assert!(matches!(rec.target, Target::Vm { pid: 1, .. }));
    quiet(&inputs(host(), vec![facts_vm(1, 2)]), "C2");

    // 21 vCPUs on 2 cores: above 10 per core whatever the load.
    let many = |n: u32| (1..=n).map(|p| facts_vm(p, 1)).collect::<Vec<_>>();
    let rec = fires(&inputs(host(), many(21)), "C2");
    assert_eq!(rec.target, Target::Host);
    quiet(&inputs(host(), many(20)), "C2");

    // 11 vCPUs (5.5 per core) only while the host is busy.
    let mut busy = inputs(host(), many(11));
    busy.host_observations.cpu_busy_share = Some(0.51);
    fires(&busy, "C2");
    busy.host_observations.cpu_busy_share = Some(0.5);
    quiet(&busy, "C2");
    busy.host_observations.cpu_busy_share = None;
    quiet(&busy, "C2");
    assert!(unavailable(&busy, "C2").contains(&"host CPU busy share".to_owned()));
    let mut idle = inputs(host(), many(10));
    idle.host_observations.cpu_busy_share = Some(0.9);
    quiet(&idle, "C2");
}

#[test]
fn c3_migrations() {
    fires(&with_vcpu(|v| v.migrations_per_s = Some(10.1)), "C3");
    quiet(&with_vcpu(|v| v.migrations_per_s = Some(10.0)), "C3");
    fires(
        &with_vcpu(|v| v.cross_node_migrations_per_min = Some(1.1)),
        "C3",
    );
    quiet(
        &with_vcpu(|v| v.cross_node_migrations_per_min = Some(1.0)),
        "C3",
    );
}

#[test]
fn c4_a_vm_that_fits_one_node_spans_two() {
    let mut v = small_vm(100);
    pin(&mut v, &[&[0, 1, 2, 3], &[0, 1, 2, 3]]);
    let rec = fires(&inputs(numa_host(), vec![v.clone()]), "C4");
    assert_eq!(rec.evidence().len(), 3);
    // Pinned to node 0: no span from the CPUs.
    pin(&mut v, &[&[0], &[1]]);
    quiet(&inputs(numa_host(), vec![v.clone()]), "C4");
    // Memory spread just past and just short of the threshold.
    v.observations.rss_by_node = Some(BTreeMap::from([(0, 970), (1, 30)]));
    fires(&inputs(numa_host(), vec![v.clone()]), "C4");
    v.observations.rss_by_node = Some(BTreeMap::from([(0, 980), (1, 20)]));
    quiet(&inputs(numa_host(), vec![v.clone()]), "C4");
    // A VM too large for one node (3 vCPUs, 2 cores per node) is left to other rules.
    let mut big = vm(200, &["-m", "1024", "-smp", "3"], 3);
    pin(&mut big, &[&[0, 1, 2, 3], &[0, 1, 2, 3], &[0, 1, 2, 3]]);
    quiet(&inputs(numa_host(), vec![big]), "C4");
    // One node: nothing to span.
    let mut one = small_vm(100);
    pin(&mut one, &[&[0, 1, 2, 3], &[0, 1, 2, 3]]);
    quiet(&inputs(host(), vec![one]), "C4");
}

#[test]
fn c5_helper_threads_share_vcpu_cpus() {
    let mut v = small_vm(100);
    pin(&mut v, &[&[0], &[1]]);
    v.facts.helper_threads = vec![crate::advice::facts::HelperThread {
        tid: 100,
        role: crate::discovery::ThreadRole::Main,
        allowed_cpus: Some(vec![0, 1, 2, 3]),
    }];
    v.observations.vcpus[1].run_delay_share = Some(0.051);
    let rec = fires(&inputs(host(), vec![v.clone()]), "C5");
    assert!(rec.evidence()[1].name.exact().contains("main loop 100"));
    v.observations.vcpus[1].run_delay_share = Some(0.05);
    quiet(&inputs(host(), vec![v.clone()]), "C5");
    // Housekeeping CPUs of its own: no sharing.
    v.observations.vcpus[1].run_delay_share = Some(0.3);
    v.facts.helper_threads[0].allowed_cpus = Some(vec![2, 3]);
    quiet(&inputs(host(), vec![v]), "C5");
}

fn halting(rate: f64, median: f64, wait: f64) -> impl Fn(&mut VcpuObservations) {
    move |v| {
        v.exit_rates = rates(&[("HLT", rate)]);
        v.median_halt_ns = Some(median);
        v.run_delay_share = Some(wait);
    }
}

#[test]
fn c6_rapid_halt_wake() {
    let rec = fires(&with_vcpu(halting(10_001.0, 50_000.0, 0.01)), "C6");
    assert!(
        rec.change
            .host
            .as_ref()
            .unwrap()
            .exact()
            .contains("now 200000")
    );
    quiet(&with_vcpu(halting(10_000.0, 50_000.0, 0.01)), "C6");
    quiet(&with_vcpu(halting(20_000.0, 200_000.0, 0.01)), "C6");
    quiet(&with_vcpu(halting(20_000.0, 50_000.0, 0.05)), "C6");
    // SVM spelling, and a host with polling off: judged against the x86 default window.
    let mut v = small_vm(100);
    v.observations.vcpus[0].exit_rates = rates(&[("hlt", 15_000.0)]);
    v.observations.vcpus[0].median_halt_ns = Some(150_000.0);
    v.observations.vcpus[0].run_delay_share = Some(0.0);
    let rec = fires(&inputs(numa_host(), vec![v]), "C6");
    assert!(
        rec.change
            .host
            .as_ref()
            .map(crate::model::Untrusted::exact)
            .unwrap()
            .contains("polling is off")
    );
}

#[test]
fn c7_failed_polling_on_a_busy_host() {
    let polling = |ok: f64, fail: f64, busy: f64| {
        let mut i = with_vcpu(move |v| {
            v.halt_poll_success_ns = Some(ok);
            v.halt_poll_fail_ns = Some(fail);
        });
        i.host_observations.cpu_busy_share = Some(busy);
        i
    };
    fires(&polling(40.0, 60.0, 0.81), "C7");
    quiet(&polling(50.0, 50.0, 0.81), "C7");
    quiet(&polling(40.0, 60.0, 0.8), "C7");
    quiet(&polling(0.0, 0.0, 1.0), "C7");
}

#[test]
fn c8_pause_loop_exits() {
    let rec = fires(
        &with_vcpu(|v| {
            v.exit_rates = rates(&[("PAUSE_INSTRUCTION", 1001.0)]);
            v.run_delay_share = Some(0.1);
        }),
        "C8",
    );
    assert_eq!(rec.evidence().len(), 2);
    quiet(
        &with_vcpu(|v| v.exit_rates = rates(&[("PAUSE_INSTRUCTION", 1000.0)])),
        "C8",
    );
    // Pinned 1:1 on Intel: the advice names ple_gap and its value.
    let mut v = small_vm(100);
    pin(&mut v, &[&[0], &[1]]);
    v.observations.vcpus[1].exit_rates = rates(&[("pause", 5000.0)]);
    let rec = fires(&inputs(host(), vec![v]), "C8");
    assert!(
        rec.change
            .host
            .as_ref()
            .map(crate::model::Untrusted::exact)
            .unwrap()
            .contains("ple_gap=0 (now 128)")
    );
}

#[test]
fn c9_governor_under_latency_rules() {
    let latency = |rate: f64, host: HostFacts| {
        let mut v = small_vm(100);
        pin(&mut v, &[&[0], &[1]]);
        halting(rate, 50_000.0, 0.0)(&mut v.observations.vcpus[0]);
        inputs(host, vec![v])
    };
    // powersave on the vCPU CPUs and C6 firing.
    let rec = fires(&latency(10_001.0, numa_host()), "C9");
    assert!(rec.evidence()[0].name.exact().contains("powersave"));
    // C6 just short of firing: C9 has nothing to qualify.
    quiet(&latency(10_000.0, numa_host()), "C9");
    // performance governors.
    quiet(&latency(10_001.0, host()), "C9");
}
