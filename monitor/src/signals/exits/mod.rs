//! VM exits per VMM process, vCPU thread, source and reason.
//!
//! The kernel keeps running totals in a per-CPU hash map; this module sums the CPUs, decodes the
//! raw keys into [`ExitReason`]s and removes the keys of threads that no longer exist.

mod layout;
pub mod reasons;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use monitor_common::{
    ExitKey, KvmExitLayout, UserspaceExitLayout,
    exits::{
        EXIT_COUNTS_MAP, EXIT_DROPS_MAP, GLOBAL_KVM_EXIT_LAYOUT, GLOBAL_USERSPACE_EXIT_LAYOUT,
        PROG_KVM_EXIT, PROG_KVM_USERSPACE_EXIT, VCPU_ID_UNKNOWN,
    },
};
pub use reasons::{ExitReason, ExitSource, Isa};

use super::Attachment;
use crate::{bpf::Kernel, host::tracefs::TraceFs};

/// One exit counter, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExitCounterKey {
    pub pid: u32,
    pub tid: u32,
    /// KVM's vCPU id, when the source records it (`kvm_exit` does, userspace exits do not).
    pub vcpu_id: Option<u32>,
    pub reason: ExitReason,
}

/// Running totals since the programs were attached.
#[derive(Clone, Debug, Default)]
pub struct ExitTotals {
    pub counts: HashMap<ExitCounterKey, u64>,
    /// Exits not counted because the map was full.
    pub dropped: u64,
}

/// What the exit programs need from this kernel, decided before loading.
pub struct ExitsPlan {
    kvm_exit: Result<KvmExitLayout, String>,
    userspace: Result<UserspaceExitLayout, String>,
}

impl ExitsPlan {
    #[must_use]
    pub fn read(tracefs: &TraceFs, proc_root: &Path) -> Self {
        Self {
            kvm_exit: layout::kvm_exit(tracefs, proc_root),
            userspace: layout::userspace_exit(tracefs),
        }
    }

    /// Hands the record layouts to the programs.
    pub fn configure<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) {
        if let Ok(layout) = &self.kvm_exit {
            loader.override_global(GLOBAL_KVM_EXIT_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.userspace {
            loader.override_global(GLOBAL_USERSPACE_EXIT_LAYOUT, layout, true);
        }
    }
}

/// The exit counters of the running kernel programs.
pub struct ExitCounters {
    counts: PerCpuHashMap<MapData, ExitKey, u64>,
    drops: PerCpuArray<MapData, u64>,
    sources: BTreeMap<ExitSource, Attachment>,
}

impl ExitCounters {
    /// Attaches the programs whose tracepoints this kernel has and takes the maps.
    pub fn start(kernel: &mut Kernel, plan: ExitsPlan) -> anyhow::Result<Self> {
        let mut sources = BTreeMap::new();
        for (source, program, ready) in [
            (ExitSource::KvmExit, PROG_KVM_EXIT, plan.kvm_exit.map(drop)),
            (
                ExitSource::Userspace,
                PROG_KVM_USERSPACE_EXIT,
                plan.userspace.map(drop),
            ),
        ] {
            let (system, event) = source.tracepoint().split_once(':').expect("system:event");
            let state = match ready {
                Err(why) => Attachment::Unavailable(why),
                Ok(()) => match kernel.attach_tracepoint(program, system, event) {
                    Ok(()) => Attachment::Attached,
                    Err(why) => Attachment::Unavailable(why),
                },
            };
            if let Attachment::Unavailable(why) = &state {
                log::warn!("exit source {}: unavailable: {why}", source.as_str());
            }
            sources.insert(source, state);
        }
        Ok(Self {
            counts: kernel.take_map(EXIT_COUNTS_MAP)?,
            drops: kernel.take_map(EXIT_DROPS_MAP)?,
            sources,
        })
    }

    #[must_use]
    pub fn sources(&self) -> &BTreeMap<ExitSource, Attachment> {
        &self.sources
    }

    /// Sums every counter over the CPUs. Entries that vanish while we iterate (a concurrent
    /// removal) are skipped.
    pub fn read(&self) -> ExitTotals {
        let mut totals = ExitTotals::default();
        for entry in &self.counts {
            let Ok((raw, per_cpu)) = entry else { continue };
            let Some(key) = decode_key(&raw) else {
                continue;
            };
            let sum: u64 = per_cpu.iter().copied().fold(0, u64::wrapping_add);
            *totals.counts.entry(key).or_default() += sum;
        }
        totals.dropped = self.drops.get(&0, 0).map_or(0, |per_cpu| {
            per_cpu.iter().copied().fold(0, u64::wrapping_add)
        });
        totals
    }

    /// Removes the counters of threads for which `keep(pid, tid)` is false (exited VMs and
    /// threads), so the map holds live state only and a reused pid starts from zero.
    pub fn retain(&mut self, keep: impl Fn(u32, u32) -> bool) {
        let stale: Vec<ExitKey> = self
            .counts
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep(k.tgid, k.tid))
            .collect();
        for key in &stale {
            // Already gone is fine.
            let _ = self.counts.remove(key);
        }
    }
}

/// Raw map key → domain key. Unknown source numbers are dropped here, at the boundary.
fn decode_key(raw: &ExitKey) -> Option<ExitCounterKey> {
    let source = match raw.source {
        s if s == monitor_common::ExitSource::KvmExit as u32 => ExitSource::KvmExit,
        s if s == monitor_common::ExitSource::Userspace as u32 => ExitSource::Userspace,
        _ => return None,
    };
    Some(ExitCounterKey {
        pid: raw.tgid,
        tid: raw.tid,
        vcpu_id: (raw.vcpu_id != VCPU_ID_UNKNOWN).then_some(raw.vcpu_id),
        reason: ExitReason::decode(source, raw.isa, raw.reason),
    })
}
