//! Finding each vCPU's thread: QEMU names, `KVM_RUN` in `syscall`, hints, other VMMs.

use super::*;

#[test]
fn qemu_with_debug_threads() {
    let proc = FakeProc::new();
    let p = proc.process(13422, "qemu-system-x86", 49332);
    p.cmdline(&[
        "qemu-system-x86_64",
        "-enable-kvm",
        "-name",
        "guest=web01,debug-threads=on",
        "-uuid",
        "C7A5FDBD-EDAF-9455-926A-D65C16DB1809",
        "-smp",
        "2",
    ])
    .exe("/usr/bin/qemu-system-x86_64")
    .thread(13422, "qemu-system-x86", PF_MAIN, PPOLL)
    .thread(13424, "call_rcu", PF_MAIN, FUTEX)
    // Busy vCPUs: the names alone must be enough.
    .thread(13425, "CPU 0/KVM", PF_VCPU_THREAD, "running")
    .thread(13426, "CPU 1/KVM", PF_VCPU_THREAD, "running")
    .thread(13427, "IO iothread1", PF_MAIN, FUTEX)
    .thread(
        13428,
        "kvm-nx-lpage-re",
        PF_USER_WORKER_THREAD,
        &kvm_run(11),
    );
    qemu_fds(&p);

    let mut discovery = proc.discovery();
    let scan = discovery.scan();
    assert_eq!(scan.problems, Vec::<String>::new());
    assert_eq!(scan.appeared, [p.id()]);
    assert_eq!(scan.vmms.len(), 1);
    let vmm = &scan.vmms[0];
    assert_eq!(vmm.kind, VmmKind::Qemu);
    assert_eq!(vmm.name, "web01");
    assert_eq!(
        vmm.uuid.as_deref(),
        Some("c7a5fdbd-edaf-9455-926a-d65c16db1809")
    );
    assert_eq!(vmm.id.start_time, 49332);
    assert_eq!(
        vcpu_tids(vmm),
        [
            (0, Some(13425), Some(TidSource::QemuThreadName)),
            (1, Some(13426), Some(TidSource::QemuThreadName)),
        ]
    );
    let roles: Vec<_> = vmm.threads.iter().map(|t| t.role.clone()).collect();
    assert_eq!(
        roles,
        [
            ThreadRole::Main,
            ThreadRole::Other("call_rcu".into()),
            ThreadRole::Vcpu(0),
            ThreadRole::Vcpu(1),
            ThreadRole::IoThread("iothread1".into()),
            ThreadRole::KernelWorker("kvm-nx-lpage-re".into()),
        ]
    );
    serde_json::to_string(&scan).unwrap();

    // Nothing changes: nothing appears or exits.
    let again = discovery.scan();
    assert!(again.appeared.is_empty() && again.exited.is_empty());
    assert_eq!(again.vmms, scan.vmms);
}

#[test]
fn qemu_without_debug_threads_uses_kvm_run() {
    let proc = FakeProc::new();
    let p = proc.process(13739, "qemu-system-x86", 51000);
    p.cmdline(&["qemu-system-x86_64", "-enable-kvm", "-smp", "2", "-m", "64"])
        .exe("/usr/bin/qemu-system-x86_64")
        .thread(13739, "qemu-system-x86", PF_MAIN, PPOLL)
        .thread(13741, "qemu-system-x86", PF_MAIN, FUTEX)
        .thread(13742, "qemu-system-x86", PF_VCPU_THREAD, &kvm_run(9))
        // vCPU 1 is busy on the first scan.
        .thread(13743, "qemu-system-x86", PF_VCPU_THREAD, "running")
        // Copies CPU 0's registers, so it also "sits in" KVM_RUN on fd 9.
        .thread(13745, "kvm-nx-lpage-re", PF_USER_WORKER_THREAD, &kvm_run(9));
    qemu_fds(&p);

    let mut discovery = proc.discovery();
    let scan = discovery.scan();
    let vmm = &scan.vmms[0];
    assert_eq!(vmm.name, "qemu-system-x86-13739");
    assert_eq!(vmm.uuid, None);
    assert!(!vmm.qemu.as_ref().unwrap().debug_threads);
    assert_eq!(
        vcpu_tids(vmm),
        [
            (0, Some(13742), Some(TidSource::KvmRunSyscall)),
            (1, None, None)
        ]
    );

    // vCPU 1 halts; vCPU 0 gets busy: the first mapping is remembered.
    p.syscall(13743, &kvm_run(11)).syscall(13742, "running");
    let scan = discovery.scan();
    assert_eq!(
        vcpu_tids(&scan.vmms[0]),
        [
            (0, Some(13742), Some(TidSource::KvmRunSyscall)),
            (1, Some(13743), Some(TidSource::KvmRunSyscall)),
        ]
    );

    // The vCPU 1 thread exits (unplug); its mapping goes with it.
    fs::remove_dir_all(p.dir.join("task/13743")).unwrap();
    let scan = discovery.scan();
    assert_eq!(scan.vmms[0].vcpus[1].tid, None);
}

#[test]
fn qemu_apic_ids_map_names_to_vcpu_ids() {
    // 3 cores per socket: the second socket's CPU 3 is KVM vcpu id 4.
    let proc = FakeProc::new();
    let p = proc.process(500, "qemu-system-x86", 7);
    p.cmdline(&[
        "qemu-system-x86_64",
        "-name",
        "topo,debug-threads=on",
        "-smp",
        "6,sockets=2,cores=3,threads=1",
    ])
    .thread(500, "qemu-system-x86", PF_MAIN, PPOLL);
    for (index, id) in [(0, 0), (1, 1), (2, 2), (3, 4), (4, 5), (5, 6)] {
        p.fd(10 + id, &format!("anon_inode:kvm-vcpu:{id}")).thread(
            600 + index,
            &format!("CPU {index}/KVM"),
            PF_VCPU_THREAD,
            "running",
        );
    }
    p.fd(9, "anon_inode:kvm-vm");
    let scan = proc.discovery().scan();
    let pairs: Vec<_> = scan.vmms[0]
        .vcpus
        .iter()
        .map(|v| (v.index, v.tid.unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [(0, 600), (1, 601), (2, 602), (4, 603), (5, 604), (6, 605)]
    );
}

#[test]
fn non_qemu_vmm() {
    let proc = FakeProc::new();
    let p = proc.process(2000, "minivmm", 800);
    p.cmdline(&["/usr/local/bin/minivmm", "--vcpus", "2"])
        .exe("/usr/local/bin/minivmm")
        .fd(3, "/dev/kvm")
        .fd(4, "anon_inode:kvm-vm")
        .fd(5, "anon_inode:kvm-vcpu:0")
        .fd(6, "anon_inode:kvm-vcpu:1")
        .thread(2000, "minivmm", PF_MAIN, FUTEX)
        .thread(2001, "vcpu0", PF_VCPU_THREAD, &kvm_run(5))
        .thread(2002, "vcpu1", PF_VCPU_THREAD, "running");
    let scan = proc.discovery().scan();
    assert_eq!(scan.problems, Vec::<String>::new());
    let vmm = &scan.vmms[0];
    assert_eq!(
        vmm.kind,
        VmmKind::Other {
            exe: "/usr/local/bin/minivmm".into()
        }
    );
    assert_eq!(vmm.name, "minivmm-2000");
    assert_eq!(vmm.qemu, None);
    assert_eq!(
        vcpu_tids(vmm),
        [
            (0, Some(2001), Some(TidSource::KvmRunSyscall)),
            (1, Some(2002), Some(TidSource::ThreadName)),
        ]
    );
}

#[test]
fn hints_fill_what_procfs_cannot_show() {
    let proc = FakeProc::new();
    let p = proc.process(2100, "fc_vmm", 900);
    p.cmdline(&["firecracker", "--api-sock", "/run/fc.sock"])
        .fd(10, "anon_inode:kvm-vm")
        .fd(12, "anon_inode:kvm-vcpu:0")
        .fd(13, "anon_inode:kvm-vcpu:1")
        .thread(2100, "fc_vmm", PF_MAIN, FUTEX)
        .thread(2105, "worker", PF_VCPU_THREAD, "running")
        .thread(2106, "worker", PF_VCPU_THREAD, "running");
    let mut discovery = proc.discovery();
    // Arrives before discovery knows the pid; kept until the next scan.
    discovery.note_vcpu_thread(2100, 2105, 0);
    discovery.note_vcpu_thread(2100, 9999, 1); // not a thread of the VMM
    discovery.note_vcpu_thread(4242, 1, 0); // not a VMM
    let scan = discovery.scan();
    let vmm = &scan.vmms[0];
    // No exe link: argv[0] names the VMM.
    assert_eq!(
        vmm.kind,
        VmmKind::Other {
            exe: "firecracker".into()
        }
    );
    assert_eq!(
        vcpu_tids(vmm),
        [(0, Some(2105), Some(TidSource::Hint)), (1, None, None)]
    );
    discovery.note_vcpu_thread(2100, 2106, 1);
    let scan = discovery.scan();
    assert_eq!(scan.vmms[0].vcpus[1].tid, Some(2106));
    // A newer observation of the same thread replaces the older one.
    discovery.note_vcpu_thread(2100, 2106, 0);
    let scan = discovery.scan();
    assert_eq!(
        vcpu_tids(&scan.vmms[0])[0],
        (0, Some(2106), Some(TidSource::Hint))
    );
    assert_eq!(scan.vmms[0].vcpus[1].tid, None);
}
