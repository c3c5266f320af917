//! A window's metric families and their text exposition, written straight from the series.
//!
//! `/metrics` is rendered once per scraped window and thrown away. Going through the `prometheus`
//! crate's protobuf messages would copy every label name and value of every series into a
//! `LabelPair`, and its encoder would then format each sample through temporary strings: for a
//! window of 100 VMs at `full` that was about half of rendering (profiled). The text, written by
//! [`super::text`], is the crate's `TextEncoder` output byte for byte (tests render the same
//! families both ways); the messages
//! are still built where they are wanted, for the `OpenMetrics` export of a recording and for
//! the metrics reference ([`Exposition::into_proto`]).

use prometheus::proto::MetricFamily;

use super::{histograms, plain};

/// The metric families of one window: counters and gauges by name, then the histograms in the
/// order the presenters gave them (the order the crate's registry and encoder gave them).
#[derive(Default)]
pub struct Exposition {
    pub plain: Vec<plain::Series>,
    pub histograms: Vec<histograms::Family>,
}

impl Exposition {
    /// Appends the text exposition (format 0.0.4) to `out`.
    pub fn write_text(&self, out: &mut String) {
        for series in &self.plain {
            series.write_text(out);
        }
        for family in &self.histograms {
            family.write_text(out);
        }
    }

    /// The families as the `prometheus` crate's messages, in the same order.
    #[must_use]
    pub fn into_proto(self) -> Vec<MetricFamily> {
        self.plain
            .into_iter()
            .map(plain::Series::into_proto)
            .chain(
                self.histograms
                    .into_iter()
                    .map(histograms::Family::into_proto),
            )
            .collect()
    }
}
