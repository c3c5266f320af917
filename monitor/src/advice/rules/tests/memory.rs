//! M1–M7.

use super::*;

#[test]
fn m1_remote_numa_faults() {
    // 1000 faults in the 60 s window is exactly the 1000/min minimum.
    let faults = |total: f64, remote: f64| {
        let mut v = small_vm(100);
        v.observations.numa_hint_faults = Some(total);
        v.observations.numa_hint_faults_remote = Some(remote);
        inputs(host(), vec![v])
    };
    fires(&faults(1000.0, 201.0), "M1");
    quiet(&faults(1000.0, 200.0), "M1");
    quiet(&faults(999.0, 900.0), "M1");
    // Host-wide from /proc/vmstat deltas when no VM has its own counts.
    let before = host().vmstat;
    let mut after = before.clone();
    after.numa_hint_faults = Some(3000);
    // 2000 faults since the fixture's reading, 1599 of them local: 20.05 % remote.
    after.numa_hint_faults_local = Some(2499);
    let mut i = inputs(host(), vec![small_vm(100)]);
    i.host_observations = HostObservations::from_vmstat(&before, &after, 60.0);
    let rec = fires(&i, "M1");
    assert_eq!(rec.target, Target::Host);
    after.numa_hint_faults_local = Some(2500);
    i.host_observations = HostObservations::from_vmstat(&before, &after, 60.0);
    quiet(&i, "M1");

    // The fault hook refused: per VM from the procfs fallback's recent share, gated by the
    // host's fault rate (2000 faults in 60 s here).
    let recent = |share: f64| {
        let mut v = small_vm(100);
        v.observations.numa_recent_remote_fault_share = Some(share);
        let mut i = inputs(host(), vec![v]);
        i.host_observations = HostObservations::from_vmstat(&before, &after, 60.0);
        i
    };
    let rec = fires(&recent(0.5), "M1");
    assert!(
        matches!(rec.target, Target::Vm { pid: 100, .. }),
        "{:?}",
        rec.target
    );
    assert!(
        rec.evidence()[0].name.exact().contains("procfs"),
        "{:?}",
        rec.evidence()
    );
    quiet(&recent(0.2), "M1");
    // Too few faults on the host to judge.
    let mut few = recent(0.9);
    let mut quiet_after = before.clone();
    quiet_after.numa_hint_faults = before.numa_hint_faults.map(|f| f + 10);
    quiet_after.numa_hint_faults_local = before.numa_hint_faults_local;
    few.host_observations = HostObservations::from_vmstat(&before, &quiet_after, 60.0);
    quiet(&few, "M1");
}

#[test]
fn m2_numa_balancing_with_every_vm_bound() {
    let bound = |pinned: &[u32]| {
        let mut v = vm(
            100,
            &[
                "-m",
                "1024",
                "-object",
                "memory-backend-ram,id=m0,size=1G,host-nodes=0,policy=bind",
            ],
            2,
        );
        pin(&mut v, &[pinned, pinned]);
        inputs(host(), vec![v])
    };
    let rec = fires(&bound(&[0, 1]), "M2");
    assert_eq!(rec.target, Target::Host);
    // One VM may run anywhere: balancing still has work.
    quiet(&bound(&[0, 1, 2, 3]), "M2");
    let mut off = bound(&[0, 1]);
    off.host.numa_balancing = Some(0);
    quiet(&off, "M2");
}

#[test]
fn m3_memory_off_its_home_node() {
    let spread = |home: u64, away: u64| {
        let mut v = small_vm(100);
        v.observations.rss_by_node = Some(BTreeMap::from([(0, home), (1, away)]));
        inputs(numa_host(), vec![v])
    };
    fires(&spread(89, 11), "M3");
    quiet(&spread(90, 10), "M3");
}

#[test]
fn m4_huge_pages() {
    // THP never and defrag always on the fixture host: one host finding with both.
    let rec = fires(&inputs(numa_host(), vec![small_vm(100)]), "M4");
    assert_eq!(rec.target, Target::Host);
    assert_eq!(rec.evidence().len(), 2);
    // The defaults host: judged per VM from AnonHugePages (guest RAM 1 GiB).
    let anon = |bytes: u64| {
        let mut v = small_vm(100);
        v.observations.anon_huge_pages_bytes = Some(bytes);
        inputs(host(), vec![v])
    };
    let rec = fires(&anon((1 << 29) - (2 << 20)), "M4");
    assert!(matches!(rec.target, Target::Vm { .. }));
    quiet(&anon(1 << 29), "M4");
}

#[test]
fn m5_ksm_without_need() {
    // Fixture: KSM on, 50 unshared per sharing, merging across 2 nodes, 1 GiB of 16 GiB used.
    let rec = fires(&inputs(numa_host(), vec![small_vm(100)]), "M5");
    assert_eq!(rec.evidence().len(), 4);
    // Each condition just short of its threshold.
    let mut h = host();
    h.ksm.run = Some(1);
    h.ksm.pages_sharing = Some(1000);
    h.ksm.pages_unshared = Some(1000);
    let mut big = small_vm(100);
    big.facts.memory_bytes = Some(16 << 30); // 0.8 × 20 GiB host below
    h.meminfo.mem_total = Some(20 << 30);
    let mut i = inputs(h, vec![big]);
    i.host_observations.ksmd_cpu_share = Some(0.05);
    quiet(&i, "M5");
    i.host_observations.ksmd_cpu_share = Some(0.051);
    fires(&i, "M5");
}

#[test]
fn m6_overcommit_and_swapping() {
    // Host: 16 GiB RAM, 2 GiB swap; the 4 GiB reserve makes 14 GiB of guests the limit.
    let guests = |bytes: u64| {
        let mut v = small_vm(100);
        v.facts.memory_bytes = Some(bytes);
        inputs(host(), vec![v])
    };
    let rec = fires(&guests((14 << 30) + 1), "M6");
    assert_eq!(rec.severity, Severity::Critical);
    quiet(&guests(14 << 30), "M6");
    let swapping = |rate: f64| {
        let mut i = guests(1 << 30);
        i.host_observations.swap_in_pages_per_s = Some(rate);
        i.host_observations.swap_out_pages_per_s = Some(0.0);
        i
    };
    let rec = fires(&swapping(100.1), "M6");
    assert_eq!(rec.severity, Severity::Warning);
    quiet(&swapping(100.0), "M6");
}

#[test]
fn m7_huge_page_pools() {
    // Fixture pools: 2 × 512 × 2 MiB = 2 GiB, 768 pages (1.5 GiB, 9.4 % of RAM) free.
    let huge = |bytes: u64| {
        let mut v = small_vm(100);
        v.facts.memory.hugetlb = true;
        v.facts.memory_bytes = Some(bytes);
        inputs(numa_host(), vec![v])
    };
    let rec = fires(&huge((2 << 30) + (2 << 20)), "M7");
    assert_eq!(rec.severity, Severity::Warning);
    quiet(&huge(2 << 30), "M7");
    // Idle pools: 10 % of RAM free is the limit.
    let idle = |free_per_node: u64| {
        let mut h = numa_host();
        for node in h.nodes.iter_mut().flatten() {
            for pool in &mut node.hugepages {
                if pool.size_bytes == 2 << 20 {
                    pool.free = Some(free_per_node);
                }
            }
        }
        inputs(h, vec![])
    };
    let rec = fires(&idle(420), "M7");
    assert_eq!(rec.severity, Severity::Info);
    quiet(&idle(409), "M7");
}
