//! The process lifecycle programs with real threads and processes, as every kind of hook: a
//! thread created and ended in a watched process moves its change counter (which discovery
//! follows instead of reading every VMM's `/proc` entries on every scan); forks, execs and
//! exits of a process that is not watched move nothing.

mod support;

use std::{process::Command, time::Duration};

use kvmtop::{
    bpf::hooks::HookKind,
    session::{Config, Session},
};
use monitor_common::vmms::change_slot;

const TEST: &str = "lifecycle_harness";

/// This process's change counter and `other`'s.
fn counters(session: &mut Session, me: u32, other: u32) -> (u64, u64) {
    let counts = session
        .families_mut()
        .vmm_changes_mut()
        .read([me, other])
        .expect("the lifecycle sources are attached, so the counters are read");
    (counts[&me], counts[&other])
}

#[test]
fn a_watched_process_is_marked_changed_and_an_unwatched_one_is_not() {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        support::skip(TEST, &reason);
        return;
    }
    let me = std::process::id();
    for kind in HookKind::ALL {
        let config = Config {
            hook_kinds: vec![kind],
            ..Config::default()
        };
        let mut session = Session::open(&config).expect("opening a session");
        let sched = session
            .families()
            .sources()
            .into_iter()
            .find(|(family, _)| *family == "sched")
            .map(|(_, sources)| sources.clone())
            .unwrap();
        for name in ["process_fork", "process_exit", "process_exec"] {
            let source = &sched[name];
            assert!(
                source.is_attached(),
                "{kind}: {name}: {:?}",
                source.attachment
            );
            assert_eq!(
                source.hook.kind(),
                Some(kind),
                "{name} runs as {}",
                source.hook
            );
        }
        let failed = session.families_mut().vmm_watch_mut().insert(me);
        assert!(failed.is_empty(), "cannot watch {failed:?}");

        // A process that is not watched forks a child that execs and exits, and exits.
        let mut child = Command::new("sh")
            .args(["-c", "read _; /bin/true; /bin/true"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let other = child.id();
        let shares_slot = change_slot(other) == change_slot(me);
        let (mine, theirs) = counters(&mut session, me, other);

        // Two threads of this (watched) process: each created and ended.
        for _ in 0..2 {
            std::thread::spawn(|| std::thread::sleep(Duration::from_millis(1)))
                .join()
                .unwrap();
        }
        drop(child.stdin.take());
        assert!(child.wait().expect("sh").success());
        let (mine_after, theirs_after) = counters(&mut session, me, other);

        // At least the two forks and two exits; other threads of the test binary may add more.
        assert!(
            mine_after >= mine + 4,
            "{kind}: the watched process's counter went from {mine} to {mine_after}"
        );
        if shares_slot {
            support::skip(
                TEST,
                &format!("{kind}: pid {other} shares this process's slot; its half not checked"),
            );
        } else {
            assert_eq!(
                theirs_after, theirs,
                "{kind}: an unwatched process's counter moved"
            );
        }
    }
}

/// Drains the ring of processes that exec'd; `None` when some were lost since the last drain.
fn execs(session: &mut Session) -> Option<Vec<u32>> {
    session.families_mut().process_execs()
}

#[test]
fn every_exec_of_the_host_reaches_discovery_and_an_overflow_says_so() {
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        support::skip(TEST, &reason);
        return;
    }
    for kind in HookKind::ALL {
        let config = Config {
            hook_kinds: vec![kind],
            ..Config::default()
        };
        let mut session = Session::open(&config).expect("opening a session");
        // Whatever exec'd since the programs were attached, and an overflow if the host is busy.
        execs(&mut session);
        execs(&mut session);

        // Processes nobody watches: each exec is told, by its process id.
        let children: Vec<u32> = (0..3)
            .map(|_| {
                let mut child = Command::new("/bin/true").spawn().expect("/bin/true");
                let pid = child.id();
                assert!(child.wait().expect("/bin/true").success());
                pid
            })
            .collect();
        let told = execs(&mut session).expect("no exec lost: the ring holds 4,096");
        for pid in &children {
            assert!(
                told.contains(pid),
                "{kind}: exec of {pid} not told: {told:?}"
            );
        }
        if kind != HookKind::ALL[0] {
            continue;
        }
        // More execs than the ring holds: the drain says some are missing (discovery then lists
        // /proc), and the next one is whole again.
        let status = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 4200 ]; do /bin/true; i=$((i+1)); done",
            ])
            .status()
            .expect("sh");
        assert!(status.success());
        assert_eq!(execs(&mut session), None, "{kind}: an overflow went unsaid");
        let mut child = Command::new("/bin/true").spawn().expect("/bin/true");
        let pid = child.id();
        assert!(child.wait().expect("/bin/true").success());
        let after = execs(&mut session).expect("whole again after the overflow was said");
        assert!(
            after.contains(&pid),
            "{kind}: the exec of {pid} after the overflow was not told: {after:?}"
        );
    }
}
