//! Two samples → one snapshot: counts and rates over the window between them.

use std::{
    collections::{BTreeMap, HashMap},
    time::UNIX_EPOCH,
};

use crate::{
    discovery::{Vmm, VmmKind},
    model::{self, Exits, ReasonCount, Snapshot},
    session::Sample,
    signals::{
        Attachment, SourceState,
        exits::{ExitCounterKey, ExitReason, ExitSource},
    },
};

/// A counter's key, its increase over the window, and its running total.
type Delta = (ExitCounterKey, u64, u64);

/// Builds the snapshot of the window `[earlier, later]`. VMs are those alive at `later`; a VM
/// that appeared during the window is counted from zero; a reused pid is a new VM.
#[must_use]
pub fn snapshot(
    earlier: &Sample,
    later: &Sample,
    sources: &BTreeMap<ExitSource, Attachment>,
    host: &model::Host,
) -> Snapshot {
    let seconds = later.at.saturating_duration_since(earlier.at).as_secs_f64();
    let earlier_ids: HashMap<u32, u64> = earlier
        .vmms
        .iter()
        .map(|v| (v.id.pid, v.id.start_time))
        .collect();

    let mut host_events: BTreeMap<ExitSource, u64> = BTreeMap::new();
    let vms = later
        .vmms
        .iter()
        .map(|vmm| {
            let same_vm_before = earlier_ids.get(&vmm.id.pid) == Some(&vmm.id.start_time);
            let deltas: Vec<Delta> = later
                .exits
                .counts
                .iter()
                .filter(|(key, _)| key.pid == vmm.id.pid)
                .map(|(key, &now)| {
                    let before = if same_vm_before {
                        earlier.exits.counts.get(key).copied().unwrap_or(0)
                    } else {
                        0
                    };
                    (*key, now.saturating_sub(before), now)
                })
                .collect();
            for (key, delta, _) in &deltas {
                *host_events.entry(key.reason.source()).or_default() += delta;
            }
            vm(vmm, &deltas, seconds, sources)
        })
        .collect();

    let exits = model::HostExits {
        sources: source_states(sources, |s| host_events.get(&s).copied().unwrap_or(0)),
        dropped: later.exits.dropped,
    };
    Snapshot {
        schema_version: model::SCHEMA_VERSION,
        kvmtop_version: env!("CARGO_PKG_VERSION").to_owned(),
        host: host.clone(),
        window: model::Window {
            start_unix_seconds: earlier
                .wall
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            duration_seconds: seconds,
        },
        exits,
        vms,
        problems: later.problems.clone(),
    }
}

fn vm(
    vmm: &Vmm,
    deltas: &[Delta],
    seconds: f64,
    sources: &BTreeMap<ExitSource, Attachment>,
) -> model::Vm {
    let tid_to_index: HashMap<u32, u32> = vmm
        .vcpus
        .iter()
        .filter_map(|v| Some((v.tid?, v.index)))
        .collect();
    // Threads that ran KVM_RUN, by vCPU index where known.
    let mut per_thread: BTreeMap<(Option<u32>, u32), Vec<Delta>> = BTreeMap::new();
    for entry in deltas {
        let index = entry
            .0
            .vcpu_id
            .or_else(|| tid_to_index.get(&entry.0.tid).copied());
        per_thread
            .entry((index, entry.0.tid))
            .or_default()
            .push(*entry);
    }
    let mut vcpus: Vec<model::Vcpu> = vmm
        .vcpus
        .iter()
        .map(|v| {
            let entries: Vec<_> = per_thread
                .iter()
                .filter(|((index, tid), _)| *index == Some(v.index) || Some(*tid) == v.tid)
                .flat_map(|(_, e)| e.iter().copied())
                .collect();
            let tid = v.tid.or_else(|| entries.first().map(|e| e.0.tid));
            model::Vcpu {
                index: Some(v.index),
                tid,
                exits: exits(&entries, seconds, sources),
            }
        })
        .collect();
    // Threads seen in KVM_RUN that discovery could not match to a vCPU fd.
    for ((index, tid), entries) in &per_thread {
        let known = vmm
            .vcpus
            .iter()
            .any(|v| Some(v.index) == *index || v.tid == Some(*tid));
        if !known {
            vcpus.push(model::Vcpu {
                index: *index,
                tid: Some(*tid),
                exits: exits(entries, seconds, sources),
            });
        }
    }
    model::Vm {
        pid: vmm.id.pid,
        start_time: vmm.id.start_time,
        name: vmm.name.clone(),
        uuid: vmm.uuid.clone(),
        vmm: match &vmm.kind {
            VmmKind::Qemu => "qemu".to_owned(),
            VmmKind::Other { exe } => exe
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or(exe)
                .to_owned(),
        },
        vcpus,
        exits: exits(deltas, seconds, sources),
    }
}

/// Aggregates counter deltas by reason.
fn exits(entries: &[Delta], seconds: f64, sources: &BTreeMap<ExitSource, Attachment>) -> Exits {
    let mut by_reason: BTreeMap<ExitReason, (u64, u64)> = BTreeMap::new();
    for (key, delta, cumulative) in entries {
        let slot = by_reason.entry(key.reason).or_default();
        slot.0 += delta;
        slot.1 += cumulative;
    }
    let mut by_reason: Vec<ReasonCount> = by_reason
        .into_iter()
        .map(|(reason, (count, cumulative))| ReasonCount {
            source: reason.source(),
            isa: reason.isa(),
            code: reason.code(),
            reason: reason.name().into_owned(),
            count,
            rate: rate(count, seconds),
            cumulative,
        })
        .collect();
    by_reason.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    let events = |source| {
        by_reason
            .iter()
            .filter(|r| r.source == source)
            .map(|r| r.count)
            .sum()
    };
    Exits {
        sources: source_states(sources, events),
        total: events(ExitSource::KvmExit),
        userspace_total: events(ExitSource::Userspace),
        by_reason,
    }
}

fn source_states(
    sources: &BTreeMap<ExitSource, Attachment>,
    events: impl Fn(ExitSource) -> u64,
) -> BTreeMap<&'static str, SourceState> {
    sources
        .iter()
        .map(|(source, attachment)| {
            (
                source.as_str(),
                SourceState::from_window(attachment, events(*source)),
            )
        })
        .collect()
}

#[expect(
    clippy::cast_precision_loss,
    reason = "event counts stay far below 2^52"
)]
fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
