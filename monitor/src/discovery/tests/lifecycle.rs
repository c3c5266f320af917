//! VMMs appearing and exiting, pid reuse, vanishing processes, garbage, the live `/proc`.

use super::*;

#[test]
fn appearing_exiting_and_vanishing() {
    let proc = FakeProc::new();
    let mut discovery = proc.discovery();
    assert_eq!(discovery.scan(), ScanResult::default());

    let p = proc.process(3000, "qemu-system-x86", 100);
    p.cmdline(&["qemu-system-x86_64"])
        .thread(3000, "qemu-system-x86", PF_MAIN, PPOLL);
    qemu_fds(&p);
    let first = p.id();
    let scan = discovery.scan();
    assert_eq!(
        (scan.appeared.as_slice(), scan.exited.as_slice()),
        ([first].as_slice(), [].as_slice())
    );

    // Exits, and the pid is reused by a new VMM: the old one exited, the new one appeared.
    proc.remove(3000);
    let p = proc.process(3000, "qemu-system-x86", 200);
    p.cmdline(&["qemu-system-x86_64"])
        .thread(3000, "qemu-system-x86", PF_MAIN, PPOLL);
    qemu_fds(&p);
    let scan = discovery.scan();
    assert_eq!(scan.exited, [first]);
    assert_eq!(scan.appeared, [p.id()]);
    assert_eq!(scan.vmms[0].id.start_time, 200);

    // Vanishes between the listing and the reads: only a stat left, then only a directory.
    fs::remove_dir_all(p.dir.join("fd")).unwrap();
    let scan = discovery.scan();
    assert_eq!((scan.exited, scan.problems), (vec![p.id()], vec![]));
    fs::remove_file(p.dir.join("stat")).unwrap();
    assert_eq!(discovery.scan(), ScanResult::default());

    // A VMM whose threads are already gone when first read never appears.
    let q = proc.process(3100, "qemu-system-x86", 300);
    q.cmdline(&["qemu-system-x86_64"]);
    qemu_fds(&q);
    fs::remove_dir_all(q.dir.join("task")).unwrap();
    assert_eq!(discovery.scan(), ScanResult::default());

    // A zombie: stat still there, fds and cmdline empty.
    let z = proc.process(3200, "qemu-system-x86", 400);
    z.cmdline(&[]);
    assert_eq!(discovery.scan(), ScanResult::default());
}

#[test]
fn a_known_vmm_whose_stat_cannot_be_read_is_kept_not_exited() {
    let proc = FakeProc::new();
    let mut discovery = proc.discovery();
    let p = proc.process(3000, "qemu-system-x86", 100);
    p.cmdline(&["qemu-system-x86_64"])
        .thread(3000, "qemu-system-x86", PF_MAIN, PPOLL);
    qemu_fds(&p);
    assert_eq!(discovery.scan().appeared, [p.id()]);

    write(&p.dir.join("stat"), "3000 no parens");
    let scan = discovery.scan();
    assert_eq!(scan.exited, []);
    assert_eq!(scan.vmms.len(), 1, "{:?}", scan.vmms);
    assert!(
        scan.problems[0].contains("/3000/stat"),
        "{:?}",
        scan.problems
    );

    // Readable again: the same VMM, neither exited nor new.
    write(
        &p.dir.join("stat"),
        stat_line(3000, "qemu-system-x86", PF_MAIN, 100),
    );
    let scan = discovery.scan();
    assert_eq!((scan.appeared, scan.exited), (vec![], vec![]));
    assert_eq!(scan.vmms[0].id, p.id());
}

#[test]
fn a_listed_pid_that_became_a_vcpu_thread_is_not_another_vm() {
    let proc = FakeProc::new();
    let vm = proc.process(3000, "churn7", 500);
    vm.cmdline(&["/usr/bin/minivmm", "--vcpus", "2", "--name", "churn7"])
        .thread(3000, "churn7", PF_MAIN, FUTEX)
        .thread(3001, "vcpu0", PF_VCPU_THREAD, &kvm_run(9))
        .thread(3002, "vcpu1", PF_VCPU_THREAD, &kvm_run(11))
        .fd(8, "anon_inode:kvm-vm")
        .fd(9, "anon_inode:kvm-vcpu:0")
        .fd(11, "anon_inode:kvm-vcpu:1");
    // 3001 was a process of its own when `/proc` was listed; it exited and its pid went to
    // vCPU 0's thread of the VM above, which `/proc/3001` now answers for.
    proc.thread_entry(&vm, 3001, "vcpu0", 501);
    let scan = proc.discovery().scan();
    let pids: Vec<u32> = scan.vmms.iter().map(|v| v.id.pid).collect();
    assert_eq!(pids, [3000], "{:#?}", scan.vmms);
    assert_eq!(scan.appeared, [vm.id()]);
    assert_eq!(scan.vmms[0].name, "churn7-3000");
    assert_eq!(scan.vmms[0].vcpus.len(), 2);
}

#[test]
fn processes_that_are_not_vmms() {
    let proc = FakeProc::new();
    proc.process(1, "systemd", 1)
        .fd(0, "/dev/null")
        .fd(1, "socket:[1234]");
    // Probing KVM (`qemu -accel help`, libvirt's capability probe) is not running a VM.
    proc.process(40, "qemu-system-x86", 5).fd(3, "/dev/kvm");
    // A kernel thread is skipped without reading its fds.
    let kthread = proc.process(2, "kthreadd", 1);
    write(
        &kthread.dir.join("stat"),
        stat_line(2, "kthreadd", 0x0020_8040, 1),
    );
    fs::remove_dir_all(kthread.dir.join("fd")).unwrap();
    // Files that are not pids are ignored.
    write(&proc.dir.path().join("uptime"), "1.0 1.0\n");
    fs::create_dir_all(proc.dir.path().join("self")).unwrap();
    let scan = proc.discovery().scan();
    assert_eq!(scan, ScanResult::default());
}

#[test]
fn garbage_in_procfs_is_a_problem_not_a_panic() {
    let proc = FakeProc::new();
    let good = proc.process(10, "qemu-system-x86", 9);
    good.cmdline(&["qemu-system-x86_64", "-name", "ok"]);
    qemu_fds(&good);
    good.thread(10, "qemu-system-x86", PF_MAIN, "garbage")
        .thread(11, "CPU 0/KVM", PF_VCPU_THREAD, "16 0xzz 0xae80")
        .thread(12, "x", PF_MAIN, "\u{0}\u{1}");
    // A thread whose stat is garbage still counts, by its comm file.
    write(&good.dir.join("task/12/stat"), "12 no parens");
    let bad = proc.process(20, "x", 1);
    write(&bad.dir.join("stat"), b"20 (\xff) Z");
    let odd = proc.process(30, "x", 1);
    write(
        &odd.dir.join("stat"),
        stat_line(30, "a) (b) S 1", PF_MAIN, 77),
    );
    let empty = proc.process(40, "x", 1);
    write(&empty.dir.join("stat"), "");
    // A link that is KVM-like but not KVM.
    let fake = proc.process(50, "x", 1);
    fake.fd(3, "anon_inode:kvm-vcpu:")
        .fd(4, "anon_inode:kvm-vmx");

    let scan = proc.discovery().scan();
    assert_eq!(scan.problems.len(), 2, "{:?}", scan.problems);
    assert!(
        scan.problems[0].contains("/task/12/stat"),
        "{}",
        scan.problems[0]
    );
    assert!(
        scan.problems[1].contains("/20/stat"),
        "{}",
        scan.problems[1]
    );
    assert_eq!(scan.vmms.len(), 1);
    let vmm = &scan.vmms[0];
    assert_eq!(vmm.name, "ok");
    assert_eq!(vmm.vcpus[0].tid, Some(11));
    assert_eq!(vmm.threads.len(), 3);
}

#[test]
fn processes_found_not_to_be_vmms_are_rechecked_sparingly() {
    let proc = FakeProc::new();
    let p = proc.process(60, "bash", 1);
    p.cmdline(&["bash"]).thread(60, "bash", PF_MAIN, FUTEX);
    let mut discovery = proc.discovery();
    discovery.young_for = Duration::ZERO;
    discovery.young_scans = 0;
    discovery.recheck_every = 1000;
    assert!(discovery.scan().vmms.is_empty());

    // It creates a VM later: not seen until the periodic recheck…
    p.fd(3, "anon_inode:kvm-vm");
    assert!(discovery.scan().vmms.is_empty());
    // …unless the kernel programs saw it run a vCPU: then it is checked at the next scan.
    discovery.note_kvm_activity(60);
    assert_eq!(discovery.scan().appeared, [p.id()]);

    let q = proc.process(61, "python3", 1);
    q.cmdline(&["python3"])
        .thread(61, "python3", PF_MAIN, FUTEX);
    discovery.recheck_every = 2;
    assert!(discovery.scan().appeared.is_empty());
    q.fd(3, "anon_inode:kvm-vm");
    let found = (0..2).any(|_| !discovery.scan().appeared.is_empty());
    assert!(found, "the periodic recheck finds it");
}

/// Youth is the process's own age: one that had run for long when kvmtop first saw it is
/// inspected once, and then only on its periodic turn; one that has just started is inspected
/// on every scan while young.
#[test]
fn processes_already_running_at_start_are_not_young() {
    let proc = FakeProc::new();
    // 1,000 s since boot; start times are in clock ticks (100 a second on Linux).
    write(&proc.dir.path().join("uptime"), "1000.0 1.0\n");
    let old = proc.process(70, "bash", 100);
    old.cmdline(&["bash"]).thread(70, "bash", PF_MAIN, FUTEX);
    let young = proc.process(71, "qemu-system-x86", 99_950);
    young
        .cmdline(&["qemu-system-x86"])
        .thread(71, "qemu-system-x86", PF_MAIN, FUTEX);
    let mut discovery = proc.discovery();
    discovery.recheck_every = 1000;
    assert!(discovery.scan().vmms.is_empty());

    old.fd(3, "anon_inode:kvm-vm");
    young.fd(3, "anon_inode:kvm-vm");
    assert_eq!(
        discovery.scan().appeared,
        [young.id()],
        "only the young one is inspected again"
    );
    discovery.note_kvm_activity(70);
    assert_eq!(discovery.scan().appeared, [old.id()]);

    // An old process that execs another program (seen at its periodic recheck) is young from
    // then on: inspected on the scans that follow.
    let wrapper = proc.process(72, "sh", 100);
    wrapper.cmdline(&["sh"]).thread(72, "sh", PF_MAIN, FUTEX);
    discovery.scan();
    write(
        &wrapper.dir.join("stat"),
        stat_line(72, "qemu-system-x86", PF_MAIN, 100),
    );
    discovery.recheck_every = 1;
    discovery.scan();
    discovery.recheck_every = 1000;
    wrapper.fd(3, "anon_inode:kvm-vm");
    assert_eq!(
        discovery.scan().appeared.len(),
        1,
        "the exec'd program is inspected while young"
    );
}

/// Before Linux 6.4 a vhost worker is a kernel thread named `vhost-<owner pid>`: the listing
/// finds it like any process, and each VMM is given its own, without reading anything more.
#[test]
fn vhost_kernel_threads_are_given_to_their_vmm() {
    let proc = FakeProc::new();
    let vmm = proc.process(100, "qemu-system-x86", 100);
    vmm.cmdline(&["qemu-system-x86_64"])
        .thread(100, "qemu-system-x86", PF_MAIN, PPOLL);
    qemu_fds(&vmm);
    let other = proc.process(300, "qemu-system-x86", 100);
    other
        .cmdline(&["qemu-system-x86_64"])
        .thread(300, "qemu-system-x86", PF_MAIN, PPOLL);
    qemu_fds(&other);
    let kernel_thread = |pid: u32, comm: &str| {
        let p = proc.process(pid, comm, 1);
        write(&p.dir.join("stat"), stat_line(pid, comm, 0x0020_8040, 1));
    };
    kernel_thread(51, "vhost-100");
    kernel_thread(50, "vhost-100");
    kernel_thread(52, "vhost-200");
    kernel_thread(53, "vhost-abc");
    // A user process may take the name; it is no vhost worker.
    let named = proc.process(54, "vhost-100", 1);
    named
        .cmdline(&["x"])
        .thread(54, "vhost-100", PF_MAIN, FUTEX);
    let mut discovery = proc.discovery();
    let scan = discovery.scan();
    assert_eq!(
        scan.vhost_workers,
        BTreeMap::from([(100, vec![50, 51]), (300, vec![])])
    );
    // Gone with the listing.
    proc.remove(51);
    assert_eq!(discovery.scan().vhost_workers[&100], [50]);
}

/// On a host with many processes the safety-net recheck inspects about
/// `RECHECK_OTHERS_PER_SCAN` of them a scan, not a sixtieth of all.
#[test]
fn the_recheck_of_many_processes_is_spread_thin() {
    let proc = FakeProc::new();
    write(&proc.dir.path().join("uptime"), "100000.0 1.0\n");
    let others = 4 * RECHECK_OTHERS_PER_SCAN * RECHECK_OTHERS_EVERY;
    let processes: Vec<FakeProcess> = (1000..1000 + u32::try_from(others).unwrap())
        .map(|pid| {
            let p = proc.process(pid, "sleep", 100);
            p.cmdline(&["sleep"]).thread(pid, "sleep", PF_MAIN, FUTEX);
            p
        })
        .collect();
    let mut discovery = proc.discovery();
    discovery.scan();
    // Every one of them now holds a VM: each recheck finds one.
    for p in &processes {
        p.fd(3, "anon_inode:kvm-vm");
    }
    let counts: Vec<usize> = (0..20).map(|_| discovery.scan().appeared.len()).collect();
    let total: usize = counts.iter().sum();
    let expected = usize::try_from(RECHECK_OTHERS_PER_SCAN).unwrap() * counts.len();
    assert!(
        total <= expected + expected / 4 && total >= expected / 2,
        "{counts:?}"
    );
}

#[test]
fn missing_proc_root_is_a_problem() {
    let mut discovery = Discovery::new(ProcRoot::new("/nonexistent/kvmtop-proc"));
    let scan = discovery.scan();
    assert!(scan.vmms.is_empty());
    assert_eq!(scan.problems.len(), 1);
    assert!(
        scan.problems[0].contains("/nonexistent/kvmtop-proc"),
        "{}",
        scan.problems[0]
    );
}

/// The real `/proc` of this host, which may or may not run VMs.
#[test]
fn live_proc_scan() {
    let mut discovery = Discovery::new(ProcRoot::default());
    assert_eq!(discovery.proc_root(), Path::new("/proc"));
    for _ in 0..2 {
        let scan = discovery.scan();
        // Even root can be denied another process's fds (a sandbox's init, an LSM); that is
        // reported as one summary, and nothing else may go wrong.
        let (denied, unexpected): (Vec<_>, Vec<_>) = scan
            .problems
            .iter()
            .partition(|p| p.contains("(permission denied;"));
        assert!(unexpected.is_empty(), "{unexpected:?}");
        assert!(denied.len() <= 1, "{denied:?}");
        for vmm in &scan.vmms {
            assert!(!vmm.name.is_empty());
            assert!(vmm.vcpus.windows(2).all(|w| w[0].index < w[1].index));
            assert!(vmm.threads.iter().any(|t| t.role == ThreadRole::Main));
        }
        assert!(scan.vmms.windows(2).all(|w| w[0].id.pid < w[1].id.pid));
    }
}
