//! Each guest really produces its signal, measured with the kernel's own tracepoints (perf).
//! Needs root and /dev/kvm; skips with a printed reason otherwise.

mod support;

use std::time::Duration;

use guests::{DiskAio, DiskCache, DiskInterface, DiskOptions, Guest, GuestKind, GuestSpec};
use support::{Target, event, filtered, rates, rates_reaching};

const WINDOW: Duration = Duration::from_secs(2);
/// Reads each disk configuration's guest must complete, within [`DISK_PATIENCE`] after the
/// measured window.
const ENOUGH_READS: u32 = 200;
const DISK_PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn port_io_exits_to_userspace_from_its_vcpu_thread() {
    if support::skip(
        "port_io_exits_to_userspace_from_its_vcpu_thread",
        GuestKind::PortIo,
        true,
    ) {
        return;
    }
    let _one_at_a_time = support::exclusive();
    let spec = GuestSpec::new(GuestKind::PortIo)
        .name("port-io")
        .debug_threads(true);
    let guest = Guest::start(&spec).expect("starting the PortIo guest");
    let vcpus = guest
        .wait_for_vcpus(support::START)
        .expect("waiting for vCPUs");
    assert_eq!(vcpus.len(), 1, "{vcpus:?}");
    let tid = vcpus[0].tid;
    assert_eq!(support::thread_name(guest.pid(), tid), "CPU 0/KVM");

    // Counted on the vCPU thread alone: this also checks that the thread id is right.
    let r = rates_reaching(
        Target::Thread(tid),
        &[
            filtered("kvm:kvm_userspace_exit", "reason == 2"),
            event("kvm:kvm_userspace_exit"),
        ],
        WINDOW,
        20_000.0,
    );
    let (io, all) = (r[0], r[1]);
    eprintln!("PortIo: {io:.0} IO exits/s ({all:.0} userspace exits/s in all) on tid {tid}");
    eprintln!("PortIo cmdline: {}", guest.cmdline().join(" "));
    assert!(io >= 20_000.0, "only {io:.0} IO exits/s");
    assert!(io >= 0.95 * all, "IO exits {io:.0}/s of {all:.0}/s");
}

#[test]
fn idle_guest_halts_and_wakes_with_the_timer() {
    if support::skip(
        "idle_guest_halts_and_wakes_with_the_timer",
        GuestKind::Idle,
        true,
    ) {
        return;
    }
    let _one_at_a_time = support::exclusive();
    let guest = Guest::start(&GuestSpec::new(GuestKind::Idle)).expect("starting the Idle guest");
    let vcpus = guest
        .wait_for_vcpus(support::START)
        .expect("waiting for vCPUs");
    // Without debug-threads every QEMU thread has the same name.
    assert_eq!(
        support::thread_name(guest.pid(), vcpus[0].tid),
        "qemu-system-x86"
    );

    let before = guest.loop_count().unwrap().unwrap();
    let r = rates(
        Target::Process(guest.pid()),
        &[
            event("kvm:kvm_vcpu_wakeup"),
            event("kvm:kvm_userspace_exit"),
        ],
        WINDOW,
    );
    let after = guest.loop_count().unwrap().unwrap();
    let (wakeups, exits) = (r[0], r[1]);
    let guest_counted = f64::from(after.wrapping_sub(before)) / WINDOW.as_secs_f64();
    eprintln!(
        "Idle: {wakeups:.1} kvm_vcpu_wakeup/s, {exits:.1} userspace exits/s, \
         guest counted {guest_counted:.1} wakeups/s"
    );
    eprintln!("Idle cmdline: {}", guest.cmdline().join(" "));
    assert!((5.0..=60.0).contains(&wakeups), "{wakeups:.1} wakeups/s");
    assert!(
        exits <= 5.0,
        "{exits:.1} userspace exits/s from an idle guest"
    );
    assert!(
        guest_counted >= 5.0,
        "the guest loop counted {guest_counted:.1}/s"
    );
}

#[test]
fn disk_reader_issues_block_requests_from_qemu() {
    if support::skip(
        "disk_reader_issues_block_requests_from_qemu",
        GuestKind::DiskReader,
        true,
    ) {
        return;
    }
    let _one_at_a_time = support::exclusive();
    let guest = Guest::start(&GuestSpec::new(GuestKind::DiskReader).name("disk-reader"))
        .expect("starting the DiskReader guest");
    guest
        .wait_for_vcpus(support::START)
        .expect("waiting for vCPUs");
    let before = guest.loop_count().unwrap().unwrap();
    let r = rates(
        Target::Process(guest.pid()),
        &[
            event("block:block_rq_issue"),
            event("block:block_io_start"),
            filtered("kvm:kvm_userspace_exit", "reason == 2"),
            filtered("kvm:kvm_userspace_exit", "reason == 6"),
        ],
        WINDOW,
    );
    let after = guest.loop_count().unwrap().unwrap();
    let reads = f64::from(after.wrapping_sub(before)) / WINDOW.as_secs_f64();
    eprintln!(
        "DiskReader (virtio, cache=none, aio=native): {:.0} block_rq_issue/s, {:.0} block_io_start/s, \
         {:.0} IO exits/s, {:.0} MMIO exits/s; guest counted {reads:.0} reads/s",
        r[0], r[1], r[2], r[3]
    );
    eprintln!("DiskReader cmdline: {}", guest.cmdline().join(" "));
    assert!(r[0] >= 300.0, "only {:.0} block requests/s", r[0]);
    assert!(
        reads >= 300.0,
        "the guest completed only {reads:.0} reads/s"
    );
}

#[test]
fn disk_reader_runs_with_every_disk_configuration() {
    if support::skip(
        "disk_reader_runs_with_every_disk_configuration",
        GuestKind::DiskReader,
        true,
    ) {
        return;
    }
    let _one_at_a_time = support::exclusive();
    let configurations = [
        (
            DiskOptions {
                interface: DiskInterface::Ide,
                cache: DiskCache::Writeback,
                aio: None,
            },
            "cache=writeback,aio=threads,if=ide",
        ),
        (
            DiskOptions {
                interface: DiskInterface::Virtio,
                cache: DiskCache::None,
                aio: Some(DiskAio::Threads),
            },
            "cache=none,aio=threads,if=virtio",
        ),
        (
            DiskOptions {
                interface: DiskInterface::Scsi,
                cache: DiskCache::None,
                aio: None,
            },
            "cache=none,aio=native,if=none,id=disk0",
        ),
    ];
    for (disk, expected) in configurations {
        let guest = Guest::start(&GuestSpec::new(GuestKind::DiskReader).disk(disk))
            .unwrap_or_else(|e| panic!("starting with {disk:?}: {e}"));
        let cmdline = guest.cmdline().join(" ");
        assert!(cmdline.contains(expected), "{cmdline}");
        guest
            .wait_for_vcpus(support::START)
            .unwrap_or_else(|e| panic!("waiting with {disk:?}: {e}"));
        let before = guest.loop_count().unwrap().unwrap();
        let r = rates(
            Target::Process(guest.pid()),
            &[event("block:block_rq_issue")],
            WINDOW,
        );
        let after = guest.loop_count().unwrap().unwrap();
        let reads = f64::from(after.wrapping_sub(before)) / WINDOW.as_secs_f64();
        eprintln!(
            "DiskReader {disk:?}: {:.0} block_rq_issue/s, guest counted {reads:.0} reads/s\n  cmdline: {cmdline}",
            r[0]
        );
        // The guest must really read through this configuration. A rate would depend on the
        // host's load (emulated IDE on a starved CPU managed 10 reads/s beside a CPU hog), so
        // it gets up to DISK_PATIENCE to complete ENOUGH_READS.
        let started = std::time::Instant::now();
        let mut done = after.wrapping_sub(before);
        while done < ENOUGH_READS && started.elapsed() < DISK_PATIENCE {
            std::thread::sleep(Duration::from_millis(200));
            done = guest.loop_count().unwrap().unwrap().wrapping_sub(before);
        }
        assert!(
            done >= ENOUGH_READS,
            "{disk:?}: the guest completed only {done} reads in {:.1} s",
            (WINDOW + started.elapsed()).as_secs_f64()
        );
    }
}

#[test]
fn mini_vmm_looks_like_a_vmm_and_exits_on_every_vcpu() {
    if support::skip(
        "mini_vmm_looks_like_a_vmm_and_exits_on_every_vcpu",
        GuestKind::MiniVmm,
        true,
    ) {
        return;
    }
    let _one_at_a_time = support::exclusive();
    let guest = Guest::start(&GuestSpec::new(GuestKind::MiniVmm).name("mini").vcpus(2))
        .expect("starting minivmm");
    let vcpus = guest
        .wait_for_vcpus(support::START)
        .expect("waiting for vCPUs");
    assert_eq!(
        vcpus.iter().map(|v| v.index).collect::<Vec<_>>(),
        [0, 1],
        "{vcpus:?}"
    );

    let links = support::fd_links(guest.pid());
    for expected in [
        "anon_inode:kvm-vm",
        "anon_inode:kvm-vcpu:0",
        "anon_inode:kvm-vcpu:1",
    ] {
        assert!(
            links.iter().any(|l| l == expected),
            "{expected} missing from {links:?}"
        );
    }
    for vcpu in &vcpus {
        let name = support::thread_name(guest.pid(), vcpu.tid);
        assert_eq!(name, format!("vcpu{}", vcpu.index));
    }

    let mut total = 0.0;
    for vcpu in &vcpus {
        let io = rates_reaching(
            Target::Thread(vcpu.tid),
            &[filtered("kvm:kvm_userspace_exit", "reason == 2")],
            WINDOW,
            5_000.0,
        )[0];
        eprintln!(
            "MiniVmm: vcpu{} (tid {}): {io:.0} IO exits/s",
            vcpu.index, vcpu.tid
        );
        assert!(io >= 5_000.0, "vcpu{}: only {io:.0} IO exits/s", vcpu.index);
        total += io;
    }
    eprintln!("MiniVmm cmdline: {}", guest.cmdline().join(" "));
    assert!(total >= 20_000.0, "only {total:.0} IO exits/s in all");
}

#[test]
fn frozen_guest_makes_no_exits_until_thawed() {
    if support::skip(
        "frozen_guest_makes_no_exits_until_thawed",
        GuestKind::PortIo,
        true,
    ) {
        return;
    }
    let _one_at_a_time = support::exclusive();
    let guest = Guest::start(&GuestSpec::new(GuestKind::PortIo)).expect("starting the guest");
    let vcpus = guest
        .wait_for_vcpus(support::START)
        .expect("waiting for vCPUs");
    let exits = || {
        rates(
            Target::Process(guest.pid()),
            &[event("kvm:kvm_userspace_exit")],
            Duration::from_secs(1),
        )[0]
    };

    guest.freeze().unwrap();
    // SIGSTOP is asynchronous: give every thread time to stop.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(support::state(vcpus[0].tid), Some('T'));
    let frozen = exits();
    guest.thaw().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let thawed = exits();
    eprintln!("freeze/thaw: {frozen:.0} exits/s frozen, {thawed:.0} exits/s thawed");
    assert!(frozen < 1.0, "{frozen} exits/s while frozen");
    assert!(thawed >= 20_000.0, "{thawed} exits/s after thaw");
}
