//! Two readings → the scheduling figures of a window: per vCPU (with its placement), per VM,
//! per thread class, and who the VM's threads waited behind.

use foldhash::HashMap;
use std::{
    collections::BTreeMap,
    path::Path,
};

use super::{
    counters::SchedTotals,
    sources::{SWITCH, WAKEUP},
    totals::{MigrationCounts, ThreadTotals},
    contenders,
};
use crate::{
    bpf::hooks::{Sources, attached},
    discovery::Vmm,
    families::{by_pid::ByPid, small_map::inserted},
    family::Pair,
    host::topology::{MigrationClass, Topology},
    model::{
        LostEvents,
        Histogram, SourceState, rate,
        running::Running,
        sched::{
            ClassSched, HostSched, MigrationCount, Migrations, Placement, SchedCumulative,
            SchedFigures, ThreadClass, VcpuSched, VmSched,
        },
        Snapshot,
    },
};

/// The family's state the figures need besides the two readings.
pub struct Context<'a> {
    pub sources: &'a Sources,
    pub topology: Option<&'a Topology>,
    /// To name contending processes.
    pub proc_root: &'a Path,
    pub names: &'a contenders::ProcessNames,
}

/// One thread over the window, with its running totals.
struct ThreadWindow<'a> {
    window: ThreadTotals,
    running: &'a ThreadTotals,
    /// The part of the window it was watched, in ns: its wall time in the shares.
    watched_ns: f64,
}

/// Which figures the attached sources make meaningful.
#[derive(Clone, Copy)]
struct Available {
    /// On-CPU time, switches and migrations.
    switch: bool,
    wait: bool,
}

/// Fills the scheduling parts of `snapshot`: each vCPU's (with its placement), each VM's, and the
/// state of the sources.
pub fn fill(pair: &Pair<'_, SchedTotals>, ctx: &Context<'_>, snapshot: &mut Snapshot) {
    let seconds = pair.seconds;
    let available = Available {
        switch: attached(ctx.sources, SWITCH),
        wait: attached(ctx.sources, SWITCH) && attached(ctx.sources, WAKEUP),
    };
    let vmms: HashMap<u32, &Vmm> = pair.vms.iter().map(|v| (v.pid(), v.vmm)).collect();
    let contender_span = &pair.now.contender_span;
    let threads_of = ByPid::new(&pair.now.threads, |_, thread| thread.pid);
    for (span, vm) in pair.vms.iter().zip(&mut snapshot.vms) {
        let before = pair.before_for(span);
        let threads = thread_windows(threads_of.of(vm.pid), before, vm.pid, seconds * 1e9);
        for vcpu in &mut vm.vcpus {
            let Some(thread) = vcpu
                .tid
                .and_then(|tid| threads.iter().find(|t| t.window.tid == tid))
            else {
                continue;
            };
            vcpu.sched = Some(VcpuSched {
                figures: figures(&[thread], seconds, available),
                placement: placement(thread, pair.now, before, ctx.topology),
            });
        }
        let of_class = |class| -> Vec<&ThreadWindow> {
            threads.iter().filter(|t| t.window.class == class).collect()
        };
        let classes: Vec<ClassSched> = ThreadClass::ALL
            .into_iter()
            .filter_map(|class| {
                let members = of_class(class);
                (!members.is_empty()).then(|| ClassSched {
                    class,
                    figures: figures(&members, seconds, available),
                })
            })
            .collect();
        let vcpus = classes
            .iter()
            .find(|c| c.class == ThreadClass::Vcpu)
            .map_or_else(|| figures(&[], seconds, available), |c| c.figures.clone());
        vm.families.sched = VmSched {
            vcpus,
            classes,
            contenders: contenders::listed(vm, &vmms, contender_span, ctx.proc_root, ctx.names),
            contenders_seconds: contender_span.seconds,
        };
    }
    snapshot.families.sched = host(pair.now, pair.before, ctx);
}

/// The window of each thread of `pid`, from its threads in the later reading (`mine`). A thread
/// the earlier reading has was watched for the whole window (`window_ns`); one it lacks was
/// watched from when its entry was created, which was during the window.
fn thread_windows<'a>(
    mine: &[(&u32, &'a ThreadTotals)],
    before: Option<&SchedTotals>,
    pid: u32,
    window_ns: f64,
) -> Vec<ThreadWindow<'a>> {
    let mut threads: Vec<ThreadWindow> = mine
        .iter()
        .map(|&(_, running)| {
            let earlier = before
                .and_then(|b| b.threads.get(&running.tid))
                .filter(|e| e.pid == pid);
            #[expect(clippy::cast_precision_loss, reason = "nanoseconds, far below 2^52")]
            let watched_ns = if earlier.is_some() {
                window_ns
            } else {
                (running.watched_ns as f64).min(window_ns)
            };
            ThreadWindow {
                window: earlier.map_or_else(|| running.clone(), |e| running.since(e)),
                running,
                watched_ns,
            }
        })
        .collect();
    threads.sort_by_key(|t| t.window.tid);
    threads
}

#[expect(
    clippy::cast_precision_loss,
    reason = "nanoseconds and counts in a window, far below 2^52"
)]
fn figures(threads: &[&ThreadWindow], seconds: f64, available: Available) -> SchedFigures {
    let n = u32::try_from(threads.len()).unwrap_or(u32::MAX);
    let mut wait = Histogram::default();
    let mut out = SchedFigures {
        threads: n,
        ..SchedFigures::default()
    };
    let mut migrations = MigrationCounts::default();
    let mut cumulative = SchedCumulative::default();
    let mut running_migrations = MigrationCounts::default();
    for t in threads {
        out.wait_ns += t.window.wait_ns;
        out.run_ns += t.window.run_ns;
        out.voluntary_switches += t.window.voluntary;
        out.involuntary_switches += t.window.involuntary;
        wait.merge(&t.window.wait);
        migrations.merge(&t.window.migrations);
        cumulative.wait_ns += t.running.wait_ns;
        cumulative.run_ns += t.running.run_ns;
        cumulative.voluntary_switches += t.running.voluntary;
        cumulative.involuntary_switches += t.running.involuntary;
        cumulative.wait.merge(&t.running.wait);
        running_migrations.merge(&t.running.migrations);
    }
    // Each thread's wall time is the part of the window it was watched: one discovered during
    // the window would otherwise have its wait spread over time it was not observed.
    let wall_ns: f64 = threads.iter().map(|t| t.watched_ns).sum();
    let share =
        |ns: u64, ok: bool| (ok && wall_ns > 0.0).then(|| (ns as f64 / wall_ns).clamp(0.0, 1.0));
    out.steal = share(out.wait_ns, available.wait);
    out.on_cpu = share(out.run_ns, available.switch);
    out.wait = wait.summary();
    out.wait_buckets = wait.nonempty_buckets();
    out.migrations = available.switch.then(|| Migrations {
        count: migrations.total(),
        rate: rate(migrations.total(), seconds),
        by_class: inserted(migrations.iter().map(|(class, count)| {
            let rate = rate(count, seconds);
            (class_name(class), MigrationCount { count, rate })
        })),
    });
    cumulative.migrations = inserted(
        running_migrations
            .iter()
            .map(|(class, n)| (class_name(class), n)),
    );
    out.cumulative = cumulative;
    out
}

/// Where a vCPU thread runs, and where it ran most in the window.
fn placement(
    thread: &ThreadWindow,
    now: &SchedTotals,
    before: Option<&SchedTotals>,
    topology: Option<&Topology>,
) -> Placement {
    let tid = thread.window.tid;
    let earlier = before.and_then(|b| b.cpu_time.get(&tid));
    let mut per_cpu: BTreeMap<u32, u64> = now
        .cpu_time
        .get(&tid)
        .into_iter()
        .flatten()
        .map(|(&cpu, &ns)| {
            let was = earlier.and_then(|e| e.get(&cpu)).copied().unwrap_or(0);
            (cpu, ns.saturating_sub(was))
        })
        .collect();
    // The kernel files an on-CPU interval under its CPU when it ends; the part of the window's
    // run time not filed yet is the interval in progress, on the current CPU.
    let filed: u64 = per_cpu.values().sum();
    if let (Some(cpu), true) = (thread.running.cpu, thread.window.run_ns > filed) {
        *per_cpu.entry(cpu).or_default() += thread.window.run_ns - filed;
    }
    let total: u64 = per_cpu.values().sum();
    let dominant = per_cpu
        .iter()
        .filter(|(_, ns)| **ns > 0)
        .max_by_key(|(cpu, ns)| (**ns, std::cmp::Reverse(**cpu)))
        .map(|(cpu, ns)| (*cpu, *ns));
    let node_of = |cpu: Option<u32>| topology.and_then(|t| t.node_of(cpu?));
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds, far below 2^52")]
    let dominant_cpu_share = dominant.map(|(_, ns)| ns as f64 / total as f64);
    Placement {
        cpu: thread.running.cpu,
        node: node_of(thread.running.cpu),
        dominant_cpu: dominant.map(|(cpu, _)| cpu),
        dominant_cpu_share,
        dominant_node: node_of(dominant.map(|(cpu, _)| cpu)),
        remote_memory_share: None,
    }
}

fn host(now: &SchedTotals, earlier: &SchedTotals, ctx: &Context<'_>) -> HostSched {
    HostSched {
        sources: ctx
            .sources
            .iter()
            .map(|(name, source)| {
                let events = now
                    .watched_events
                    .get(name)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(earlier.watched_events.get(name).copied().unwrap_or(0));
                (
                    (*name).to_owned(),
                    SourceState::from_window(&source.attachment, events),
                )
            })
            .collect(),
        hooks: ctx
            .sources
            .iter()
            .map(|(name, source)| ((*name).to_owned(), source.hook.to_string()))
            .collect(),
        watched_threads: now.threads.len(),
        // Filled by the session, which reads what the kernel skipped.
        lost: BTreeMap::new(),
        dropped: LostEvents::between(earlier.dropped, now.dropped),
    }
}

#[must_use]
pub fn class_name(class: MigrationClass) -> &'static str {
    match class {
        MigrationClass::SameCpu => "same_cpu",
        MigrationClass::SameCore => "same_core",
        MigrationClass::SameLlc => "same_llc",
        MigrationClass::CrossLlc => "cross_llc",
        MigrationClass::CrossNode => "cross_node",
        MigrationClass::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{histogram::LatencyHist, sched::ThreadSched};

    use super::*;

    const MS: u64 = 1_000_000;

    /// A recording leaves out the classes without a move and its reader adds back those the
    /// model names: the two lists must be the same.
    #[test]
    fn every_class_counted_is_one_the_model_names() {
        let counted = MigrationCounts::CLASSES.map(class_name);
        assert_eq!(counted, crate::model::sched::MIGRATION_CLASSES);
    }

    fn thread(tid: u32, wait_ns: u64, watched_ns: u64) -> ThreadTotals {
        let mut raw = ThreadSched::new(1);
        raw.wait = LatencyHist {
            count: 1,
            sum_ns: wait_ns,
            ..LatencyHist::ZERO
        };
        let mut totals = ThreadTotals::decode(tid, ThreadClass::Vcpu, &raw, 0);
        totals.watched_ns = watched_ns;
        totals
    }

    #[test]
    fn a_thread_watched_for_part_of_the_window_counts_for_that_part() {
        let all = Available {
            switch: true,
            wait: true,
        };
        // A 1 s window: thread 1, watched throughout, waited 100 ms of it; thread 2, watched
        // from half-way, waited 250 ms of its 500.
        let mut before = SchedTotals::default();
        before.threads.insert(1, thread(1, 100 * MS, 4_000 * MS));
        let mut now = SchedTotals::default();
        now.threads.insert(1, thread(1, 200 * MS, 5_000 * MS));
        now.threads.insert(2, thread(2, 250 * MS, 500 * MS));
        let mine = ByPid::new(&now.threads, |_, t| t.pid);
        let windows = thread_windows(mine.of(1), Some(&before), 1, 1e9);
        let steal = |threads: &[&ThreadWindow]| figures(threads, 1.0, all).steal.unwrap();
        assert!((steal(&[&windows[0]]) - 0.1).abs() < 1e-9);
        assert!((steal(&[&windows[1]]) - 0.5).abs() < 1e-9);
        let both = steal(&windows.iter().collect::<Vec<_>>());
        assert!((both - 350.0 / 1_500.0).abs() < 1e-9, "{both}");
        // Without an earlier reading, a thread watched for longer than the window counts the
        // window.
        let first = thread_windows(mine.of(1), None, 1, 1e9);
        assert!((first[0].watched_ns - 1e9).abs() < 1e-3);
        assert!((first[1].watched_ns - 5e8).abs() < 1e-3);
    }

    #[test]
    fn migrations_need_only_sched_switch() {
        let mut now = SchedTotals::default();
        now.threads.insert(1, thread(1, 0, 1_000 * MS));
        let windows = thread_windows(ByPid::new(&now.threads, |_, t| t.pid).of(1), None, 1, 1e9);
        let migrations = |switch, wait| {
            figures(&[&windows[0]], 1.0, Available { switch, wait })
                .migrations
                .is_some()
        };
        assert!(migrations(true, false), "counted at switch-in");
        assert!(!migrations(false, false));
    }
}
