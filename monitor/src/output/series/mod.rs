//! The pieces every presenter builds its Prometheus series from: the detail level, label values,
//! units and histograms. Kept apart from [`super::metrics`], which assembles the presenters'
//! series into one exposition, so that presenters and the assembly import in one direction only.

pub mod details;
pub mod exposition;
pub mod histograms;
pub mod plain;
pub mod text;

use crate::model::Vcpu;

/// How much of what kvmtop measures `/metrics` carries, from the fewest series per VM to all of
/// them (`--metrics-detail`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    /// Per-VM series only: per-vCPU families summed over the VM's vCPUs (no `vcpu` label),
    /// latency histograms reduced to their sum and count (block latency keeps a few buckets),
    /// exit details as one counter per kind.
    #[default]
    Vm,
    /// The `vm` level, with the per-vCPU families per vCPU (`vcpu` label).
    Vcpu,
    /// Everything: per-vCPU series, every histogram bucket, and each VM's top exit-detail values
    /// (ports, MSRs, …).
    Full,
}

impl Level {
    #[must_use]
    pub fn per_vcpu(self) -> bool {
        self >= Self::Vcpu
    }

    #[must_use]
    pub fn full(self) -> bool {
        self == Self::Full
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vm => "vm",
            Self::Vcpu => "vcpu",
            Self::Full => "full",
        })
    }
}

/// What one exposition is rendered with: the level, and the exit-detail values kept so far.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub level: Level,
    pub details: &'a details::Kept,
}

/// The label names of a per-vCPU family: `vm`, `pid`, then `vcpu` when the level keeps vCPUs
/// apart, then `rest`. Without `vcpu`, adding every vCPU's value to the same series sums them.
#[must_use]
pub fn vcpu_label_names<'a>(level: Level, rest: &[&'a str]) -> Vec<&'a str> {
    let mut names = vec!["vm", "pid"];
    if level.per_vcpu() {
        names.push("vcpu");
    }
    names.extend_from_slice(rest);
    names
}

/// The label values matching [`vcpu_label_names`].
#[must_use]
pub fn vcpu_label_values<'a>(
    level: Level,
    vm: &'a str,
    pid: &'a str,
    vcpu: &'a str,
    rest: &[&'a str],
) -> Vec<&'a str> {
    let mut values = vec![vm, pid];
    if level.per_vcpu() {
        values.push(vcpu);
    }
    values.extend_from_slice(rest);
    values
}

/// The `vcpu` label: the index, or the thread while the index is not known.
#[must_use]
pub fn vcpu_label(vcpu: &Vcpu) -> String {
    match (vcpu.index, vcpu.tid) {
        (Some(index), _) => index.to_string(),
        (None, Some(tid)) => format!("tid{tid}"),
        (None, None) => "unknown".to_owned(),
    }
}

/// Nanoseconds as the seconds Prometheus keeps.
#[expect(
    clippy::cast_precision_loss,
    reason = "seconds as f64, as Prometheus keeps them"
)]
#[must_use]
pub fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}
