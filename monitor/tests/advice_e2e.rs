//! End to end: the tuning advice fires on real guests and on faked host settings, always with
//! its evidence, and stays quiet when the condition does not hold.
//!
//! Each test runs `kvmtop snapshot` (one window; a rule fires when its condition holds over it)
//! and reads the `recommendations` array of the JSON.

mod support;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use guests::{DiskAio, DiskCache, DiskInterface, DiskOptions, Guest, GuestKind, GuestSpec};
use serde_json::Value;

/// `kvmtop snapshot --format json` over `seconds`, with extra arguments.
fn snapshot(seconds: f64, extra: &[&str]) -> Value {
    let extra: Vec<&std::ffi::OsStr> = extra.iter().map(std::ffi::OsStr::new).collect();
    support::run_snapshot(seconds, &extra).0
}

/// The recommendations of rule `id`.
fn advice<'a>(snapshot: &'a Value, id: &str) -> Vec<&'a Value> {
    snapshot["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == id)
        .collect()
}

/// The host-wide recommendations of rule `id`.
fn on_host<'a>(snapshot: &'a Value, id: &str) -> Vec<&'a Value> {
    advice(snapshot, id)
        .into_iter()
        .filter(|r| r["target"]["kind"] == "host")
        .collect()
}

/// Every recommendation has evidence, a change and a source.
fn assert_well_formed(snapshot: &Value) {
    for r in snapshot["recommendations"].as_array().unwrap() {
        assert!(
            !r["evidence"].as_array().unwrap().is_empty(),
            "no evidence: {r:#}"
        );
        let change = &r["change"];
        assert!(
            ["libvirt", "qemu", "host"]
                .iter()
                .any(|k| change[*k].is_string()),
            "no change: {r:#}"
        );
        assert!(
            !r["source"].as_array().unwrap().is_empty(),
            "no source: {r:#}"
        );
    }
}

fn evidence<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str().unwrap().contains(name))
        .unwrap_or_else(|| panic!("no evidence '{name}' in {r:#}"))
}

/// A sysfs view whose THP and KSM files say what the test wants, the rest being this host's.
fn fake_sysfs(thp: &str, ksm_run: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mm = dir.path().join("kernel/mm");
    let thp_dir = mm.join("transparent_hugepage");
    let ksm = mm.join("ksm");
    std::fs::create_dir_all(&thp_dir).unwrap();
    std::fs::create_dir_all(&ksm).unwrap();
    std::fs::write(thp_dir.join("enabled"), format!("{thp}\n")).unwrap();
    std::fs::write(
        thp_dir.join("defrag"),
        "always defer defer+madvise [madvise] never\n",
    )
    .unwrap();
    for (file, value) in [
        ("run", ksm_run),
        ("pages_shared", "10"),
        // Five unshared pages per shared one: M5's evidence from the KSM counters alone, so it
        // fires whatever else runs (a VM of unknown RAM size, such as another test's small VMM,
        // rightly withholds the guest-RAM evidence).
        ("pages_sharing", "100"),
        ("pages_unshared", "500"),
        ("merge_across_nodes", "1"),
    ] {
        std::fs::write(ksm.join(file), format!("{value}\n")).unwrap();
    }
    for real in ["devices", "module", "class"] {
        std::os::unix::fs::symlink(Path::new("/sys").join(real), dir.path().join(real)).unwrap();
    }
    dir
}

#[test]
fn faked_thp_and_ksm_states_fire_their_advice() {
    const TEST: &str = "faked_thp_and_ksm_states_fire_their_advice";
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(TEST, &reason);
    }
    let off = fake_sysfs("always madvise [never]", "1");
    let taken = snapshot(0.5, &["--sys", off.path().to_str().unwrap()]);
    assert_well_formed(&taken);
    // Guests of other tests may run meanwhile and have per-VM findings of their own (M4 also
    // checks each VM's huge-page coverage): only the host-wide ones come from the faked files.
    let m4 = on_host(&taken, "M4");
    assert_eq!(m4.len(), 1, "{:#}", taken["recommendations"]);
    assert_eq!(m4[0]["target"]["kind"], "host");
    assert_eq!(evidence(m4[0], "enabled")["value"], "never");
    let m5 = on_host(&taken, "M5");
    assert_eq!(m5.len(), 1, "{:#}", taken["recommendations"]);
    assert_eq!(evidence(m5[0], "run")["value"], 1.0);

    // THP in madvise mode and KSM stopped: both rules stay quiet.
    let fine = fake_sysfs("always [madvise] never", "0");
    let taken = snapshot(0.5, &["--sys", fine.path().to_str().unwrap()]);
    assert!(
        on_host(&taken, "M4").is_empty(),
        "{:#}",
        taken["recommendations"]
    );
    assert!(
        on_host(&taken, "M5").is_empty(),
        "{:#}",
        taken["recommendations"]
    );
}

#[test]
fn an_emulated_disk_with_writeback_cache_fires_bus_and_cache_advice() {
    const TEST: &str = "an_emulated_disk_with_writeback_cache_fires_bus_and_cache_advice";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let emulated = Guest::start(
        &GuestSpec::new(GuestKind::DiskReader)
            .name("advice-ide-writeback")
            .disk(DiskOptions {
                interface: DiskInterface::Ide,
                cache: DiskCache::Writeback,
                aio: Some(DiskAio::Threads),
            }),
    )
    .expect("starting the IDE guest");
    let tuned = Guest::start(
        &GuestSpec::new(GuestKind::DiskReader)
            .name("advice-virtio-direct")
            .disk(DiskOptions::default()),
    )
    .expect("starting the virtio guest");
    let taken = snapshot(1.0, &[]);
    assert_well_formed(&taken);
    let about = |id: &str, pid: u32| -> Vec<&Value> {
        advice(&taken, id)
            .into_iter()
            .filter(|r| r["target"]["pid"] == pid)
            .collect()
    };
    let i1 = about("I1", emulated.pid());
    assert_eq!(i1.len(), 1, "{:#}", taken["recommendations"]);
    assert_eq!(i1[0]["target"]["kind"], "drive");
    assert_eq!(evidence(i1[0], "controller")["value"], "ide");
    let i2 = about("I2", emulated.pid());
    assert_eq!(i2.len(), 1, "{:#}", taken["recommendations"]);
    assert_eq!(evidence(i2[0], "cache mode")["value"], "writeback");
    assert_eq!(evidence(i2[0], "aio")["value"], "threads");
    assert!(about("I1", tuned.pid()).is_empty());
    assert!(about("I2", tuned.pid()).is_empty());
}

#[test]
fn contention_fires_steal_advice_with_the_measured_steal() {
    const TEST: &str = "contention_fires_steal_advice_with_the_measured_steal";
    if let Some(reason) = support::missing_prerequisite(true, &["stress-ng"]) {
        return support::skip(TEST, &reason);
    }
    let guests: Vec<Guest> = (0..2)
        .map(|i| {
            Guest::start(
                &GuestSpec::new(GuestKind::PortIo)
                    .name(format!("advice-busy-{i}"))
                    .debug_threads(true),
            )
            .expect("starting a busy guest")
        })
        .collect();
    for guest in &guests {
        guest.wait_for_vcpus(support::START_LIMIT).unwrap();
    }
    let mut command = std::process::Command::new("stress-ng");
    command.args(["--cpu", "2", "--timeout", "60s", "--quiet"]);
    let stress = support::Observed::spawn(command);
    thread::sleep(Duration::from_secs(1));
    let taken = snapshot(3.0, &[]);
    // Ends stress-ng and, through it, its workers.
    drop(stress);
    assert_well_formed(&taken);
    let c1: Vec<&Value> = advice(&taken, "C1")
        .into_iter()
        .filter(|r| guests.iter().any(|g| r["target"]["pid"] == g.pid()))
        .collect();
    assert!(
        !c1.is_empty(),
        "no steal advice: {:#}",
        taken["recommendations"]
    );
    for r in c1 {
        assert_eq!(r["target"]["kind"], "vcpu");
        let wait = evidence(r, "run-queue wait share");
        let share = wait["value"].as_f64().unwrap();
        // Four CPU-bound tasks on two CPUs: each waits about half the time.
        assert!((0.05..=1.0).contains(&share), "{r:#}");
        let window = wait["window_seconds"].as_f64().unwrap();
        let snapshot_window = taken["window"]["duration_seconds"].as_f64().unwrap();
        assert!((window - snapshot_window).abs() < 1e-6, "{r:#}");
        eprintln!("C1 on {}: run-queue wait share {share:.3}", r["target"]);
    }
}

#[test]
fn a_vcpu_moved_around_by_taskset_fires_pinning_advice() {
    const TEST: &str = "a_vcpu_moved_around_by_taskset_fires_pinning_advice";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let (guest, vcpus) = support::start_portio("advice-wandering");
    let tid = vcpus[0].tid;
    // Move the vCPU thread between CPU 0 and CPU 1 every 20 ms: up to 50 migrations/s, and
    // well above the rule's 10/s even if the mover is delayed on a loaded host.
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut cpu = 0;
            while !stop.load(Ordering::Relaxed) {
                pin(tid, cpu);
                cpu ^= 1;
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let taken = snapshot(2.0, &[]);
    stop.store(true, Ordering::Relaxed);
    mover.join().unwrap();
    assert_well_formed(&taken);
    let c3: Vec<&Value> = advice(&taken, "C3")
        .into_iter()
        .filter(|r| r["target"]["pid"] == guest.pid())
        .collect();
    assert_eq!(c3.len(), 1, "{:#}", taken["recommendations"]);
    assert_eq!(c3[0]["target"]["tid"], tid);
    let rate = evidence(c3[0], "migrations/s")["value"].as_f64().unwrap();
    assert!((10.0..=55.0).contains(&rate), "{:#}", c3[0]);
}

fn pin(tid: u32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the set outlives the call; a thread that has exited makes the call fail, which
    // is fine here.
    let _ = unsafe {
        libc::sched_setaffinity(
            libc::pid_t::try_from(tid).unwrap(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &raw const set,
        )
    };
}
