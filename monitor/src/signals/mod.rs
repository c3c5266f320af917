//! Signal families. Each module owns its kernel maps, turns raw map contents into domain values
//! at the boundary, and reports whether its kernel sources could be attached.
pub mod block;
pub mod exits;
pub mod numa;
pub mod sched;
pub mod tlb;
pub mod vmms;

use monitor_common::LatencyHist;

use crate::model::histogram::Histogram;

/// A kernel histogram as a domain value.
impl From<&LatencyHist> for Histogram {
    fn from(raw: &LatencyHist) -> Self {
        Self {
            count: raw.count,
            sum_ns: raw.sum_ns,
            max_ns: raw.max_ns,
            buckets: raw.buckets,
        }
    }
}
