//! Following the kernel's lifecycle counters: a VMM's `/proc` entries are read when its counter
//! moves, not while it stays, and on the slow refresh whatever the counters say.

use super::*;

/// A VMM with one vCPU, pid 3000.
fn one_vcpu_vmm(proc: &FakeProc, start_time: u64) -> FakeProcess {
    vmm_at(proc, 3000, start_time)
}

/// A VMM with one vCPU at `pid` (its vCPU thread `pid + 1`).
fn vmm_at(proc: &FakeProc, pid: u32, start_time: u64) -> FakeProcess {
    let p = proc.process(pid, "minivmm", start_time);
    p.cmdline(&["/usr/bin/minivmm", "--vcpus", "1"])
        .thread(pid, "minivmm", PF_MAIN, FUTEX)
        .thread(pid + 1, "vcpu0", PF_VCPU_THREAD, &kvm_run(9))
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

/// A scan told that `execs` exec'd since the last one, with pid 3000's counter at `count`.
fn told(discovery: &mut Discovery, count: u64, execs: &[u32]) -> ScanResult {
    discovery.note_execs(Some(execs.to_vec()));
    discovery.scan_following(counted(count))
}

/// Scans told of no exec until no VMM is new, so that the next listing is the safety net's.
fn settle_told(discovery: &mut Discovery, count: u64) {
    for _ in 0..=discovery.young_scans {
        told(discovery, count, &[]);
    }
}

/// Discovery told of execs, without the slow refresh, with the VMM at pid 3000 found (by the
/// first scan's listing: nothing has been listed yet) and settled at counter 7.
fn told_and_settled(proc: &FakeProc) -> (Discovery, VmmId) {
    let mut discovery = proc.discovery();
    discovery.refresh_every = 1_000;
    let p = one_vcpu_vmm(proc, 100).id();
    assert_eq!(told(&mut discovery, 7, &[]).appeared, [p]);
    settle_told(&mut discovery, 7);
    (discovery, p)
}

#[test]
fn told_what_exec_d_a_scan_inspects_that_and_lists_proc_only_as_the_safety_net() {
    let proc = FakeProc::new();
    let (mut discovery, _) = told_and_settled(&proc);

    // The other VMMs are not counted by the kernel (read on every scan).
    // A VMM that did not exec (forked by a daemon) and has run no vCPU yet: found by the next
    // listing, the safety net's, within LIST_EVERY scans and not before.
    let forked = vmm_at(&proc, 4000, 100).id();
    let scans = (1..=LIST_EVERY)
        .find(|_| !told(&mut discovery, 7, &[]).appeared.is_empty())
        .expect("listed within LIST_EVERY scans");
    assert!(scans > 1, "listed at once: the listing was not skipped");
    assert!(
        discovery
            .scan_following(counted(7))
            .vmms
            .iter()
            .any(|v| v.id == forked)
    );
    settle_told(&mut discovery, 7);

    // A VMM that exec'd: inspected in the scan told of it.
    let exec_d = vmm_at(&proc, 5000, 100).id();
    assert_eq!(told(&mut discovery, 7, &[5000]).appeared, [exec_d]);
    settle_told(&mut discovery, 7);

    // One the kernel saw run a vCPU: inspected in the next scan.
    let running = vmm_at(&proc, 6000, 100).id();
    discovery.note_kvm_activity(6000);
    assert_eq!(told(&mut discovery, 7, &[]).appeared, [running]);
    settle_told(&mut discovery, 7);

    // When the execs may be incomplete (the ring overflowed), the scan lists.
    let unseen = vmm_at(&proc, 7000, 100).id();
    discovery.note_execs(None);
    assert_eq!(discovery.scan_following(counted(7)).appeared, [unseen]);
}

#[test]
fn a_process_that_exec_d_is_young_and_inspected_on_each_scan_without_a_listing() {
    let proc = FakeProc::new();
    let (mut discovery, _) = told_and_settled(&proc);
    // A wrapper exec'd (no uptime in this tree: it dates from when it was seen, so young for
    // `young_for`), then creates its VM a few scans later, with no exec told and no listing.
    let wrapper = proc.process(8000, "launcher", 100);
    wrapper.cmdline(&["/usr/bin/launcher"]);
    assert!(told(&mut discovery, 7, &[8000]).appeared.is_empty());
    assert!(told(&mut discovery, 7, &[]).appeared.is_empty());
    wrapper
        .thread(8000, "launcher", PF_MAIN, FUTEX)
        .fd(8, "anon_inode:kvm-vm")
        .fd(9, "anon_inode:kvm-vcpu:0");
    assert_eq!(told(&mut discovery, 7, &[]).appeared, [wrapper.id()]);
}

#[test]
fn without_a_listing_a_vmm_exits_by_its_counter_or_at_the_safety_nets_listing() {
    let proc = FakeProc::new();
    let (mut discovery, p) = told_and_settled(&proc);
    // Its exit counted: gone at the scan after the one that saw the count move (the
    // tracepoint fires while the process is still in /proc).
    assert!(told(&mut discovery, 8, &[]).exited.is_empty());
    proc.remove(3000);
    assert_eq!(told(&mut discovery, 8, &[]).exited, [p]);

    // Its exit not counted (an event lost): gone at the next listing.
    let p = one_vcpu_vmm(&proc, 200).id();
    discovery.note_execs(None);
    assert_eq!(discovery.scan_following(counted(8)).appeared, [p]);
    settle_told(&mut discovery, 8);
    proc.remove(3000);
    let scans = (1..=LIST_EVERY)
        .find(|_| !told(&mut discovery, 8, &[]).exited.is_empty())
        .expect("gone within LIST_EVERY scans");
    assert!(scans > 1, "{scans}: listed at once");
}
