//! Two samples → one snapshot: counts, rates, latency and details over the window between them.

use crate::model::rate;
use std::{
    collections::{BTreeMap, HashMap},
    time::UNIX_EPOCH,
};

use crate::{
    discovery::{Vmm, VmmKind},
    model::{
        self, Attachment, ExitSource, Exits, Histogram, ReasonCount, Snapshot, SourceState,
        Untrusted,
    },
    session::Sample,
    signals::exits::{DetailCounterKey, ExitCounterKey, ExitReason, ExitTotals, Probe, details},
};

/// Detail values shown per VM and kind; the rest are summed as "other".
pub const TOP_DETAILS: usize = 5;

/// One counter over the window.
#[derive(Clone, Debug)]
struct KeyWindow {
    key: ExitCounterKey,
    count: u64,
    cumulative: u64,
    /// (window, running) latency histograms, when the source measures one.
    latency: Option<(Histogram, Histogram)>,
}

/// Builds the snapshot of the window `[earlier, later]`. VMs are those alive at `later`; a VM
/// that appeared during the window is counted from zero; a reused pid is a new VM.
#[must_use]
pub fn snapshot(
    earlier: &Sample,
    later: &Sample,
    sources: &BTreeMap<Probe, Attachment>,
    host: &model::Host,
) -> Snapshot {
    let seconds = later.at.saturating_duration_since(earlier.at).as_secs_f64();
    let earlier_ids: HashMap<u32, u64> = earlier
        .vmms
        .iter()
        .map(|v| (v.id.pid, v.id.start_time))
        .collect();

    let mut probe_events: BTreeMap<Probe, u64> = BTreeMap::new();
    let vms = later
        .vmms
        .iter()
        .map(|vmm| {
            let same_vm_before = earlier_ids.get(&vmm.id.pid) == Some(&vmm.id.start_time);
            let before = same_vm_before.then_some(&earlier.exits);
            let windows = key_windows(&later.exits, before, vmm.id.pid);
            for w in &windows {
                *probe_events
                    .entry(Probe::Exits(w.key.reason.source()))
                    .or_default() += w.count;
                if let Some((latency, _)) = &w.latency {
                    let closer = match w.key.reason.source() {
                        ExitSource::KvmExit => Some(Probe::KvmEntry),
                        ExitSource::Userspace => Some(Probe::KvmRun),
                        ExitSource::Halt => None,
                    };
                    if let Some(closer) = closer {
                        *probe_events.entry(closer).or_default() += latency.count;
                    }
                }
            }
            let details = detail_groups(&later.exits, before, vmm.id.pid, seconds);
            for group in &details {
                *probe_events.entry(Probe::Detail(group.kind)).or_default() += group.count;
            }
            vm(vmm, &windows, details, seconds, sources)
        })
        .collect();

    let exits = model::HostExits {
        sources: sources
            .iter()
            .map(|(probe, attachment)| {
                let events = probe_events.get(probe).copied().unwrap_or(0);
                (probe.name(), SourceState::from_window(attachment, events))
            })
            .collect(),
        tracepoints: sources
            .keys()
            .map(|probe| (probe.name(), probe.tracepoint()))
            .collect(),
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
        // Filled by `signals::sched::window`, which needs the session's scheduling state.
        sched: model::sched::HostSched::default(),
        // Filled by `signals::tlb::view` and `signals::block::view`.
        tlb: model::tlb::HostTlb::default(),
        block: model::block::HostBlock::default(),
        vms,
        problems: later
            .problems
            .iter()
            .cloned()
            .map(Untrusted::from)
            .collect(),
        skipped_events: BTreeMap::new(),
        // Filled by the advisor, which keeps its own state across windows.
        recommendations: Vec::new(),
        advice_inputs_missing: Vec::new(),
    }
}

/// The counters of one VMM process over the window. `before` is `None` for a VM that is new
/// in this window (everything counts).
fn key_windows(now: &ExitTotals, before: Option<&ExitTotals>, pid: u32) -> Vec<KeyWindow> {
    now.counts
        .iter()
        .filter(|(key, _)| key.pid == pid)
        .map(|(key, &cumulative)| {
            let earlier = before.and_then(|b| b.counts.get(key)).copied().unwrap_or(0);
            let latency = now.latency.get(key).map(|running| {
                let window = match before.and_then(|b| b.latency.get(key)) {
                    Some(earlier) => running.since(earlier),
                    None => running.clone(),
                };
                (window, running.clone())
            });
            KeyWindow {
                key: *key,
                count: cumulative.saturating_sub(earlier),
                cumulative,
                latency,
            }
        })
        .collect()
}

fn detail_groups(
    now: &ExitTotals,
    before: Option<&ExitTotals>,
    pid: u32,
    seconds: f64,
) -> Vec<model::DetailGroup> {
    let mine = |totals: &ExitTotals| -> HashMap<DetailCounterKey, u64> {
        totals
            .details
            .iter()
            .filter(|(k, _)| k.pid == pid)
            .map(|(k, &n)| (*k, n))
            .collect()
    };
    let running = mine(now);
    let earlier = before.map(mine).unwrap_or_default();
    let window: HashMap<DetailCounterKey, u64> = running
        .iter()
        .map(|(k, &n)| (*k, n.saturating_sub(earlier.get(k).copied().unwrap_or(0))))
        .collect();
    details::top_details(&window, TOP_DETAILS)
        .into_iter()
        .map(|group| model::DetailGroup {
            kind: group.kind,
            source: Probe::Detail(group.kind).tracepoint(),
            value_name: group.kind.value_name(),
            count: group.total,
            rate: rate(group.total, seconds),
            top: group
                .top
                .iter()
                .map(|(key, count)| model::DetailCount {
                    sub: key.sub_label().into_owned(),
                    value: key.value_label(),
                    count: *count,
                    rate: rate(*count, seconds),
                })
                .collect(),
            other: group.other,
            cumulative: running
                .iter()
                .filter(|(k, _)| k.kind == group.kind)
                .map(|(_, n)| n)
                .sum(),
        })
        .collect()
}

fn vm(
    vmm: &Vmm,
    windows: &[KeyWindow],
    exit_details: Vec<model::DetailGroup>,
    seconds: f64,
    sources: &BTreeMap<Probe, Attachment>,
) -> model::Vm {
    let tid_to_index: HashMap<u32, u32> = vmm
        .vcpus
        .iter()
        .filter_map(|v| Some((v.tid?, v.index)))
        .collect();
    // Threads that ran KVM_RUN, by vCPU index where known.
    let mut per_thread: BTreeMap<(Option<u32>, u32), Vec<KeyWindow>> = BTreeMap::new();
    for entry in windows {
        let index = entry
            .key
            .vcpu_id
            .or_else(|| tid_to_index.get(&entry.key.tid).copied());
        per_thread
            .entry((index, entry.key.tid))
            .or_default()
            .push(entry.clone());
    }
    let mut vcpus: Vec<model::Vcpu> = vmm
        .vcpus
        .iter()
        .map(|v| {
            let entries: Vec<KeyWindow> = per_thread
                .iter()
                .filter(|((index, tid), _)| *index == Some(v.index) || Some(*tid) == v.tid)
                .flat_map(|(_, e)| e.iter().cloned())
                .collect();
            let tid = v.tid.or_else(|| entries.first().map(|e| e.key.tid));
            vcpu(Some(v.index), tid, &entries, seconds, sources)
        })
        .collect();
    // Threads seen in KVM_RUN that discovery could not match to a vCPU fd.
    for ((index, tid), entries) in &per_thread {
        let known = vmm
            .vcpus
            .iter()
            .any(|v| Some(v.index) == *index || v.tid == Some(*tid));
        if !known {
            vcpus.push(vcpu(*index, Some(*tid), entries, seconds, sources));
        }
    }
    model::Vm {
        pid: vmm.id.pid,
        start_time: vmm.id.start_time,
        name: vmm.name.clone(),
        uuid: vmm.uuid.clone(),
        vmm: match &vmm.kind {
            VmmKind::Qemu => "qemu".into(),
            VmmKind::Other { exe } => exe
                .exact()
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or(exe.exact())
                .into(),
        },
        vcpus,
        exits: exits(windows, seconds, sources),
        exit_details,
        sched: model::sched::VmSched::default(),
        numa: model::sched::VmNuma::default(),
        tlb: model::tlb::VmTlb::default(),
        block: model::block::VmBlock::default(),
    }
}

fn vcpu(
    index: Option<u32>,
    tid: Option<u32>,
    entries: &[KeyWindow],
    seconds: f64,
    sources: &BTreeMap<Probe, Attachment>,
) -> model::Vcpu {
    let attached = |probe| matches!(sources.get(&probe), Some(Attachment::Attached));
    // A share needs the thread, both ends of the interval, and a window.
    let share = |source: ExitSource, closer: Option<Probe>| -> Option<f64> {
        tid?;
        if !attached(Probe::Exits(source)) || closer.is_some_and(|c| !attached(c)) {
            return None;
        }
        if seconds <= 0.0 {
            return None;
        }
        // No counter of this source for the thread (e.g. kvm_exit silent on this host): unknown,
        // not zero.
        let mut of_source = entries
            .iter()
            .filter(|e| e.key.reason.source() == source)
            .peekable();
        of_source.peek()?;
        let ns: u64 = of_source
            .filter_map(|e| e.latency.as_ref().map(|(w, _)| w.sum_ns))
            .sum();
        #[expect(
            clippy::cast_precision_loss,
            reason = "nanoseconds in a window, < 2^52"
        )]
        Some((ns as f64 / (seconds * 1e9)).clamp(0.0, 1.0))
    };
    model::Vcpu {
        index,
        tid,
        exits: exits(entries, seconds, sources),
        time: model::VcpuTime {
            handling_exits: share(ExitSource::KvmExit, Some(Probe::KvmEntry)),
            in_vmm: share(ExitSource::Userspace, Some(Probe::KvmRun)),
            halted: share(ExitSource::Halt, None),
        },
        sched: None,
    }
}

/// Aggregates counters by reason.
fn exits(entries: &[KeyWindow], seconds: f64, sources: &BTreeMap<Probe, Attachment>) -> Exits {
    #[derive(Default)]
    struct Sum {
        count: u64,
        cumulative: u64,
        latency: Option<(Histogram, Histogram)>,
    }
    let mut by_reason: BTreeMap<ExitReason, Sum> = BTreeMap::new();
    for entry in entries {
        let slot = by_reason.entry(entry.key.reason).or_default();
        slot.count += entry.count;
        slot.cumulative += entry.cumulative;
        if let Some((window, running)) = &entry.latency {
            let (w, r) = slot.latency.get_or_insert_with(Default::default);
            w.merge(window);
            r.merge(running);
        }
    }
    let per_source = |source: ExitSource| -> u64 {
        by_reason
            .iter()
            .filter(|(r, _)| r.source() == source)
            .map(|(_, s)| s.count)
            .sum()
    };
    let source_totals: BTreeMap<ExitSource, u64> =
        ExitSource::ALL.map(|s| (s, per_source(s))).into();
    let mut by_reason: Vec<ReasonCount> = by_reason
        .into_iter()
        .map(|(reason, sum)| {
            let of_source = source_totals.get(&reason.source()).copied().unwrap_or(0);
            #[expect(clippy::cast_precision_loss, reason = "event counts far below 2^52")]
            let share = if of_source > 0 {
                sum.count as f64 / of_source as f64
            } else {
                0.0
            };
            ReasonCount {
                source: reason.source(),
                isa: reason.isa(),
                code: reason.code(),
                reason: reason.name().into_owned(),
                count: sum.count,
                rate: rate(sum.count, seconds),
                cumulative: sum.cumulative,
                share,
                latency: sum.latency.as_ref().and_then(|(w, _)| w.summary()),
                latency_meaning: reason.source().latency_meaning(),
                cumulative_latency: sum.latency.map(|(_, r)| r),
            }
        })
        .collect();
    by_reason.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    Exits {
        sources: ExitSource::ALL
            .iter()
            .filter_map(|source| {
                let attachment = sources.get(&Probe::Exits(*source))?;
                let events = source_totals.get(source).copied().unwrap_or(0);
                Some((
                    source.as_str(),
                    SourceState::from_window(attachment, events),
                ))
            })
            .collect(),
        total: source_totals[&ExitSource::KvmExit],
        userspace_total: source_totals[&ExitSource::Userspace],
        halts: source_totals[&ExitSource::Halt],
        by_reason,
    }
}
