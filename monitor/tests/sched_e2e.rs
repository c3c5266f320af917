//! End to end with real QEMU/KVM guests: kvmtop's run-queue wait per vCPU agrees with the
//! kernel's own accounting (`/proc/PID/task/TID/schedstat`) and with libbpf-tools' `runqlat`,
//! and its migration counts (runs a thread begins on another CPU than its previous run) agree
//! with bpftrace counting the same at `sched_switch`, and are classified for this host's topology.
//!
//! Windows are made exact by freezing the guests (SIGSTOP) outside them. A stopped thread is not
//! runnable, so it accrues no run-queue wait: once every thread of a guest has stopped, nothing
//! changes until it is thawed. Every observer starts and ends while the guests are fully
//! stopped, so all see the same waits: the one after SIGCONT woke the threads, every
//! preemption while they ran, and the last wait before SIGSTOP was handled.

mod sched_support;
mod support;

use support::assert_within;

use std::{
    collections::HashMap,
    fs,
    process::Command,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use guests::{Guest, VcpuThread};
use kvmtop::{families::sched::contenders::TOP_CONTENDERS, host::topology::Topology};
use sched_support::{
    KernelAccounting, assert_same_distribution, cpu_steal_ns, freeze, median_slot,
    median_slot_range, parse_runqlat, pin, vcpu_sched, vm,
};
use support::Observed;

/// One scenario at a time: a competing tracer would make the classic-tracepoint observers of
/// another scenario (bpftrace) lose events, and two contention set-ups on one CPU would blur
/// each other's figures.
static ONE_SCENARIO: Mutex<()> = Mutex::new(());

fn one_scenario() -> std::sync::MutexGuard<'static, ()> {
    ONE_SCENARIO
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// kvmtop vs schedstat for the run-queue wait.
const WAIT_TOLERANCE: f64 = 0.05;
/// kvmtop vs runqlat for the number of waits. The two read a thread's state differently at a
/// switch: the tracepoint reports the state the thread asked for, runqlat the state after the
/// kernel saw a pending signal and left the thread runnable. Such a switch (a vCPU thread going
/// to sleep as the test stops it) is a wait for runqlat only; it is rare, so the counts are
/// identical in almost every run.
const WAIT_COUNT_TOLERANCE: f64 = 0.01;
/// kvmtop vs bpftrace for migrations.
const MIGRATION_TOLERANCE: f64 = 0.02;
/// kvmtop vs the kernel's context-switch counts.
const SWITCH_TOLERANCE: f64 = 0.02;

#[test]
fn run_queue_wait_matches_schedstat_and_runqlat() {
    run_queue_wait_agrees("run_queue_wait_matches_schedstat_and_runqlat", false);
}

/// An operator's bpftrace on the scheduler tracepoints during the window costs kvmtop no switch
/// or wakeup: its figures still agree with the kernel's accounting.
#[test]
fn a_competing_tracer_costs_no_scheduler_event() {
    run_queue_wait_agrees("a_competing_tracer_costs_no_scheduler_event", true);
}

#[expect(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
fn run_queue_wait_agrees(test: &str, with_competing_tracer: bool) {
    let _one = one_scenario();
    let tools = ["runqlat", "stress-ng", "stdbuf", "bpftrace"];
    if let Some(reason) = support::missing_prerequisite(true, &tools) {
        return support::skip(test, &reason);
    }
    let topology = Topology::read(std::path::Path::new("/sys")).expect("host topology");
    let Some(&cpu) = topology.online().iter().next() else {
        return support::skip(test, "no online CPU listed in /sys");
    };
    let cpu = cpu.to_string();
    let (a, a_vcpus) = support::start_portio("kvmtop-sched-a");
    let (b, b_vcpus) = support::start_portio("kvmtop-sched-b");
    // Two busy vCPUs and two busy stress-ng workers, all on one CPU: everyone waits behind
    // everyone. Left to the scheduler, each VM may share a CPU with a stress-ng worker only and
    // never wait behind the other VM.
    for vcpu in a_vcpus.iter().chain(&b_vcpus) {
        pin(vcpu.tid, &cpu);
    }
    let mut stress = Command::new("taskset");
    stress.args(["-c", &cpu, "stress-ng", "--cpu", "2", "--timeout", "300"]);
    let stress = Observed::spawn(stress);
    freeze(&a);
    freeze(&b);

    let runqlat = |guest: &Guest| {
        // Line-buffered, or its readiness line sits in a pipe buffer until it exits.
        let mut command = Command::new("stdbuf");
        command.arg("-oL").arg(support::which("runqlat").unwrap());
        command.args(["-L", "-p", &guest.pid().to_string()]);
        let mut observed = Observed::spawn(command);
        observed.wait_for("Tracing run queue latency", Duration::from_mins(1));
        observed
    };
    let mut runqlats = [runqlat(&a), runqlat(&b)];
    let vcpus: Vec<(&Guest, VcpuThread)> = a_vcpus
        .iter()
        .map(|v| (&a, *v))
        .chain(b_vcpus.iter().map(|v| (&b, *v)))
        .collect();
    let before: Vec<KernelAccounting> = vcpus
        .iter()
        .map(|(g, v)| KernelAccounting::read(g.pid(), v.tid))
        .collect();
    let steal_before = cpu_steal_ns(&cpu);
    let window_start = Instant::now();
    let competitor = with_competing_tracer.then(support::competing_tracer);
    let mut kvmtop = support::start_window(&[]);
    a.thaw().unwrap();
    b.thaw().unwrap();
    thread::sleep(Duration::from_secs(3));
    freeze(&a);
    freeze(&b);
    drop(competitor);
    let after: Vec<KernelAccounting> = vcpus
        .iter()
        .map(|(g, v)| KernelAccounting::read(g.pid(), v.tid))
        .collect();
    let snapshot = support::end_window(&mut kvmtop);
    let stolen = cpu_steal_ns(&cpu).saturating_sub(steal_before);
    let window_ns = window_start.elapsed().as_nanos();
    let mut reference = HashMap::new();
    for runqlat in &mut runqlats {
        runqlat.interrupt_and_wait(support::EXIT_LIMIT);
        reference.extend(parse_runqlat(&runqlat.stdout_text()));
    }
    drop(stress);

    for (i, (guest, vcpu)) in vcpus.iter().enumerate() {
        let sched = vcpu_sched(vm(&snapshot, guest.pid()), vcpu.tid);
        let what = format!("vCPU thread {} of VM {}", vcpu.tid, guest.pid());
        let kernel = after[i].since(&before[i]);
        assert!(
            kernel.wait_ns > 100_000_000,
            "{what}: the contention barely made it wait ({kernel:?})"
        );
        let ours = |field: &str| sched[field].as_u64().unwrap();
        assert_within(
            &format!("{what}: run-queue wait ns vs schedstat"),
            ours("wait_ns"),
            kernel.wait_ns,
            WAIT_TOLERANCE,
        );
        // kvmtop's run time also holds what a hypervisor below stole from the CPU while this
        // thread ran on it (`cpu_steal_ns`); the CPU was busy throughout, so the thread's part of
        // that steal is about its share of the window. kvmtop may count up to twice that part
        // more than schedstat, never less.
        let run_ns = ours("run_ns");
        let steal_part =
            u64::try_from(u128::from(stolen) * u128::from(kernel.run_ns) * 2 / window_ns.max(1))
                .unwrap_or(u64::MAX);
        let steal_in_run = run_ns.saturating_sub(kernel.run_ns).min(steal_part);
        eprintln!(
            "{what}: on-CPU ns {run_ns} (schedstat {}); CPU {cpu} stolen {stolen} ns in the \
             window, up to {steal_part} ns allowed for this thread",
            kernel.run_ns
        );
        assert_within(
            &format!("{what}: on-CPU ns less its part of the steal vs schedstat"),
            run_ns - steal_in_run,
            kernel.run_ns,
            WAIT_TOLERANCE,
        );
        assert_within(
            &format!("{what}: involuntary switches vs status"),
            ours("involuntary_switches"),
            kernel.involuntary,
            SWITCH_TOLERANCE,
        );
        assert_within(
            &format!("{what}: voluntary switches vs status"),
            ours("voluntary_switches"),
            kernel.voluntary,
            SWITCH_TOLERANCE,
        );
        let runqlat = reference
            .get(&vcpu.tid)
            .unwrap_or_else(|| panic!("{what}: runqlat has no histogram: {reference:?}"));
        let runqlat_total: u64 = runqlat.iter().sum();
        let buckets = sched["wait_buckets"].as_array().unwrap();
        let total: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(total, sched["wait"]["count"].as_u64().unwrap());
        assert_within(
            &format!("{what}: waits vs runqlat"),
            total,
            runqlat_total,
            WAIT_COUNT_TOLERANCE,
        );
        assert_same_distribution(&what, buckets, runqlat, 2);
        let (ours, theirs) = (
            median_slot_range(buckets),
            median_slot(runqlat, runqlat_total),
        );
        eprintln!(
            "{what}: median usec slot kvmtop {} (at most {}), runqlat {theirs}",
            ours.start(),
            ours.end()
        );
        // kvmtop's median bucket, on runqlat's slots, is the slot covering 95 % of it; it can
        // differ only through waits in the other 5 %, which the distribution check bounds.
        assert!(
            ours.contains(&theirs),
            "{what}: median bucket; runqlat {runqlat:?}, kvmtop {buckets:?}"
        );
        let steal = sched["steal"].as_f64().unwrap();
        assert!(steal > 0.02 && steal < 1.0, "{what}: steal {steal}");
    }

    // Who the VMs waited behind. kvmtop names, for each wait, the process that handed the CPU
    // over (see families/sched/contenders.rs). Four CPU-bound tasks on one CPU may settle into a
    // fixed rotation, and then each VM always follows the same task: in "A B s1 s2" A waits
    // behind s2 and B behind A, in "A s1 B s2" neither VM ever follows the other. Whatever the
    // rotation, a stress-ng worker hands the CPU to one of the two VMs, so stress-ng is among
    // the contenders of at least one of them, unless other processes of a busy host fill the
    // five names.
    let mut stress_listed = false;
    let mut full = false;
    for guest in [&a, &b] {
        let contenders = vm(&snapshot, guest.pid())["sched"]["contenders"]
            .as_array()
            .unwrap();
        let named = contenders.iter().filter(|c| c["kind"] != "other").count();
        let shares: Vec<f64> = contenders
            .iter()
            .filter(|c| c["kind"] != "other")
            .map(|c| c["share"].as_f64().unwrap())
            .collect();
        assert!(
            shares.windows(2).all(|w| w[0] >= w[1]),
            "contenders not sorted by share: {contenders:#?}"
        );
        let share_sum: f64 = contenders
            .iter()
            .map(|c| c["share"].as_f64().unwrap())
            .sum();
        assert!(
            (share_sum - 1.0).abs() < 1e-6,
            "shares do not add up to the whole wait: {contenders:#?}"
        );
        stress_listed |= contenders
            .iter()
            .any(|c| c["name"].as_str().unwrap().starts_with("stress-ng"));
        full |= named == TOP_CONTENDERS;
        eprintln!("contenders of VM {}: {contenders:#?}", guest.pid());
    }
    assert!(
        stress_listed || full,
        "stress-ng is no VM's contender, yet the lists have room"
    );
    if !stress_listed {
        eprintln!(
            "note: other processes of this busy host outranked stress-ng among the five \
             contenders named"
        );
    }
    let vm_a = vm(&snapshot, a.pid());
    let classes: Vec<&str> = vm_a["sched"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(&classes[..2], ["vcpu", "main"], "{classes:?}");
    // One node here: all memory on node 0, no vCPU away from it.
    let memory = &vm_a["numa"]["memory"];
    assert_eq!(memory["by_node"][0]["node"], 0, "{memory:#}");
    assert_eq!(vm_a["numa"]["vcpu_memory_mismatch"], 0.0);
    for source in ["sched_switch", "sched_wakeup"] {
        assert_eq!(snapshot["sched"]["sources"][source], "live");
    }
}

/// The thread's time on a CPU so far, in ns (`schedstat`).
fn run_ns(pid: u32, tid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Whether the thread, within `limit`, is seen on `cpu` and then runs there: its run time grows
/// after it was first seen on that CPU's run queue.
fn ran_on(pid: u32, tid: u32, cpu: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut arrived: Option<u64> = None;
    while Instant::now() < deadline {
        let on = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|s| {
                let after = &s[s.rfind(')')? + 1..];
                // Field 39, `processor`: fields after the name start at 3.
                after.split_whitespace().nth(36)?.parse::<u32>().ok()
            });
        if on == Some(cpu) {
            let ran = run_ns(pid, tid);
            match arrived {
                Some(base) if ran > base => return true,
                Some(_) => {}
                None => arrived = Some(ran),
            }
        } else {
            arrived = None;
        }
        thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn migrations_match_bpftrace_and_are_classified_for_this_host() {
    const TEST: &str = "migrations_match_bpftrace_and_are_classified_for_this_host";
    let _one = one_scenario();
    if let Some(reason) = support::missing_prerequisite(true, &["bpftrace", "taskset"]) {
        return support::skip(TEST, &reason);
    }
    let topology = Topology::read(std::path::Path::new("/sys")).expect("host topology");
    let online: Vec<u32> = topology.online().iter().copied().collect();
    let [first, second, ..] = online[..] else {
        return support::skip(TEST, "needs two online CPUs");
    };
    let expected_class =
        kvmtop::families::sched::window::class_name(topology.classify_migration(first, second));
    let (guest, vcpus) = support::start_portio("kvmtop-sched-migrate");
    let tid = vcpus[0].tid;
    // Start from the first of the two CPUs, before anything observes: on a host with more CPUs
    // the thread may be elsewhere, and that first move would be of another class.
    pin(tid, &first.to_string());
    freeze(&guest);
    // A migration is a run that begins on another CPU than the thread's previous run: at each
    // switch-in of the thread, compare with the CPU of the previous one (CPU + 1, so that 0 is
    // "none yet").
    let mut bpftrace = support::bpftrace(&format!(
        "tracepoint:sched:sched_switch /args->next_pid == {tid}/ {{ \
         if (@last != 0 && @last != cpu + 1) {{ @moves = count(); }} @last = cpu + 1; }}"
    ));
    let mut kvmtop = support::start_window(&[]);
    guest.thaw().unwrap();
    // Move the busy vCPU thread back and forth between two CPUs.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut moves = 0u32;
    while Instant::now() < deadline {
        let cpu = if moves.is_multiple_of(2) {
            second
        } else {
            first
        };
        // Count a move only once the thread has run on its new CPU: on a loaded host it may
        // be moved back before it ever runs there, which is no migration.
        pin(tid, &cpu.to_string());
        if ran_on(guest.pid(), tid, cpu, Duration::from_millis(500)) {
            moves += 1;
        }
        thread::sleep(Duration::from_millis(10));
    }
    freeze(&guest);
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);

    let reference = bpftrace
        .stdout_text()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("@moves: ")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        reference >= u64::from(moves) / 2,
        "{moves} moves seen to run on their new CPU, bpftrace saw {reference} migrations"
    );
    let sched = vcpu_sched(vm(&snapshot, guest.pid()), tid);
    let migrations = &sched["migrations"];
    let count = migrations["count"].as_u64().unwrap();
    assert_within("migrations", count, reference, MIGRATION_TOLERANCE);
    // Every move was between the same two CPUs, so all have this host's class for them.
    assert_eq!(
        migrations["by_class"][expected_class]["count"].as_u64(),
        Some(count),
        "expected every migration to be {expected_class}: {migrations:#}"
    );
    eprintln!("migrations between CPUs {first} and {second}: {expected_class}");
    let placement = &sched["placement"];
    let cpu = placement["cpu"].as_u64().unwrap();
    assert!(
        cpu == u64::from(first) || cpu == u64::from(second),
        "{placement:#}"
    );
}

#[test]
fn a_missing_scheduler_tracepoint_costs_only_its_figures() {
    const TEST: &str = "a_missing_scheduler_tracepoint_costs_only_its_figures";
    let _one = one_scenario();
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let events = std::path::Path::new("/sys/kernel/tracing/events/sched");
    if !events.join("sched_switch/format").exists() {
        return support::skip(TEST, "tracefs is not mounted");
    }
    // A tracefs view of this kernel without sched:sched_wakeup.
    let tracefs = tempfile::tempdir().unwrap();
    let dir = tracefs.path().join("events/sched/sched_switch");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(events.join("sched_switch/format"), dir.join("format")).unwrap();
    let (guest, vcpus) = support::start_portio("kvmtop-sched-degraded");
    // Classic tracepoints only: their record formats are what the fake tracefs hides (raw
    // programs do not read tracefs).
    let mut kvmtop = support::start_window(&[
        "--tracefs".as_ref(),
        tracefs.path().as_os_str(),
        "--hook-kinds".as_ref(),
        "tracepoint".as_ref(),
    ]);
    thread::sleep(Duration::from_secs(1));
    let snapshot = support::end_window(&mut kvmtop);

    let sources = &snapshot["sched"]["sources"];
    let wakeup = sources["sched_wakeup"].as_str().unwrap();
    assert!(
        wakeup.starts_with("unavailable: ") && wakeup.contains("sched:sched_wakeup"),
        "{sources:#}"
    );
    assert_eq!(sources["sched_switch"], "live", "{sources:#}");
    let sched = vcpu_sched(vm(&snapshot, guest.pid()), vcpus[0].tid);
    // Run-queue waits after sleeping start at wakeups: no steal. Everything `sched_switch`
    // gives stays, migrations included.
    assert!(sched["steal"].is_null(), "{sched:#}");
    let on_cpu = sched["on_cpu"].as_f64().expect("on-CPU share");
    assert!(on_cpu > 0.1, "a busy vCPU runs: {sched:#}");
    assert!(sched["migrations"]["count"].is_u64(), "{sched:#}");
}
