//! Two readings of the exit totals → the exit figures of a window: per VM and vCPU, counts and
//! rates by source and reason, handling latency, what the exits were about, and where each
//! vCPU's time went.

use foldhash::HashMap;
use std::collections::BTreeMap;

use super::{
    counters::{ExitCounterKey, ExitTotals},
    details::{self, DetailCounterKey},
    reasons::ExitReason,
    sources::{self, KVM_ENTRY, KVM_RUN},
};
use crate::{
    bpf::hooks::{Sources, attached},
    families::{by_pid::ByPid, small_map::inserted},
    family::Pair,
    model::{
        LostEvents,
        self, ExitSource, Exits, Histogram, HostExits, ReasonCount, Snapshot, SourceState, rate,
        running::Running,
    },
};

/// Detail values shown per VM and kind; the rest are summed as "other".
pub const TOP_DETAILS: usize = 5;

/// One counter over the window.
#[derive(Debug)]
struct KeyWindow<'a> {
    key: ExitCounterKey,
    count: u64,
    cumulative: u64,
    /// (window, running) latency histograms, when the source measures one. The running one is
    /// borrowed from the reading: a histogram is half a kilobyte, and a VM's keys are gathered
    /// per vCPU and per VM.
    latency: Option<(Histogram, &'a Histogram)>,
}

/// Fills the exit figures of `snapshot`: each VM's and vCPU's (a VM new in the window counts
/// from zero), and the state of every source.
pub fn fill(pair: &Pair<'_, ExitTotals>, sources: &Sources, snapshot: &mut Snapshot) {
    let mut events: BTreeMap<&'static str, u64> = BTreeMap::new();
    let counts = ByPid::new(&pair.now.counts, |key, _| key.pid);
    let details_now = ByPid::new(&pair.now.details, |key, _| key.pid);
    let details_before = ByPid::new(&pair.before.details, |key, _| key.pid);
    for (span, vm) in pair.vms.iter().zip(&mut snapshot.vms) {
        let before = pair.before_for(span);
        let windows = key_windows(counts.of(span.pid()), pair.now, before);
        for w in &windows {
            *events.entry(w.key.reason.source().as_str()).or_default() += w.count;
            if let Some((latency, _)) = &w.latency {
                let closer = match w.key.reason.source() {
                    ExitSource::KvmExit => Some(KVM_ENTRY),
                    ExitSource::Userspace => Some(KVM_RUN),
                    ExitSource::Halt => None,
                };
                if let Some(closer) = closer {
                    *events.entry(closer).or_default() += latency.count;
                }
            }
        }
        let earlier_details = if before.is_some() {
            details_before.of(span.pid())
        } else {
            &[]
        };
        let details = detail_groups(details_now.of(span.pid()), earlier_details, pair.seconds);
        for group in &details {
            *events
                .entry(sources::detail_source(group.kind))
                .or_default() += group.count;
        }
        fill_vm(vm, &windows, details, pair.seconds, sources);
    }
    snapshot.families.exits = HostExits {
        sources: sources
            .iter()
            .map(|(name, source)| {
                let seen = events.get(name).copied().unwrap_or(0);
                (
                    (*name).to_owned(),
                    SourceState::from_window(&source.attachment, seen),
                )
            })
            .collect(),
        hooks: sources
            .iter()
            .map(|(name, source)| ((*name).to_owned(), source.hook.to_string()))
            .collect(),
        // Filled by the session, which reads what the kernel skipped.
        lost: BTreeMap::new(),
        dropped: LostEvents::between(pair.before.dropped, pair.now.dropped),
    };
}

/// The counters of one VMM process over the window, from its counts in `now` (`mine`).
/// `before` is `None` for a VM that is new in this window (everything counts).
fn key_windows<'a>(
    mine: &[(&ExitCounterKey, &u64)],
    now: &'a ExitTotals,
    before: Option<&ExitTotals>,
) -> Vec<KeyWindow<'a>> {
    mine.iter()
        .map(|&(key, &cumulative)| {
            let earlier = before.and_then(|b| b.counts.get(key)).copied().unwrap_or(0);
            let latency = now.latency.get(key).map(|running| {
                let window = match before.and_then(|b| b.latency.get(key)) {
                    Some(earlier) => running.since(earlier),
                    None => running.clone(),
                };
                (window, running)
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

/// One VM's detail counters over the window, from its counters in the later reading and in the
/// earlier one (none for a VM new in the window).
fn detail_groups(
    now: &[(&DetailCounterKey, &u64)],
    before: &[(&DetailCounterKey, &u64)],
    seconds: f64,
) -> Vec<model::DetailGroup> {
    let mine = |entries: &[(&DetailCounterKey, &u64)]| -> HashMap<DetailCounterKey, u64> {
        entries.iter().map(|&(k, &n)| (*k, n)).collect()
    };
    let running = mine(now);
    let earlier = mine(before);
    let window: HashMap<DetailCounterKey, u64> = running
        .iter()
        .map(|(k, &n)| (*k, n.saturating_sub(earlier.get(k).copied().unwrap_or(0))))
        .collect();
    details::top_details(&window, TOP_DETAILS)
        .into_iter()
        .map(|group| model::DetailGroup {
            kind: group.kind,
            source: format!("kvm:{}", sources::detail_event(group.kind).event),
            value_name: group.kind.value_name(),
            count: group.total,
            rate: rate(group.total, seconds),
            top: group
                .top
                .iter()
                .map(|(key, count)| model::DetailCount {
                    sub: key.sub_label().into_owned(),
                    value: key.value_label(),
                    sub_code: key.sub,
                    number: key.number(),
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

/// Fills a VM's exit figures and its vCPUs' (those discovery knows, then the threads seen in
/// `KVM_RUN` that it could not match to a vCPU).
fn fill_vm(
    vm: &mut model::Vm,
    windows: &[KeyWindow],
    details: Vec<model::DetailGroup>,
    seconds: f64,
    sources: &Sources,
) {
    // A VM has a few vCPUs: looked up in its list rather than in a map built each window.
    let index_of = |tid: u32| {
        vm.vcpus
            .iter()
            .filter(|v| v.tid == Some(tid))
            .filter_map(|v| v.index)
            .next_back()
    };
    // Threads that ran KVM_RUN, by vCPU index where known.
    let mut per_thread: BTreeMap<(Option<u32>, u32), Vec<&KeyWindow>> = BTreeMap::new();
    for entry in windows {
        let index = entry
            .key
            .vcpu_id
            .or_else(|| index_of(entry.key.tid));
        per_thread
            .entry((index, entry.key.tid))
            .or_default()
            .push(entry);
    }
    let known: Vec<(Option<u32>, Option<u32>)> =
        vm.vcpus.iter().map(|v| (v.index, v.tid)).collect();
    for v in &mut vm.vcpus {
        let entries: Vec<&KeyWindow> = per_thread
            .iter()
            .filter(|((index, tid), _)| (index.is_some() && *index == v.index) || Some(*tid) == v.tid)
            .flat_map(|(_, e)| e.iter().copied())
            .collect();
        let tid = v.tid.or_else(|| entries.first().map(|e| e.key.tid));
        *v = vcpu(v.index, tid, &entries, seconds, sources);
    }
    // Threads seen in KVM_RUN that discovery could not match to a vCPU fd.
    for ((index, tid), entries) in &per_thread {
        let matched = known
            .iter()
            .any(|(i, t)| (index.is_some() && i == index) || *t == Some(*tid));
        if !matched {
            vm.vcpus
                .push(vcpu(*index, Some(*tid), entries, seconds, sources));
        }
    }
    let all: Vec<&KeyWindow> = windows.iter().collect();
    let mut exits = exits(&all, seconds, sources);
    exits.details = details;
    vm.families.exits = exits;
}

fn vcpu(
    index: Option<u32>,
    tid: Option<u32>,
    entries: &[&KeyWindow],
    seconds: f64,
    sources: &Sources,
) -> model::Vcpu {
    // A share needs the thread, both ends of the interval, and a window.
    let share = |source: ExitSource, closer: Option<&str>| -> Option<f64> {
        tid?;
        if !attached(sources, source.as_str()) || closer.is_some_and(|c| !attached(sources, c)) {
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
            handling_exits: share(ExitSource::KvmExit, Some(KVM_ENTRY)),
            in_vmm: share(ExitSource::Userspace, Some(KVM_RUN)),
            halted: share(ExitSource::Halt, None),
        },
        sched: None,
    }
}

/// Aggregates counters by reason.
fn exits(entries: &[&KeyWindow], seconds: f64, sources: &Sources) -> Exits {
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
                reason: reason.name(),
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
        sources: inserted(ExitSource::ALL.iter().filter_map(|source| {
            let attached = sources.get(source.as_str())?;
            let events = source_totals.get(source).copied().unwrap_or(0);
            Some((
                source.as_str(),
                SourceState::from_window(&attached.attachment, events),
            ))
        })),
        total: source_totals[&ExitSource::KvmExit],
        userspace_total: source_totals[&ExitSource::Userspace],
        halts: source_totals[&ExitSource::Halt],
        by_reason,
        details: Vec::new(),
    }
}
