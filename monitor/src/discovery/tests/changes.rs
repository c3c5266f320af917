//! Following the kernel's lifecycle counters: a VMM's `/proc` entries are read when its counter
//! moves, not while it stays, and on the slow refresh whatever the counters say.

use super::*;

/// A VMM with one vCPU, pid 3000.
fn one_vcpu_vmm(proc: &FakeProc, start_time: u64) -> FakeProcess {
    let p = proc.process(3000, "minivmm", start_time);
    p.cmdline(&["/usr/bin/minivmm", "--vcpus", "1"])
        .thread(3000, "minivmm", PF_MAIN, FUTEX)
        .thread(3001, "vcpu0", PF_VCPU_THREAD, &kvm_run(9))
        .fd(8, "anon_inode:kvm-vm")
        .fd(9, "anon_inode:kvm-vcpu:0");
    p
}

/// The counters as the kernel would give them: `count` for pid 3000.
#[expect(clippy::unnecessary_wraps, reason = "as scan_following takes them")]
fn counted(count: u64) -> Option<HashMap<u32, u64>> {
    Some(HashMap::from([(3000, count)]))
}

/// Scans until the VMM is neither new nor has young threads, with its counter at `count`.
fn settle(discovery: &mut Discovery, count: u64) {
    for _ in 0..4 {
        discovery.scan_following(counted(count));
    }
}

/// Adds vCPU 1 and its thread to the VMM.
fn add_vcpu(p: &FakeProcess) {
    p.thread(3002, "vcpu1", PF_VCPU_THREAD, &kvm_run(11))
        .fd(11, "anon_inode:kvm-vcpu:1");
}

#[test]
fn a_vmm_is_read_again_when_its_counter_moves_and_not_while_it_stays() {
    let proc = FakeProc::new();
    let mut discovery = proc.discovery();
    // No slow refresh in this test (see the next).
    discovery.refresh_every = 1_000;
    let p = one_vcpu_vmm(&proc, 100);
    assert_eq!(discovery.scan_following(counted(7)).appeared, [p.id()]);
    settle(&mut discovery, 7);

    // A thread and a vCPU came, but nothing counted it: not read, so not seen.
    add_vcpu(&p);
    for _ in 0..3 {
        assert_eq!(discovery.scan_following(counted(7)).vmms[0].vcpus.len(), 1);
    }
    // The fork counted: read again.
    let scan = discovery.scan_following(counted(8));
    assert_eq!(scan.vmms[0].vcpus.len(), 2);
    assert_eq!(scan.vmms[0].threads.len(), 3);

    // Its exit counts while the process is still in /proc (the tracepoint fires first): still
    // there at the scan that sees the count move, gone at the next, counted or not.
    settle(&mut discovery, 8);
    let scan = discovery.scan_following(counted(9));
    assert!(scan.exited.is_empty());
    fs::remove_dir_all(p.dir.join("fd")).unwrap();
    let scan = discovery.scan_following(counted(9));
    assert_eq!(scan.exited, [p.id()]);
    assert!(scan.vmms.is_empty());
}

#[test]
fn without_counters_every_vmm_is_read_on_every_scan() {
    let proc = FakeProc::new();
    let mut discovery = proc.discovery();
    discovery.refresh_every = 1_000;
    let p = one_vcpu_vmm(&proc, 100);
    discovery.scan_following(None);
    settle(&mut discovery, 7);
    add_vcpu(&p);
    // The counters could not be read this scan: read as before there were any.
    assert_eq!(discovery.scan_following(None).vmms[0].vcpus.len(), 2);
    // Nor when the counters lack the pid.
    proc.remove(3000);
    let scan = discovery.scan_following(Some(HashMap::new()));
    assert_eq!(scan.exited.len(), 1);
}

#[test]
fn the_slow_refresh_reads_a_vmm_whatever_the_counters_say() {
    let proc = FakeProc::new();
    let mut discovery = proc.discovery();
    let p = one_vcpu_vmm(&proc, 100);
    discovery.scan_following(counted(7));
    settle(&mut discovery, 7);
    add_vcpu(&p);
    let vcpus: Vec<usize> = (0..REFRESH_VMM_EVERY)
        .map(|_| discovery.scan_following(counted(7)).vmms[0].vcpus.len())
        .collect();
    // Seen on exactly one scan of the period (its turn), and kept from then on.
    let first = vcpus
        .iter()
        .position(|&n| n == 2)
        .expect("refreshed within the period");
    assert!(vcpus[..first].iter().all(|&n| n == 1), "{vcpus:?}");
    assert!(vcpus[first..].iter().all(|&n| n == 2), "{vcpus:?}");
    assert!(first > 0, "{vcpus:?}: the change was read before its turn");
}

#[test]
fn a_reused_pid_is_noticed_by_the_old_processes_exit() {
    let proc = FakeProc::new();
    let mut discovery = proc.discovery();
    discovery.refresh_every = 1_000;
    let old = one_vcpu_vmm(&proc, 100).id();
    discovery.scan_following(counted(7));
    settle(&mut discovery, 7);
    // The VMM exits (counted) and a new VMM gets its pid before the next scan.
    proc.remove(3000);
    let new = one_vcpu_vmm(&proc, 200).id();
    let scan = discovery.scan_following(counted(8));
    assert_eq!((scan.exited, scan.appeared), (vec![old], vec![new]));
    // A process that leaves the listing is gone, counted or not.
    settle(&mut discovery, 8);
    proc.remove(3000);
    assert_eq!(discovery.scan_following(counted(8)).exited, [new]);
}
