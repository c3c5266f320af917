//! The figures of the NUMA sources other than the fault hook: the procfs fallback's readings of
//! a VM and the placement decisions about its threads.

use std::collections::{BTreeMap, HashMap};

use super::{
    balancing::VmBalancing,
    counters::{MoveKind, NumaMoveId},
};
use crate::{
    discovery,
    host::proc::numa_sched::ThreadNumaStats,
    model::numa::{BalancingFigures, NodeFaultWeight, NodeMoves, PlacementDecisions, VcpuBalancing},
};

/// A VM's figures from its latest procfs readings; `vcpus` maps its vCPU threads.
#[must_use]
pub fn balancing(reading: &VmBalancing, vcpus: &[discovery::Vcpu]) -> BalancingFigures {
    let threads = &reading.latest.threads;
    let mut by_node: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for stats in threads.values() {
        for (&node, weights) in &stats.by_node {
            let (private, shared) = by_node.entry(node).or_default();
            *private = private.saturating_add(weights.task_private);
            *shared = shared.saturating_add(weights.task_shared);
        }
    }
    let all = by_node
        .values()
        .fold(0u64, |a, (p, s)| a.saturating_add(*p).saturating_add(*s));
    #[expect(clippy::cast_precision_loss, reason = "ratios of page counts")]
    let share = |part: u64| if all > 0 { part as f64 / all as f64 } else { 0.0 };
    let (remote, judged) = threads
        .values()
        .filter_map(remote_and_total)
        .fold((0u64, 0u64), |(r, t), (r1, t1)| {
            (r.saturating_add(r1), t.saturating_add(t1))
        });
    let span = reading.span.map(|s| s.as_secs_f64());
    let migrated = reading.migrated();
    #[expect(clippy::cast_precision_loss, reason = "page counts far below 2^52")]
    let per_s = migrated
        .zip(span)
        .and_then(|(pages, s)| (s > 0.0).then(|| pages as f64 / s));
    BalancingFigures {
        migrated_pages: migrated,
        migrated_pages_per_s: per_s,
        scan_passes: reading.scan_passes,
        span_seconds: span,
        age_seconds: reading.latest.at.elapsed().as_secs_f64(),
        recent_faults_by_node: by_node
            .into_iter()
            .map(|(node, (private, shared))| NodeFaultWeight {
                node,
                private,
                shared,
                share: share(private.saturating_add(shared)),
            })
            .collect(),
        recent_remote_share: ratio(remote, judged),
        vcpus: vcpus
            .iter()
            .filter_map(|vcpu| {
                let tid = vcpu.tid?;
                let stats = threads.get(&tid)?;
                Some(VcpuBalancing {
                    index: vcpu.index,
                    tid,
                    current_node: stats.current_node,
                    preferred_node: stats.preferred_node,
                    migrated_pages: reading
                        .migrated_by_thread
                        .as_ref()
                        .and_then(|m| m.get(&tid).copied()),
                    recent_remote_share: remote_and_total(stats).and_then(|(r, t)| ratio(r, t)),
                })
            })
            .collect(),
        migrated_pages_cumulative: reading.migrated_cumulative,
    }
}

/// A thread's recent faults on memory of other nodes than the one it runs on, and all of them;
/// `None` when its node is not known.
fn remote_and_total(stats: &ThreadNumaStats) -> Option<(u64, u64)> {
    let here = stats.current_node?;
    Some(
        stats
            .by_node
            .iter()
            .fold((0u64, 0u64), |(remote, all), (&node, w)| {
                let faults = w.task();
                let remote = if node == here {
                    remote
                } else {
                    remote.saturating_add(faults)
                };
                (remote, all.saturating_add(faults))
            }),
    )
}

#[expect(clippy::cast_precision_loss, reason = "ratios of page counts")]
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

type Moves = HashMap<NumaMoveId, u64>;

/// The placement decisions about a VM between two readings, from its counters in the later one
/// (`mine`) and the earlier one (`None` for a VM new in the window), and since counting began.
#[must_use]
pub fn placement(mine: &[(&NumaMoveId, &u64)], before: Option<&Moves>) -> PlacementDecisions {
    let mut figures = PlacementDecisions::default();
    let mut by_node: BTreeMap<(MoveKind, Option<u32>, Option<u32>), u64> = BTreeMap::new();
    for &(id, &count) in mine {
        let was = before.and_then(|b| b.get(id)).copied().unwrap_or(0);
        let window = count.saturating_sub(was);
        let (slot, total) = match id.kind {
            MoveKind::Move => (&mut figures.moves, 0),
            MoveKind::Swap => (&mut figures.swaps, 1),
            MoveKind::Stick => (&mut figures.stuck, 2),
        };
        *slot = slot.saturating_add(window);
        figures.cumulative[total] = figures.cumulative[total].saturating_add(count);
        if window > 0 {
            *by_node
                .entry((id.kind, id.from_node, id.to_node))
                .or_default() += window;
        }
    }
    let mut by_node: Vec<NodeMoves> = by_node
        .into_iter()
        .map(|((kind, from_node, to_node), count)| NodeMoves {
            kind: kind.name(),
            from_node,
            to_node,
            count,
        })
        .collect();
    by_node.sort_by_key(|m| std::cmp::Reverse(m.count));
    figures.by_node = by_node;
    figures
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::*;
    use crate::{
        discovery::{ThreadRole, Vmm, VmmId, VmmKind, VmmThread},
        families::{by_pid::ByPid, numa::BalancingReader},
    };

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/numa/sched")
            .join(name)
    }

    /// The fixture VM: pid 4242, vCPU 0 on tid 4250, vCPU 1 on 4251, an iothread.
    fn vmm() -> Vmm {
        let thread = |tid, role| VmmThread {
            tid,
            comm: String::new().into(),
            role,
        };
        Vmm {
            id: VmmId {
                pid: 4242,
                start_time: 9,
            },
            kind: VmmKind::Qemu,
            name: "web-1".into(),
            uuid: None,
            comm: "qemu-system-x86".into(),
            qemu: None,
            vcpus: (0..2)
                .map(|index| discovery::Vcpu {
                    index,
                    fd: 20 + index,
                    tid: Some(4250 + index),
                    tid_source: None,
                })
                .collect(),
            threads: vec![
                thread(4242, ThreadRole::Main),
                thread(4250, ThreadRole::Vcpu(0)),
                thread(4251, ThreadRole::Vcpu(1)),
                thread(4260, ThreadRole::IoThread("iothread0".into())),
            ],
        }
    }

    #[test]
    fn two_readings_of_a_vm_on_a_two_node_host() {
        let vmm = vmm();
        // A zero period: every pass reads again.
        let mut reader = BalancingReader::new(Duration::ZERO, 256);
        assert_eq!(reader.refresh(&fixture("two-node"), std::slice::from_ref(&vmm)), 4);
        let first = balancing(&reader.readings()[&4242], &vmm.vcpus);
        assert_eq!(first.migrated_pages, None, "one reading has no span");
        assert_eq!(first.span_seconds, None);
        // Recent faults by memory node, all threads: node 0 2+40+100, node 1 4+820+500.
        let node = |f: &BalancingFigures, n: usize| (f.recent_faults_by_node[n].node, f.recent_faults_by_node[n].private + f.recent_faults_by_node[n].shared);
        assert_eq!(node(&first, 0), (0, 142));
        assert_eq!(node(&first, 1), (1, 1324));
        // Off the running thread's node: main (node 0) 4, vCPU 0 (node 1) 40, vCPU 1 (node 0) 500.
        let share = first.recent_remote_share.unwrap();
        assert!((share - 544.0 / 1466.0).abs() < 1e-9, "{share}");
        let vcpu1 = first.vcpus[1];
        assert_eq!((vcpu1.index, vcpu1.tid), (1, 4251));
        assert_eq!((vcpu1.current_node, vcpu1.preferred_node), (Some(0), Some(1)));
        assert!((vcpu1.recent_remote_share.unwrap() - 500.0 / 600.0).abs() < 1e-9);
        assert_eq!(first.vcpus[0].recent_remote_share, Some(40.0 / 860.0));

        std::thread::sleep(Duration::from_millis(20));
        reader.refresh(&fixture("two-node-later"), std::slice::from_ref(&vmm));
        let later = &reader.readings()[&4242];
        let second = balancing(later, &vmm.vcpus);
        assert_eq!(second.migrated_pages, Some(512 + 1536));
        assert_eq!(second.migrated_pages_cumulative, 2048);
        assert_eq!(second.scan_passes, Some(1));
        assert!(second.span_seconds.unwrap() >= 0.02);
        assert!(second.migrated_pages_per_s.unwrap() > 0.0);
        assert_eq!(second.vcpus[0].migrated_pages, Some(512));
        assert_eq!(second.vcpus[1].migrated_pages, Some(1536));
        assert!(later.active());
        assert_eq!(reader.statistics(), crate::families::numa::Statistics::Present);
        // Read again unchanged: nothing migrated, no scan pass, no figure moved.
        reader.refresh(&fixture("two-node-later"), std::slice::from_ref(&vmm));
        let still = &reader.readings()[&4242];
        assert!(!still.active(), "{still:?}");
        assert_eq!(still.migrated(), Some(0));
        assert_eq!(still.migrated_cumulative, 2048);
    }

    #[test]
    fn a_vm_is_read_once_per_period_and_a_pass_keeps_to_its_budget() {
        let mut a = vmm();
        let mut b = vmm();
        a.id.pid = 4242;
        b.id.pid = 4243;
        let vmms = [a, b];
        // Budget for one VM a pass: the second waits for the next pass.
        let mut reader = BalancingReader::new(Duration::from_hours(1), 4);
        assert_eq!(reader.refresh(&fixture("two-node"), &vmms), 4);
        assert_eq!(reader.refresh(&fixture("two-node"), &vmms), 4);
        // Both read within the hour: nothing is due.
        assert_eq!(reader.refresh(&fixture("two-node"), &vmms), 0);
        // pid 4243 has no files in the fixture: read, but without threads.
        let readings = reader.readings();
        assert_eq!(readings.len(), 2);
        assert!(readings[&4243].latest.threads.is_empty());
        // A VM that has gone is forgotten.
        reader.refresh(&fixture("two-node"), &vmms[..1]);
        assert_eq!(reader.readings().len(), 1);
    }

    /// While `kernel.numa_balancing` is 0 a reading lasts several periods;
    /// switched on, the period is back at the next pass.
    #[test]
    fn a_vm_is_read_less_often_while_numa_balancing_is_off() {
        let proc = tempfile::tempdir().unwrap();
        for tid in [4242, 4250] {
            let dir = proc.path().join(format!("4242/task/{tid}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(fixture("two-node").join(format!("4242/task/{tid}/sched")), dir.join("sched")).unwrap();
        }
        let sysctl = proc.path().join("sys/kernel/numa_balancing");
        std::fs::create_dir_all(sysctl.parent().unwrap()).unwrap();
        std::fs::write(&sysctl, "0\n").unwrap();
        let period = Duration::from_secs(1);
        let mut reader = BalancingReader::new(period, 256);
        let vmms = [vmm()];
        assert_eq!(reader.refresh(proc.path(), &vmms), 4, "a VM never read is read");
        std::thread::sleep(period + Duration::from_millis(50));
        assert_eq!(reader.refresh(proc.path(), &vmms), 0, "off: not due after one period");
        std::fs::write(&sysctl, "1\n").unwrap();
        assert_eq!(reader.refresh(proc.path(), &vmms), 4, "on: due after one period");
    }

    #[test]
    fn a_kernel_without_numa_balancing_is_told_apart() {
        let proc = tempfile::tempdir().unwrap();
        let dir = proc.path().join("4242/task/4250");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture("no-numa-balancing"), dir.join("sched")).unwrap();
        let mut reader = BalancingReader::default();
        reader.refresh(proc.path(), &[vmm()]);
        assert_eq!(reader.statistics(), crate::families::numa::Statistics::Absent);
        assert!(!reader.readings()[&4242].active());
    }

    #[test]
    fn placement_decisions_over_the_window() {
        let id = |kind, from, to| NumaMoveId {
            pid: 7,
            kind,
            from_node: from,
            to_node: to,
        };
        let before: Moves = [(id(MoveKind::Move, Some(0), Some(1)), 2)].into();
        let mut now = before.clone();
        now.insert(id(MoveKind::Move, Some(0), Some(1)), 5);
        now.insert(id(MoveKind::Swap, Some(1), Some(0)), 1);
        now.insert(id(MoveKind::Stick, Some(0), None), 4);
        now.insert(
            NumaMoveId {
                pid: 8,
                ..id(MoveKind::Move, Some(1), Some(0))
            },
            9,
        );
        let mine = ByPid::new(&now, |id, _| id.pid);
        let p = placement(mine.of(7), Some(&before));
        assert_eq!((p.moves, p.swaps, p.stuck), (3, 1, 4));
        assert_eq!(p.cumulative, [5, 1, 4]);
        assert_eq!(p.by_node.len(), 3);
        assert_eq!(
            p.by_node[0],
            NodeMoves {
                kind: "stick",
                from_node: Some(0),
                to_node: None,
                count: 4
            }
        );
        let fresh = placement(mine.of(7), None);
        assert_eq!(fresh.moves, 5, "a VM new in the window counts from zero");
    }

    #[test]
    fn a_window_with_the_hook_refused_shows_the_fallback_and_why() {
        use crate::{
            bpf::hooks::{Hook, Source, Sources},
            family::{Pair, VmSpan},
            families::numa::{NumaTotals, window},
            model::{Attachment, SourceState, numa::FaultSource},
        };
        let vmm = vmm();
        let mut reader = BalancingReader::new(Duration::ZERO, 256);
        reader.refresh(&fixture("two-node"), std::slice::from_ref(&vmm));
        let before = NumaTotals {
            balancing: reader.readings(),
            statistics: reader.statistics(),
            ..NumaTotals::default()
        };
        reader.refresh(&fixture("two-node-later"), std::slice::from_ref(&vmm));
        let moved = NumaMoveId {
            pid: 4242,
            kind: MoveKind::Move,
            from_node: Some(0),
            to_node: Some(1),
        };
        let now = NumaTotals {
            balancing: reader.readings(),
            statistics: reader.statistics(),
            moves: [(moved, 3)].into(),
            ..NumaTotals::default()
        };
        let why = "fentry on task_numa_fault rejected: Operation not permitted";
        let mut sources = Sources::new();
        sources.insert(
            "numa_fault",
            Source {
                attachment: Attachment::Unavailable(why.into()),
                hook: Hook::Fentry("task_numa_fault"),
                program: "task_numa_fault_fentry",
            },
        );
        sources.insert(
            "sched_move_numa",
            Source {
                attachment: Attachment::Attached,
                hook: Hook::tracepoint("sched", "sched_move_numa"),
                program: "sched_move_numa",
            },
        );
        let mut snapshot = crate::testing::fixture::snapshot();
        snapshot.vms.truncate(1);
        let spans = [VmSpan {
            vmm: &vmm,
            new: false,
        }];
        let pair = Pair {
            now: &now,
            before: &before,
            vms: &spans,
            seconds: 2.0,
        };
        window::fill(&pair, &sources, &mut snapshot);
        let host = &snapshot.families.numa;
        assert_eq!(host.fault_source, FaultSource::ProcfsFallback);
        assert_eq!(
            host.sources["numa_fault"],
            SourceState::Unavailable(why.into())
        );
        assert_eq!(host.sources["numa_fault_procfs"], SourceState::Live);
        assert_eq!(host.sources["sched_move_numa"], SourceState::Live);
        assert_eq!(
            host.hooks["numa_fault_procfs"],
            "procfs:/proc/PID/task/TID/sched"
        );
        let vm = &snapshot.vms[0].families.numa;
        assert_eq!(vm.faults, None, "no hook, no hook figures");
        let balancing = vm.balancing.as_ref().unwrap();
        assert_eq!(balancing.migrated_pages, Some(2048));
        assert_eq!(balancing.vcpus.len(), 2);
        let placement = vm.placement.as_ref().unwrap();
        assert_eq!((placement.moves, placement.swaps, placement.stuck), (3, 0, 0));
    }
}
