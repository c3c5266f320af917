//! Faults that must degrade, not abort: no privileges, a tracepoint missing on this kernel, an
//! interrupted snapshot window.

mod support;

use std::process::Command;

#[test]
fn without_privileges_kvmtop_names_what_is_missing() {
    if !support::is_root() {
        return support::skip(
            "without_privileges_kvmtop_names_what_is_missing",
            "needs root to start kvmtop as the unprivileged user 'nobody'",
        );
    }
    let Some(setpriv) = support::which("setpriv") else {
        return support::skip(
            "without_privileges_kvmtop_names_what_is_missing",
            "setpriv (util-linux) missing",
        );
    };
    // The test binary's kvmtop sits under the build tree, which may not be readable by nobody:
    // copy it somewhere that is.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("kvmtop");
    std::fs::copy(env!("CARGO_BIN_EXE_kvmtop"), &binary).unwrap();
    set_mode(dir.path(), 0o755);
    set_mode(&binary, 0o755);
    let output = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&binary)
        .args(["snapshot", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "kvmtop should fail without privileges; stderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1));
    for needle in ["root", "CAP_BPF", "CAP_PERFMON"] {
        assert!(
            stderr.contains(needle),
            "error should name {needle}: {stderr}"
        );
    }
    assert!(output.stdout.is_empty(), "nothing on stdout on failure");
}

#[test]
fn a_missing_tracepoint_makes_its_source_unavailable_and_the_rest_keeps_running() {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(
            "a_missing_tracepoint_makes_its_source_unavailable_and_the_rest_keeps_running",
            &reason,
        );
    }
    // A tracefs view of this kernel without kvm:kvm_exit.
    let real = std::path::Path::new("/sys/kernel/tracing/events/kvm/kvm_userspace_exit/format");
    if !real.exists() {
        return support::skip(
            "a_missing_tracepoint_makes_its_source_unavailable_and_the_rest_keeps_running",
            "tracefs is not mounted or KVM tracepoints are absent",
        );
    }
    let tracefs = tempfile::tempdir().unwrap();
    let event_dir = tracefs.path().join("events/kvm/kvm_userspace_exit");
    std::fs::create_dir_all(&event_dir).unwrap();
    std::fs::copy(real, event_dir.join("format")).unwrap();

    let (snapshot, kvmtop) =
        support::run_snapshot(0.5, &["--tracefs".as_ref(), tracefs.path().as_os_str()]);
    let kvm_exit = snapshot["exits"]["sources"]["kvm_exit"].as_str().unwrap();
    assert!(
        kvm_exit.starts_with("unavailable: ") && kvm_exit.contains("kvm:kvm_exit"),
        "kvm_exit source should say why it is unavailable, got {kvm_exit:?}"
    );
    let userspace = snapshot["exits"]["sources"]["userspace"].as_str().unwrap();
    assert!(
        matches!(userspace, "live" | "silent"),
        "userspace source should run, got {userspace:?}"
    );
    assert!(
        kvmtop
            .stderr_lines
            .iter()
            .any(|l| l.contains("kvm_exit") && l.contains("unavailable")),
        "the unavailable source should be reported on stderr too: {:?}",
        kvmtop.stderr_lines
    );
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_interrupt_ends_the_snapshot_window_early_and_still_reports_it() {
    const TEST: &str = "an_interrupt_ends_the_snapshot_window_early_and_still_reports_it";
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(TEST, &reason);
    }
    // An hour-long window, interrupted after a second.
    let mut kvmtop = support::start_window(&[]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let snapshot = support::end_window(&mut kvmtop);
    let seconds = snapshot["window"]["duration_seconds"].as_f64().unwrap();
    assert!(
        (1.0..10.0).contains(&seconds),
        "the window should end at the interrupt, about 1 s in: {seconds} s"
    );
    assert!(
        kvmtop
            .stderr_lines
            .iter()
            .any(|l| l.contains("interrupted")),
        "kvmtop should say the window was cut short: {:?}",
        kvmtop.stderr_lines
    );
}
