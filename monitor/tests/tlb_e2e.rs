//! End to end: a process whose thread on one CPU releases touched pages in a loop while its other
//! thread runs on another CPU makes the kernel shoot down the other CPU's TLB on every release.
//! kvmtop's shootdowns sent and received, attributed to that process, agree with bpftrace
//! counting `tlb:tlb_flush` by reason for the same pid over the same window.
//!
//! The process holds a KVM VM file descriptor, so discovery takes it for a VMM just as it takes
//! QEMU, and it is stopped (SIGSTOP) outside the window, so both observers see the same events.

mod support;

use std::{
    fs::{self, File},
    io::Write as _,
    os::fd::AsRawFd as _,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use support::Observed;

/// Agreement required between kvmtop and bpftrace.
const TOLERANCE: f64 = 0.02;
/// Set in the environment of the child process.
const CHILD_ENV: &str = "KVMTOP_TLB_CHURN_CHILD";
/// `_IO(KVMIO, 0x01)`.
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
/// Pages touched and released per iteration.
const PAGES: usize = 16;

/// The child process: not a test of its own. It churns only when the TLB test starts it.
#[test]
#[ignore = "the TLB test's child process; it runs only when started by that test"]
fn tlb_churn_child() {
    if std::env::var_os(CHILD_ENV).is_some() {
        churn();
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only read and
    // write the set we own; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
        assert_eq!(rc, 0, "pinning to CPU {cpu}");
    }
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

fn churn() -> ! {
    let kvm = File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .expect("opening /dev/kvm");
    // SAFETY: KVM_CREATE_VM takes the machine type (0) and returns a new fd or -1.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0) };
    assert!(
        vm >= 0,
        "KVM_CREATE_VM: {}",
        std::io::Error::last_os_error()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        // The receiver: keeps this process's memory map loaded on CPU 1, so every release on CPU 0
        // has to interrupt it.
        pin_to(1);
        tx.send(gettid()).expect("reporting the receiver");
        loop {
            std::hint::spin_loop();
        }
    });
    let receiver = rx.recv().expect("receiver started");
    pin_to(0);
    let page = 4096;
    let len = PAGES * page;
    println!("churning sender={} receiver={receiver}", gettid());
    std::io::stdout().flush().expect("flushing stdout");
    // One mapping for the whole run, its pages touched and released again and again. Releasing
    // them (MADV_DONTNEED) flushes exactly their range. Unmapping instead would also free the
    // page table whenever nothing else shares it, and the kernel flushes everything then.
    // SAFETY: an anonymous private mapping of `len` bytes that nothing else refers to.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(mapping, libc::MAP_FAILED, "mmap");
    loop {
        // SAFETY: writes and madvise stay within the mapping, which lives as long as the loop.
        unsafe {
            for i in 0..PAGES {
                mapping.cast::<u8>().add(i * page).write_volatile(1);
            }
            let rc = libc::madvise(mapping, len, libc::MADV_DONTNEED);
            assert_eq!(rc, 0, "madvise");
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child, which is alive until it is dropped.
    let rc = unsafe { libc::kill(pid.cast_signed(), signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// Stops the child and waits until every one of its threads has stopped: SIGSTOP is handled by
/// each thread when it next runs, and a queued thread first waits for its CPU.
fn freeze(pid: u32) {
    signal(pid, libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states: Vec<(String, char)> = fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap_or_else(|e| panic!("listing the threads of {pid}: {e}"))
            .flatten()
            .filter_map(|task| {
                let stat = fs::read_to_string(task.path().join("stat")).ok()?;
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some((task.file_name().to_string_lossy().into_owned(), state))
            })
            .collect();
        if states.iter().all(|(_, s)| matches!(s, 'T' | 't')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "threads of {pid} not stopped 20 s after SIGSTOP (tid, state): {states:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shootdowns_sent_and_received_match_bpftrace() {
    const TEST: &str = "shootdowns_sent_and_received_match_bpftrace";
    if let Some(reason) = support::missing_prerequisite(false, &["bpftrace"]) {
        return support::skip(TEST, &reason);
    }
    if aya::util::nr_cpus().unwrap_or(1) < 2 {
        return support::skip(TEST, "needs two CPUs for a remote shootdown");
    }
    if File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return support::skip(TEST, "/dev/kvm is not usable");
    }
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args(["--ignored", "--exact", "tlb_churn_child", "--nocapture"])
        .env(CHILD_ENV, "1");
    let mut child = Observed::spawn(command);
    let ready = child.wait_for("churning", Duration::from_secs(30));
    let receiver: u64 = ready
        .rsplit_once("receiver=")
        .and_then(|(_, tid)| tid.trim().parse().ok())
        .expect("receiver tid");
    let pid = child.child.id();

    freeze(pid);
    let mut bpftrace = support::bpftrace(&format!(
        "tracepoint:tlb:tlb_flush /pid == {pid}/ {{ @[args->reason] = count(); }}"
    ));
    let mut kvmtop = support::start_window(&[]);
    signal(pid, libc::SIGCONT);
    thread::sleep(Duration::from_secs(2));
    freeze(pid);
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);

    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == pid)
        .unwrap_or_else(|| panic!("process {pid} missing from {snapshot:#}"));
    let tlb = &vm["tlb"];
    let reference: Vec<(Vec<i64>, u64)> = support::parse_bpftrace_map(&bpftrace.stdout_text(), "");
    let expected = |reason: i64| -> u64 {
        reference
            .iter()
            .filter(|(k, _)| k == &[reason])
            .map(|(_, n)| n)
            .sum()
    };
    let sent = tlb["sent"]["count"].as_u64().unwrap();
    assert!(
        expected(4) > 1_000,
        "the process barely ran: {reference:?}\n{tlb:#}"
    );
    support::assert_within("shootdowns sent", sent, expected(4), TOLERANCE);
    support::assert_within(
        "shootdowns received",
        tlb["received"]["count"].as_u64().unwrap(),
        expected(1),
        TOLERANCE,
    );
    // Every other reason in the process's threads agrees too.
    for entry in tlb["by_reason"].as_array().unwrap() {
        let code = entry["code"].as_i64().unwrap();
        support::assert_within(
            &format!("flushes with reason {}", entry["reason"]),
            entry["count"].as_u64().unwrap(),
            expected(code),
            TOLERANCE,
        );
    }
    // Each release flushes a range of PAGES pages. The kernel sends a full flush (counted apart,
    // with no page count) for a range above its single-page ceiling (33 pages by default) or
    // when page tables are freed; neither happens here, so full flushes must be rare.
    let full = tlb["sent"]["full_flushes"].as_u64().unwrap();
    let pages = tlb["sent"]["pages"].as_u64().unwrap();
    assert_eq!(pages, (sent - full) * PAGES as u64, "{tlb:#}");
    assert!(
        full * 100 <= sent,
        "{full} of {sent} shootdowns were full flushes: {tlb:#}"
    );
    // The receiver thread, pinned to CPU 1, received (nearly) all of them.
    let by_thread = tlb["received_by_thread"].as_array().unwrap();
    assert_eq!(by_thread[0]["tid"].as_u64(), Some(receiver), "{tlb:#}");
    let on_cpu_1 = tlb["received_by_cpu"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cpu"] == 1)
        .map_or(0, |c| c["count"].as_u64().unwrap());
    // Another thread of the process may briefly run on CPU 1 and receive one too.
    let receiver_count = by_thread[0]["count"].as_u64().unwrap();
    assert!(
        on_cpu_1 >= receiver_count && on_cpu_1 - receiver_count <= receiver_count / 100 + 2,
        "CPU 1 received {on_cpu_1}, the receiver thread {receiver_count}: {tlb:#}"
    );
    assert_eq!(snapshot["tlb"]["sources"]["tlb_flush"], "live");
}
