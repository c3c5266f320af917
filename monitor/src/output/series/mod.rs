//! The pieces every presenter builds its Prometheus series from: label values, units and
//! histograms. Kept apart from [`super::metrics`], which assembles the presenters' series into
//! one exposition, so that presenters and the assembly import in one direction only.

pub mod histograms;

use crate::model::Vcpu;

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
