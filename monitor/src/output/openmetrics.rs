//! A recording's windows in the `OpenMetrics` text format, for
//! `promtool tsdb create-blocks-from openmetrics`.
//!
//! The metric families are those `/metrics` serves, from the same [`Exporter`]: names, types,
//! help and labels are the same, so the dashboards and recording rules work on an imported
//! incident unchanged. Only the encoding differs (the `prometheus` crate encodes the 0.0.4 text
//! format and protobuf, not `OpenMetrics`): each sample carries its window's end time in seconds,
//! a counter's family is named without the `_total` its samples keep, and the text ends with
//! `# EOF`.
//!
//! Scraped series carry the target's `instance` and `job` labels, which the dashboards choose a
//! host by and the recording rules join on; the export gives every sample `instance`, the
//! recorded host's name, and `job="kvmtop"`, as `dashboards/prometheus.yml` names the job. The
//! host's name alone (no port) keeps the imported series apart from the host's live ones.
//!
//! `OpenMetrics` wants each family in one block, so the samples of every window are grouped by
//! family. They are spooled, one unnamed temporary file per family, as the windows are read, and
//! copied out family by family at the end: one pass over the recording, memory bounded by one
//! window's families and a write buffer per family, and temporary disk as large as the output.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufWriter, Seek as _, Write},
};

use prometheus::proto::{Metric, MetricType};

use crate::{model::Snapshot, output::metrics::Exporter};

/// The `job` label of every exported sample, as `dashboards/prometheus.yml` names the job.
pub const JOB: &str = "kvmtop";

/// Writes the windows of a recording as one `OpenMetrics` exposition.
pub struct Writer {
    exporter: Exporter,
    /// Every family seen, in the order first seen.
    families: Vec<Spooled>,
    by_name: HashMap<String, usize>,
    /// The end of the last window written (unix ns): samples of a series must go forward.
    last_ns: Option<u64>,
}

/// A family's metadata and its samples so far.
struct Spooled {
    name: String,
    help: String,
    kind: MetricType,
    samples: BufWriter<File>,
}

impl Writer {
    #[must_use]
    pub fn new(exporter: Exporter) -> Self {
        Self {
            exporter,
            families: Vec::new(),
            by_name: HashMap::new(),
            last_ns: None,
        }
    }

    /// Adds the samples of the window that ended at `end_ns` (unix ns). Windows must come in
    /// order; a window that does not end after the last one written (the clock stepped back) is
    /// left out, since Prometheus takes no sample out of order: returns whether it was written.
    pub fn window(&mut self, snapshot: &Snapshot, end_ns: u64) -> anyhow::Result<bool> {
        if self
            .last_ns
            .is_some_and(|last| end_ns / 1_000_000 <= last / 1_000_000)
        {
            return Ok(false);
        }
        self.last_ns = Some(end_ns);
        let timestamp = seconds(end_ns);
        let target = [("instance", snapshot.host.hostname.as_str()), ("job", JOB)];
        for family in self.exporter.window_families(snapshot)? {
            let index = if let Some(&index) = self.by_name.get(family.name()) {
                index
            } else {
                self.families.push(Spooled {
                    name: family.name().to_owned(),
                    help: family.help().to_owned(),
                    kind: family.get_field_type(),
                    samples: BufWriter::new(tempfile::tempfile()?),
                });
                self.by_name
                    .insert(family.name().to_owned(), self.families.len() - 1);
                self.families.len() - 1
            };
            let spooled = &mut self.families[index];
            for metric in family.get_metric() {
                write_samples(
                    &mut spooled.samples,
                    &spooled.name,
                    spooled.kind,
                    metric,
                    &target,
                    &timestamp,
                )?;
            }
        }
        Ok(true)
    }

    /// Counts a window that comes before the exported range without writing it, so the
    /// detail-value counters (summed by the exporter, not recorded) go on from where they were
    /// and the export of a range has the values the export of the whole recording has there.
    pub fn skip(&mut self, snapshot: &Snapshot) {
        self.exporter.observe(snapshot);
    }

    /// Writes every family, each in one block, and `# EOF`.
    pub fn finish(self, out: &mut dyn Write) -> io::Result<()> {
        for spooled in self.families {
            write_metadata(out, &spooled.name, &spooled.help, spooled.kind)?;
            let mut file = spooled
                .samples
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?;
            file.rewind()?;
            io::copy(&mut file, out)?;
        }
        out.write_all(b"# EOF\n")
    }
}

/// The `OpenMetrics` name of a family and its type. A counter's family is named without `_total`
/// (its samples keep it, so the series are named as on `/metrics`); a counter whose name lacks
/// `_total` would have its series renamed, so it is left untyped (`unknown`) instead.
fn family_name_and_type(name: &str, kind: MetricType) -> (&str, &'static str) {
    match kind {
        MetricType::COUNTER => match name.strip_suffix("_total") {
            Some(family) => (family, "counter"),
            None => (name, "unknown"),
        },
        MetricType::GAUGE => (name, "gauge"),
        MetricType::HISTOGRAM => (name, "histogram"),
        MetricType::SUMMARY => (name, "summary"),
        MetricType::UNTYPED => (name, "unknown"),
    }
}

fn write_metadata(out: &mut dyn Write, name: &str, help: &str, kind: MetricType) -> io::Result<()> {
    let (family, kind) = family_name_and_type(name, kind);
    writeln!(out, "# TYPE {family} {kind}")?;
    if !help.is_empty() {
        writeln!(out, "# HELP {family} {}", escape(help))?;
    }
    Ok(())
}

/// The samples of one metric of family `name`, with the `target` labels, at `timestamp`.
fn write_samples(
    out: &mut dyn Write,
    name: &str,
    kind: MetricType,
    metric: &Metric,
    target: &[(&str, &str)],
    timestamp: &str,
) -> io::Result<()> {
    let mut sample = |suffix: &str, extra: Option<(&str, &str)>, value: &str| {
        write!(out, "{name}{suffix}")?;
        write_labels(out, metric, target, extra)?;
        writeln!(out, " {value} {timestamp}")
    };
    match kind {
        MetricType::COUNTER => sample("", None, &number(metric.get_counter().get_value())),
        MetricType::GAUGE => sample("", None, &number(metric.get_gauge().get_value())),
        // The crate makes no untyped metrics (its own text encoder refuses them).
        MetricType::UNTYPED => Ok(()),
        MetricType::HISTOGRAM => {
            let histogram = metric.get_histogram();
            let mut infinite = false;
            for bucket in histogram.get_bucket() {
                let bound = bucket.upper_bound();
                infinite |= bound == f64::INFINITY;
                // The bound as `/metrics` writes it, so the `le` values, and so the series, match.
                let le = if bound == f64::INFINITY {
                    "+Inf".to_owned()
                } else {
                    bound.to_string()
                };
                sample(
                    "_bucket",
                    Some(("le", &le)),
                    &bucket.cumulative_count().to_string(),
                )?;
            }
            let count = histogram.get_sample_count().to_string();
            if !infinite {
                sample("_bucket", Some(("le", "+Inf")), &count)?;
            }
            sample("_sum", None, &number(histogram.get_sample_sum()))?;
            sample("_count", None, &count)
        }
        MetricType::SUMMARY => {
            let summary = metric.get_summary();
            for quantile in summary.get_quantile() {
                sample(
                    "",
                    Some(("quantile", &quantile.quantile().to_string())),
                    &number(quantile.value()),
                )?;
            }
            sample("_sum", None, &number(summary.sample_sum()))?;
            sample("_count", None, &summary.sample_count().to_string())
        }
    }
}

fn write_labels(
    out: &mut dyn Write,
    metric: &Metric,
    target: &[(&str, &str)],
    extra: Option<(&str, &str)>,
) -> io::Result<()> {
    let pairs = metric
        .get_label()
        .iter()
        .map(|pair| (pair.name(), pair.value()))
        .chain(target.iter().copied())
        .chain(extra);
    let mut first = true;
    for (name, value) in pairs {
        out.write_all(if first { b"{" } else { b"," })?;
        first = false;
        write!(out, "{name}=\"{}\"", escape(value))?;
    }
    if !first {
        out.write_all(b"}")?;
    }
    Ok(())
}

/// A label value or help text as `OpenMetrics` escapes it: backslash, double quote and line feed;
/// everything else, whatever a guest owner put in a VM's name, is its exact UTF-8.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '"', '\n']) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

/// A sample value: Rust's shortest exact decimal, and `OpenMetrics`' spellings of the infinities.
fn number(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // NaN is spelled NaN by both.
        value.to_string()
    }
}

/// Unix ns as `OpenMetrics` seconds, to the millisecond Prometheus keeps.
fn seconds(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000_000, ns / 1_000_000 % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::untrusted::HOSTILE_NAME,
        output::series::{Level, details},
        testing::fixture,
    };

    const T0: u64 = 1_764_844_920_000_000_000;

    fn exported(level: Level, windows: &[(Snapshot, u64)]) -> String {
        let mut writer = Writer::new(Exporter::new(level, details::MAX_TOP_N));
        for (snapshot, end_ns) in windows {
            writer.window(snapshot, *end_ns).unwrap();
        }
        let mut out = Vec::new();
        writer.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_fixture_over_two_windows() {
        let first = fixture::snapshot();
        let mut second = fixture::snapshot();
        second.vms.truncate(1);
        let text = exported(Level::Vm, &[(first, T0), (second, T0 + 1_500_000_000)]);
        insta::assert_snapshot!(text);
    }

    /// A range exported after skipping the windows before it has the values the whole
    /// recording's export has there, detail-value counters (summed over the windows) included.
    #[test]
    fn a_range_goes_on_from_the_windows_before_it() {
        let windows: Vec<(Snapshot, u64)> = (0..3)
            .map(|i| (fixture::snapshot(), T0 + i * 1_000_000_000))
            .collect();
        let whole = exported(Level::Full, &windows);
        let mut writer = Writer::new(Exporter::new(Level::Full, details::MAX_TOP_N));
        writer.skip(&windows[0].0);
        writer.skip(&windows[1].0);
        writer.window(&windows[2].0, windows[2].1).unwrap();
        let mut out = Vec::new();
        writer.finish(&mut out).unwrap();
        let range = String::from_utf8(out).unwrap();
        let last_window = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.ends_with(" 1764844922.000"))
                .map(str::to_owned)
                .collect()
        };
        let detail = |lines: &[String]| {
            lines
                .iter()
                .find(|l| {
                    l.starts_with("kvmtop_vm_exit_detail_value_events_total")
                        && !l.contains("value=\"other\"")
                })
                .cloned()
                .unwrap_or_default()
        };
        let (whole, range) = (last_window(&whole), last_window(&range));
        assert!(!detail(&whole).is_empty(), "{whole:#?}");
        assert_eq!(detail(&range), detail(&whole));
        assert_eq!(range, whole);
    }

    #[test]
    fn counters_are_families_without_total_and_samples_with_it() {
        let text = exported(Level::Vm, &[(fixture::snapshot(), T0)]);
        assert!(text.contains("# TYPE kvmtop_vm_exits counter\n"), "{text}");
        assert!(!text.contains("# TYPE kvmtop_vm_exits_total"), "{text}");
        assert!(
            text.contains("kvmtop_vm_exits_total{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vm=\"web-1\",instance=\"hv1\",job=\"kvmtop\"} 2000000 1764844920.000\n"),
            "{text}"
        );
        assert!(text.ends_with("\n# EOF\n") || text == "# EOF\n", "{text}");
        assert!(!text.contains("# TYPE kvmtop_vm_info unknown"), "{text}");
    }

    /// Every counter `/metrics` serves ends in `_total`, so none is exported untyped, and every
    /// series name is the one `/metrics` serves.
    #[test]
    fn the_same_series_as_metrics_at_every_level() {
        for level in [Level::Vm, Level::Vcpu, Level::Full] {
            let snapshot = fixture::snapshot();
            let text = exported(level, &[(snapshot.clone(), T0)]);
            assert!(!text.contains(" unknown\n"), "{text}");
            let served = Exporter::new(level, details::MAX_TOP_N)
                .window(&snapshot)
                .unwrap();
            let served: Vec<String> = served
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l} 1764844920.000"))
                .collect();
            // The same lines but for the target labels a scrape would add.
            let ours: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    l.replace(",instance=\"hv1\",job=\"kvmtop\"", "")
                        .replace("{instance=\"hv1\",job=\"kvmtop\"}", "")
                })
                .collect();
            assert_eq!(ours, served, "{level:?}");
        }
    }

    #[test]
    fn each_family_is_one_block_over_all_windows() {
        let windows: Vec<(Snapshot, u64)> = (0..3)
            .map(|i| (fixture::snapshot(), T0 + i * 1_000_000_000))
            .collect();
        let text = exported(Level::Vm, &windows);
        let mut seen = std::collections::HashSet::new();
        let mut current = "";
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_total")
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            if family != current {
                assert!(seen.insert(family.to_owned()), "{family} split:\n{text}");
                current = family;
            }
        }
        for t in ["1764844920.000", "1764844921.000", "1764844922.000"] {
            assert!(text.contains(&format!("kvmtop_vm_vcpus{{pid=\"4242\",vm=\"web-1\",instance=\"hv1\",job=\"kvmtop\"}} 2 {t}\n")), "{text}");
        }
    }

    #[test]
    fn a_window_that_does_not_go_forward_is_left_out() {
        let mut writer = Writer::new(Exporter::new(Level::Vm, 1));
        let snapshot = fixture::snapshot();
        assert!(writer.window(&snapshot, T0).unwrap());
        assert!(!writer.window(&snapshot, T0 - 1_000_000_000).unwrap());
        assert!(
            !writer.window(&snapshot, T0 + 100).unwrap(),
            "same millisecond"
        );
        assert!(writer.window(&snapshot, T0 + 1_000_000).unwrap());
    }

    #[test]
    fn hostile_names_are_escaped_and_forge_no_line() {
        let mut snapshot = fixture::snapshot();
        snapshot.vms[0].name = crate::model::Untrusted::new(HOSTILE_NAME);
        let text = exported(Level::Full, &[(snapshot, T0)]);
        let escaped = HOSTILE_NAME
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        assert!(text.contains(&format!("vm=\"{escaped}\"")), "{text}");
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("kvmtop_"),
                "{line:?}"
            );
        }
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape("plain ü"), "plain ü");
    }

    #[test]
    fn numbers_and_times() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(2e6), "2000000");
        assert_eq!(seconds(1_764_844_920_123_456_789), "1764844920.123");
        assert_eq!(seconds(5_000_000), "0.005");
    }

    /// promtool, when installed, takes the export of the hostile fixture into blocks.
    #[test]
    fn promtool_takes_the_hostile_fixture() {
        let Ok(status) = std::process::Command::new("promtool")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
        else {
            crate::testing::skip(
                "output::openmetrics::tests::promtool_takes_the_hostile_fixture",
                "promtool is not installed (cargo xtask setup installs it)",
            );
            return;
        };
        assert!(status.success());
        let mut snapshot = fixture::snapshot();
        snapshot.vms[0].name = crate::model::Untrusted::new(HOSTILE_NAME);
        // Bytes that are not UTF-8, as a process may name itself: repaired when read.
        snapshot.vms[1].name = crate::model::Untrusted::from_bytes(b"bad\xff\xfe\"}\r\0 utf8");
        let text = exported(
            Level::Full,
            &[(snapshot.clone(), T0), (snapshot, T0 + 1_000_000_000)],
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("export.om");
        std::fs::write(&file, text).unwrap();
        let output = std::process::Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&file)
            .arg(dir.path().join("blocks"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
