//! What kvmtop shows: one snapshot of every VM over a sampling window, independent of how it is
//! presented (TUI, JSON, text, Prometheus). Serialised as-is for `kvmtop snapshot --format json`;
//! the JSON Schema in `monitor/schema/snapshot.schema.json` describes it. Bump
//! [`SCHEMA_VERSION`] on any incompatible change.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::signals::{
    SourceState,
    exits::{ExitSource, Isa},
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub schema_version: u32,
    pub kvmtop_version: String,
    pub host: Host,
    pub window: Window,
    /// Host-wide state of each exit source, and exits lost to a full map.
    pub exits: HostExits,
    pub vms: Vec<Vm>,
    /// Things that went wrong while sampling but did not stop it (a VM vanishing mid-scan, an
    /// unreadable /proc entry, …).
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    /// Start of the window, seconds since the Unix epoch.
    pub start_unix_seconds: f64,
    pub duration_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostExits {
    pub sources: BTreeMap<&'static str, SourceState>,
    /// Exits that could not be counted because the kernel map was full.
    pub dropped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Vm {
    pub pid: u32,
    /// Process start time (clock ticks since boot): with `pid`, identifies this VM across pid reuse.
    pub start_time: u64,
    pub name: String,
    pub uuid: Option<String>,
    /// "qemu" or the executable name of another VMM.
    pub vmm: String,
    pub vcpus: Vec<Vcpu>,
    pub exits: Exits,
}

#[derive(Clone, Debug, Serialize)]
pub struct Vcpu {
    /// vCPU index; null for a thread seen entering `KVM_RUN` whose index is not known yet.
    pub index: Option<u32>,
    /// Thread running the vCPU; null while it is not known.
    pub tid: Option<u32>,
    pub exits: Exits,
}

/// Exit counts over the window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Exits {
    /// State of each exit source for this VM in the window.
    pub sources: BTreeMap<&'static str, SourceState>,
    /// Hardware exits in the window (`kvm_exit`).
    pub total: u64,
    /// Returns to the VMM in the window (userspace exits).
    pub userspace_total: u64,
    /// Sorted by count, largest first.
    pub by_reason: Vec<ReasonCount>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReasonCount {
    pub source: ExitSource,
    pub isa: Option<Isa>,
    pub code: u64,
    pub reason: String,
    /// Events in the window.
    pub count: u64,
    /// Events per second over the window.
    pub rate: f64,
    /// Events since kvmtop started counting this VM (for Prometheus counters).
    #[serde(skip)]
    pub cumulative: u64,
}

impl Exits {
    /// Hardware exits per second, or userspace exits when the host has no hardware exit events.
    #[must_use]
    pub fn rate_of(&self, source: ExitSource) -> f64 {
        // fold from +0.0: an empty f64 sum() is -0.0, which would print as "-0".
        self.by_reason
            .iter()
            .filter(|r| r.source == source)
            .map(|r| r.rate)
            .fold(0.0, |a, b| a + b)
    }
}

/// A fixed snapshot for presenter tests: one busy VM with two vCPUs, one idle VM.
#[cfg(test)]
pub mod fixture {
    use super::*;

    fn reason(
        source: ExitSource,
        isa: Option<Isa>,
        code: u64,
        name: &str,
        count: u64,
    ) -> ReasonCount {
        #[expect(clippy::cast_precision_loss, reason = "small test numbers")]
        let rate = count as f64 / 2.0;
        ReasonCount {
            source,
            isa,
            code,
            reason: name.into(),
            count,
            rate,
            cumulative: count * 10,
        }
    }

    fn exits(by_reason: Vec<ReasonCount>, kvm_exit: SourceState) -> Exits {
        let sum = |s| {
            by_reason
                .iter()
                .filter(|r| r.source == s)
                .map(|r| r.count)
                .sum()
        };
        Exits {
            sources: [("kvm_exit", kvm_exit), ("userspace", SourceState::Live)].into(),
            total: sum(ExitSource::KvmExit),
            userspace_total: sum(ExitSource::Userspace),
            by_reason,
        }
    }

    #[must_use]
    pub fn snapshot() -> Snapshot {
        let vcpu0 = vec![
            reason(
                ExitSource::KvmExit,
                Some(Isa::Vmx),
                30,
                "IO_INSTRUCTION",
                200_000,
            ),
            reason(ExitSource::Userspace, None, 2, "IO", 198_000),
            reason(
                ExitSource::KvmExit,
                Some(Isa::Vmx),
                1,
                "EXTERNAL_INTERRUPT",
                1_500,
            ),
        ];
        let vcpu1 = vec![reason(ExitSource::KvmExit, Some(Isa::Vmx), 12, "HLT", 40)];
        let mut all = vcpu0.clone();
        all.extend(vcpu1.clone());
        all.sort_by_key(|r| std::cmp::Reverse(r.count));
        Snapshot {
            schema_version: SCHEMA_VERSION,
            kvmtop_version: "0.1.0".into(),
            host: Host {
                hostname: "hv1".into(),
                kernel: "6.18.0".into(),
            },
            window: Window {
                start_unix_seconds: 1_700_000_000.0,
                duration_seconds: 2.0,
            },
            exits: HostExits {
                sources: [
                    ("kvm_exit", SourceState::Live),
                    ("userspace", SourceState::Live),
                ]
                .into(),
                dropped: 0,
            },
            vms: vec![
                Vm {
                    pid: 4242,
                    start_time: 123,
                    name: "web-1".into(),
                    uuid: Some("c7a5fdbd-cdaf-9455-926a-d65c16db1809".into()),
                    vmm: "qemu".into(),
                    vcpus: vec![
                        Vcpu {
                            index: Some(0),
                            tid: Some(4250),
                            exits: exits(vcpu0, SourceState::Live),
                        },
                        Vcpu {
                            index: Some(1),
                            tid: Some(4251),
                            exits: exits(vcpu1, SourceState::Live),
                        },
                    ],
                    exits: exits(all, SourceState::Live),
                },
                Vm {
                    pid: 5000,
                    start_time: 456,
                    name: "idle-db".into(),
                    uuid: None,
                    vmm: "qemu".into(),
                    vcpus: vec![Vcpu {
                        index: Some(0),
                        tid: None,
                        exits: Exits::default(),
                    }],
                    exits: exits(vec![], SourceState::Silent),
                },
            ],
            problems: vec![],
        }
    }
}
