//! Guests are always stopped, and failures explain themselves. Needs /dev/kvm and QEMU; skips
//! with a printed reason otherwise.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use guests::{Error, Guest, GuestKind, GuestSpec};

/// Set in the environment of the helper process started by
/// `qemu_dies_when_the_test_process_is_killed`.
const HELPER_ENV: &str = "GUESTS_TEST_HOLD_A_GUEST";

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // Reparented and killed, the VMM may linger as a zombie until its new parent reaps it.
        if matches!(support::state(pid), None | Some('Z' | 'X')) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn drop_and_stop_kill_and_reap() {
    if support::skip("drop_and_stop_kill_and_reap", GuestKind::PortIo, false) {
        return;
    }
    let guest = Guest::start(&GuestSpec::new(GuestKind::PortIo)).unwrap();
    let pid = guest.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(guest);
    // Reaped, not merely killed: no zombie is left.
    assert!(
        support::state(pid).is_none(),
        "pid {pid} still exists after drop"
    );

    let mut guest = Guest::start(&GuestSpec::new(GuestKind::PortIo)).unwrap();
    let pid = guest.pid();
    guest.freeze().unwrap();
    guest.stop().unwrap();
    assert!(
        support::state(pid).is_none(),
        "frozen pid {pid} survived stop"
    );
    guest.stop().expect("stopping twice is fine");
    assert!(matches!(guest.freeze(), Err(Error::Stopped)));
}

#[test]
fn a_panicking_test_leaves_no_vmm_behind() {
    if support::skip(
        "a_panicking_test_leaves_no_vmm_behind",
        GuestKind::MiniVmm,
        false,
    ) {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let guest = Guest::start(&GuestSpec::new(GuestKind::MiniVmm)).unwrap();
        tx.send(guest.pid()).unwrap();
        panic!("a test failing while its guest runs");
    });
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(
        support::state(pid).is_none(),
        "minivmm pid {pid} outlived the panic"
    );
}

/// Not a test on its own: the body of the helper process of
/// `qemu_dies_when_the_test_process_is_killed`, which holds a guest until it is killed.
#[test]
#[ignore = "helper process, started by qemu_dies_when_the_test_process_is_killed"]
fn helper_holds_a_guest_until_killed() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    // Started from a thread that ends right away: the guest must survive that thread and die
    // only with the process.
    let guest = std::thread::spawn(|| Guest::start(&GuestSpec::new(GuestKind::PortIo)).unwrap())
        .join()
        .unwrap();
    println!("VMM_PID={}", guest.pid());
    std::thread::sleep(Duration::from_mins(2));
}

#[test]
fn qemu_dies_when_the_test_process_is_killed() {
    if support::skip(
        "qemu_dies_when_the_test_process_is_killed",
        GuestKind::PortIo,
        false,
    ) {
        return;
    }
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_holds_a_guest_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let pid: u32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("VMM_PID=").map(|p| p.parse().unwrap()))
        .expect("the helper never reported its guest");
    // The helper's thread that started the guest has ended by now; the guest must still run.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        support::state(pid).map(|s| s != 'Z'),
        Some(true),
        "QEMU died with its thread"
    );

    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "QEMU pid {pid} outlived the killed test process"
    );
}

#[test]
fn qemu_errors_carry_its_stderr() {
    if support::skip("qemu_errors_carry_its_stderr", GuestKind::PortIo, false) {
        return;
    }
    let spec = GuestSpec::new(GuestKind::PortIo).extra_args(["-no-such-option"]);
    let err = Guest::start(&spec).expect_err("QEMU accepted a bogus option");
    let message = err.to_string();
    assert!(matches!(err, Error::Exited { .. }), "{message}");
    assert!(message.contains("-no-such-option"), "{message}");
    eprintln!("error as reported: {message}");
}

#[test]
fn waiting_too_briefly_says_what_is_missing() {
    if support::skip(
        "waiting_too_briefly_says_what_is_missing",
        GuestKind::Idle,
        false,
    ) {
        return;
    }
    let guest = Guest::start(&GuestSpec::new(GuestKind::Idle)).unwrap();
    // SeaBIOS needs over a second under the emulator; the boot sector cannot be running yet.
    let err = guest.wait_for_vcpus(Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    eprintln!("error as reported: {err}");
    guest.wait_for_vcpus(support::START).unwrap();
}

#[test]
fn every_vcpu_is_reported_with_its_own_thread() {
    if support::skip(
        "every_vcpu_is_reported_with_its_own_thread",
        GuestKind::Idle,
        false,
    ) {
        return;
    }
    let uuid = "6a1f2a3c-1111-2222-3333-444455556666";
    let spec = GuestSpec::new(GuestKind::Idle)
        .name("two-vcpus")
        .debug_threads(true)
        .vcpus(2)
        .uuid(uuid);
    let guest = Guest::start(&spec).unwrap();
    let vcpus = guest.wait_for_vcpus(support::START).unwrap();
    assert_eq!(vcpus.len(), 2, "{vcpus:?}");
    for vcpu in &vcpus {
        // debug-threads names are QEMU's own record of which thread runs which vCPU.
        assert_eq!(
            support::thread_name(guest.pid(), vcpu.tid),
            format!("CPU {}/KVM", vcpu.index)
        );
    }
    let cmdline = guest.cmdline().join(" ");
    assert!(
        cmdline.contains("-name two-vcpus,debug-threads=on"),
        "{cmdline}"
    );
    assert!(cmdline.contains(&format!("-uuid {uuid}")), "{cmdline}");
    assert!(cmdline.contains("-smp 2"), "{cmdline}");
}

#[test]
fn guests_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Guest>();
}

#[test]
fn the_mini_vmm_takes_its_name_nice_value_and_an_asked_for_pid() {
    const TEST: &str = "the_mini_vmm_takes_its_name_nice_value_and_an_asked_for_pid";
    if support::skip(TEST, GuestKind::MiniVmm, false) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {TEST}: asking for a pid (kernel.ns_last_pid) needs root");
        return;
    }
    let spec = GuestSpec::new(GuestKind::MiniVmm)
        .name("lifecycle-nice")
        .vcpus(2)
        .nice(19);
    let mut guest = Guest::start(&spec).unwrap();
    let vcpus = guest.wait_for_vcpus(support::START).unwrap();
    let pid = guest.pid();
    assert_eq!(support::thread_name(pid, pid), "lifecycle-nice");
    for vcpu in &vcpus {
        assert_eq!(
            support::thread_name(pid, vcpu.tid),
            format!("vcpu{}", vcpu.index)
        );
    }
    for tid in vcpus.iter().map(|v| v.tid).chain([pid]) {
        assert_eq!(support::nice(pid, tid), Some(19), "thread {tid}");
    }
    guest.stop().unwrap();

    // Another fork on the host may take the pid first, so a few tries.
    let reused = (0..5).any(|_| {
        let again = Guest::start(&spec.clone().pid(pid)).unwrap();
        again.pid() == pid
    });
    assert!(
        reused,
        "pid {pid} was never handed out again when asked for"
    );
}
