//! Counters and gauges assembled directly as metric families, as the histograms are
//! ([`super::histograms`]).
//!
//! An exposition is built once from a window and thrown away. The `prometheus` crate's `*Vec`
//! metrics are made for the opposite: each series gets a descriptor (names checked, label pairs
//! built and hashed), an atomic value and a hash-map entry, all gathered into these same
//! families afterwards and dropped. For a window of 100 VMs at `full` that machinery was about
//! half of rendering `/metrics`. A [`Series`] keeps each series' label values and value, and
//! [`Gathered`] orders families and series as the crate's registry does, so the exposition is
//! the same text; [`super::text`] writes it without the crate's messages.
//!
//! Series are kept in the order they are asked for and sorted once, when written: kept in a
//! sorted map instead, every one of a window's thousands of series moved its neighbours' label
//! values about as it went in.

use compact_str::CompactString;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use smallvec::SmallVec;

use super::text;

/// One counter or gauge metric family being filled.
pub struct Series {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    /// Label names sorted, as the exposition writes them.
    names: Vec<&'static str>,
    /// For each sorted name, its position in the label values callers pass.
    order: Vec<usize>,
    /// Each call's label values, in the order of `names`, and what it did, in call order.
    /// Sorted by label values, the series come out in the registry's order (label by label in
    /// name order).
    updates: Vec<(LabelValues, Update)>,
}

/// What one [`Series::with_label_values`] call did to its series.
#[derive(Clone, Copy)]
enum Update {
    Add(f64),
    Set(f64),
}

/// A series' label values. They order as a `Vec<String>` would; up to four values of up to 24
/// bytes each, most of them, take no heap allocation.
type LabelValues = SmallVec<[CompactString; 4]>;

impl Series {
    /// A counter family; the values callers pass to [`Series::with_label_values`] follow
    /// `labels`.
    #[must_use]
    pub fn counter(name: &'static str, help: &'static str, labels: &[&'static str]) -> Self {
        Self::new(name, help, MetricType::COUNTER, labels)
    }

    /// A gauge family, as [`Series::counter`].
    #[must_use]
    pub fn gauge(name: &'static str, help: &'static str, labels: &[&'static str]) -> Self {
        Self::new(name, help, MetricType::GAUGE, labels)
    }

    fn new(
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        labels: &[&'static str],
    ) -> Self {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|&i| labels[i]);
        Self {
            name,
            help,
            kind,
            names: order.iter().map(|&i| labels[i]).collect(),
            order,
            updates: Vec::new(),
        }
    }

    /// The series with these label values (in the order the family's labels were given),
    /// created at 0 on first use; values for the same labels again reach the same series, so
    /// adding sums them and setting replaces what came before.
    ///
    /// # Panics
    /// When the number of values is not the number of labels: a programming error, as the
    /// crate's `*Vec` metrics treat it.
    pub fn with_label_values(&mut self, values: &[&str]) -> Sample<'_> {
        assert_eq!(
            values.len(),
            self.order.len(),
            "label values of {}",
            self.name
        );
        let key = self
            .order
            .iter()
            .map(|&i| CompactString::new(values[i]))
            .collect();
        self.updates.push((key, Update::Add(0.0)));
        let (_, update) = self.updates.last_mut().expect("just pushed");
        Sample(update)
    }

    /// Each series once, by label values, with the updates made to it applied in call order.
    fn series(&self) -> Vec<(&LabelValues, f64)> {
        let mut order: Vec<usize> = (0..self.updates.len()).collect();
        // Stable: updates to one series stay in call order.
        order.sort_by(|&a, &b| self.updates[a].0.cmp(&self.updates[b].0));
        let mut series: Vec<(&LabelValues, f64)> = Vec::with_capacity(order.len());
        for i in order {
            let (values, update) = &self.updates[i];
            let value = match series.last_mut() {
                Some((last, value)) if *last == values => value,
                _ => {
                    series.push((values, 0.0));
                    &mut series.last_mut().expect("just pushed").1
                }
            };
            match *update {
                Update::Add(n) => *value += n,
                Update::Set(n) => *value = n,
            }
        }
        series
    }

    /// Appends the family's text exposition to `out`, as the crate's `TextEncoder` writes it.
    pub fn write_text(&self, out: &mut String) {
        let kind = if self.kind == MetricType::COUNTER {
            "counter"
        } else {
            "gauge"
        };
        text::write_header(out, self.name, self.help, kind);
        for (values, value) in self.series() {
            text::write_sample(
                out,
                self.name,
                "",
                self.names
                    .iter()
                    .copied()
                    .zip(values.iter().map(CompactString::as_str)),
                None,
                value,
            );
        }
    }

    /// The family as the crate's message.
    #[must_use]
    pub fn into_proto(self) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_owned());
        family.set_help(self.help.to_owned());
        family.set_field_type(self.kind);
        let names = &self.names;
        let kind = self.kind;
        family.set_metric(
            self.series()
                .into_iter()
                .map(|(values, value)| {
                    let mut metric = Metric::from_label(
                        names
                            .iter()
                            .zip(values)
                            .map(|(name, value)| {
                                let mut pair = LabelPair::default();
                                pair.set_name((*name).to_owned());
                                pair.set_value(value.to_string());
                                pair
                            })
                            .collect(),
                    );
                    if kind == MetricType::COUNTER {
                        let mut counter = Counter::default();
                        counter.set_value(value);
                        metric.set_counter(counter);
                    } else {
                        let mut gauge = Gauge::default();
                        gauge.set_value(value);
                        metric.set_gauge(gauge);
                    }
                    metric
                })
                .collect(),
        );
        family
    }
}

/// One call's update to its series: an addition, or a value that replaces what came before.
pub struct Sample<'a>(&'a mut Update);

impl Sample<'_> {
    /// Adds to a counter (or a gauge summed over several parts, e.g. a VM's vCPUs).
    pub fn inc_by(self, value: impl Into<SampleValue>) {
        *self.0 = Update::Add(value.into().0);
    }

    /// Sets a gauge.
    pub fn set(self, value: impl Into<SampleValue>) {
        *self.0 = Update::Set(value.into().0);
    }
}

/// A value as the exposition holds it: every sample is an f64, integers included (exact below
/// 2^53, far above any count kvmtop keeps).
pub struct SampleValue(f64);

macro_rules! sample_values {
    ($($type:ty),+) => {
        $(impl From<$type> for SampleValue {
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn from(value: $type) -> Self {
                Self(value as f64)
            }
        })+
    };
}

sample_values!(u64, i64, f64, u32, i32);

/// The counter and gauge families of an exposition, in the order the crate's registry gathers
/// them: by name.
#[derive(Default)]
pub struct Gathered {
    families: Vec<Series>,
}

impl Gathered {
    /// Adds a family; one without series is left out (the registry leaves those out).
    pub fn add(&mut self, series: Series) {
        if !series.updates.is_empty() {
            self.families.push(series);
        }
    }

    /// The families, sorted by name.
    #[must_use]
    pub fn into_families(mut self) -> Vec<Series> {
        self.families.sort_unstable_by_key(|series| series.name);
        self.families
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder as _, IntCounterVec, Opts, Registry, TextEncoder};

    use super::*;

    fn text(families: &[MetricFamily]) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(families, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The exposition of `series` as written directly, after checking that the crate's encoder
    /// writes the same text from the messages.
    fn written(series: Vec<Series>) -> String {
        let mut direct = String::new();
        for family in &series {
            family.write_text(&mut direct);
        }
        let proto: Vec<MetricFamily> = series.into_iter().map(Series::into_proto).collect();
        assert_eq!(direct, text(&proto));
        direct
    }

    /// The same series through the crate's registry and through [`Gathered`] give the same
    /// exposition: families by name, series by label values in label-name order, labels sorted,
    /// values for the same labels summed, empty families left out, escapes by the encoder.
    #[test]
    fn the_exposition_is_the_registrys() {
        let rows: [(&str, &str, &str, u64); 5] = [
            ("web-2", "20", "b", 3),
            ("web-10", "3", "a", 1),
            ("web-2", "20", "b", 4),
            ("we\"b\n", "7", "c\\", 5),
            ("web-10", "3", "", u64::from(u32::MAX) * 1000),
        ];
        let registry = Registry::new();
        let crate_counter = IntCounterVec::new(
            Opts::new("demo_z_total", "Last by name."),
            &["vm", "pid", "kind"],
        )
        .unwrap();
        let crate_areas =
            IntCounterVec::new(Opts::new("demo_a_total", "First."), &["zone", "area"]).unwrap();
        let crate_empty = IntCounterVec::new(Opts::new("demo_m_total", "Empty."), &["vm"]).unwrap();
        let mut counter = Series::counter("demo_z_total", "Last by name.", &["vm", "pid", "kind"]);
        let mut areas = Series::counter("demo_a_total", "First.", &["zone", "area"]);
        let empty = Series::counter("demo_m_total", "Empty.", &["vm"]);
        for (vm, pid, kind, n) in rows {
            crate_counter.with_label_values(&[vm, pid, kind]).inc_by(n);
            counter.with_label_values(&[vm, pid, kind]).inc_by(n);
            crate_areas.with_label_values(&[kind, vm]).inc_by(n);
            areas.with_label_values(&[kind, vm]).inc_by(n);
        }
        registry.register(Box::new(crate_counter)).unwrap();
        registry.register(Box::new(crate_areas)).unwrap();
        registry.register(Box::new(crate_empty)).unwrap();
        let mut gathered = Gathered::default();
        gathered.add(counter);
        gathered.add(empty);
        gathered.add(areas);
        let expected = text(&registry.gather());
        assert!(expected.contains(r#"demo_z_total{kind="b",pid="20",vm="web-2"} 7"#));
        assert_eq!(written(gathered.into_families()), expected);
    }

    #[test]
    fn updates_to_one_series_apply_in_call_order_whatever_comes_between() {
        let mut gauge = Series::gauge("demo_g", "A gauge.", &["vm"]);
        gauge.with_label_values(&["b"]).inc_by(2);
        gauge.with_label_values(&["a"]).set(1);
        gauge.with_label_values(&["b"]).set(5);
        gauge.with_label_values(&["c"]);
        gauge.with_label_values(&["b"]).inc_by(1.5);
        gauge.with_label_values(&["a"]).inc_by(1);
        let mut gathered = Gathered::default();
        gathered.add(gauge);
        assert_eq!(
            written(gathered.into_families()),
            "# HELP demo_g A gauge.\n# TYPE demo_g gauge\ndemo_g{vm=\"a\"} 2\n\
             demo_g{vm=\"b\"} 6.5\ndemo_g{vm=\"c\"} 0\n"
        );
    }

    #[test]
    fn gauges_are_set_not_added() {
        let mut gauge = Series::gauge("demo_g", "A gauge.", &["vm"]);
        gauge.with_label_values(&["a"]).set(2.5);
        gauge.with_label_values(&["a"]).set(-1_i64);
        let mut gathered = Gathered::default();
        gathered.add(gauge);
        assert_eq!(
            written(gathered.into_families()),
            "# HELP demo_g A gauge.\n# TYPE demo_g gauge\ndemo_g{vm=\"a\"} -1\n"
        );
    }
}
