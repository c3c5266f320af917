//! The advisor across windows: advice about a VM ends with the VM, and a new VM on its pid
//! starts without the old one's history.

use super::*;
use crate::advice::testutil::{fixture, qemu};
use crate::testing::fixture::snapshot;

/// The fixture snapshot's busy VM (pid 4242, vCPU threads 4250 and 4251) as discovery finds it,
/// a process started at `start_time`.
fn web(start_time: u64) -> Vmm {
    let mut vmm = qemu(
        4242,
        &["-name", "web-1", "-smp", "2", "-m", "1024"],
        &[4250, 4251],
    );
    vmm.id.start_time = start_time;
    vmm
}

/// The rules in force about anything of pid 4242.
fn about_4242(evaluation: &Evaluation) -> Vec<&'static str> {
    evaluation
        .recommendations
        .iter()
        .filter(|r| r.target.pid() == Some(4242))
        .map(|r| r.id)
        .collect()
}

#[test]
fn advice_about_an_exited_vm_ends_with_it() {
    let mut advisor = Advisor::new(Thresholds::default(), fixture("defaults"));
    let with_vm = snapshot();
    let mut without_vm = snapshot();
    without_vm.vms.retain(|v| v.pid != 4242);
    let vmms = [web(123)];
    advisor.start_window(&vmms);
    advisor.advise(&with_vm, &vmms);
    let firing = about_4242(&advisor.advise(&with_vm, &vmms));
    assert!(!firing.is_empty(), "the fixture's busy VM gets advice");
    // Not even shown as clearing: nothing would name the VM it is about.
    assert_eq!(
        about_4242(&advisor.advise(&without_vm, &[])),
        Vec::<&str>::new()
    );
}

#[test]
fn a_new_vm_on_a_reused_pid_starts_without_the_old_ones_history() {
    let mut advisor = Advisor::new(Thresholds::default(), fixture("defaults"));
    let with_vm = snapshot();
    advisor.start_window(&[web(123)]);
    // One window of the old process: every rule has held once, one short of firing.
    assert_eq!(
        about_4242(&advisor.advise(&with_vm, &[web(123)])),
        Vec::<&str>::new()
    );
    // A new process on the pid, with the same name and thread ids: its first window is its first.
    assert_eq!(
        about_4242(&advisor.advise(&with_vm, &[web(124)])),
        Vec::<&str>::new()
    );
    assert!(!about_4242(&advisor.advise(&with_vm, &[web(124)])).is_empty());
}

#[test]
fn stable_host_facts_are_read_again_only_every_so_many_windows() {
    let dir = tempfile::tempdir().unwrap();
    crate::testing::copy_tree(fixture("defaults").proc.parent().unwrap(), dir.path());
    let roots = Roots::under(dir.path().to_path_buf());
    let online = roots.sys.join("devices/system/cpu/online");
    let thp = roots.sys.join("kernel/mm/transparent_hugepage/enabled");
    let mut advisor = Advisor::new(Thresholds::default(), roots);
    let vmms = [web(123)];
    advisor.start_window(&vmms);
    let host = |advisor: &mut Advisor| advisor.advise(&snapshot(), &vmms).host;
    let first = host(&mut advisor);
    assert_eq!(first.cpus, Some(4));
    assert_eq!(first.transparent_hugepages, Some("madvise".into()));
    // CPUs go offline (stable: read again later); THP changes (read every window).
    std::fs::write(&online, "0-1\n").unwrap();
    std::fs::write(&thp, "[always] madvise never\n").unwrap();
    let next = host(&mut advisor);
    assert_eq!(next.transparent_hugepages, Some("always".into()));
    assert_eq!(next.cpus, Some(4), "the CPUs as last read");
    let mut windows = 2;
    while windows < STABLE_FACTS_REFRESH_EVERY + 1 && host(&mut advisor).cpus == Some(4) {
        windows += 1;
    }
    assert_eq!(host(&mut advisor).cpus, Some(2), "after {windows} windows");
    assert!(windows <= STABLE_FACTS_REFRESH_EVERY, "{windows}");
}
