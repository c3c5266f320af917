//! Presenters that are not interactive: JSON, text, the Prometheus endpoint, and the
//! `OpenMetrics` export of a recording.
#[cfg(test)]
mod docs_drift;
mod families;
pub mod json;
pub mod metrics;
pub mod openmetrics;
#[cfg(test)]
mod reference;
pub mod series;
pub mod serve;
pub mod text;

/// How a snapshot is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

/// How `kvmtop replay` exports the windows of a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One snapshot per line (JSON Lines).
    Json,
    // The help text shows this comment as written: no backticks around the format's name.
    #[allow(clippy::doc_markdown)]
    /// OpenMetrics text with each window's time, the series `kvmtop serve` gives at
    /// --metrics-detail: load it with `promtool tsdb create-blocks-from openmetrics`.
    Openmetrics,
}

/// The fixture snapshot as each presenter renders it, kept as insta snapshots: any change to
/// what users or scrapers see shows up here as a reviewed diff.
#[cfg(test)]
mod golden {
    use crate::{
        model::untrusted::{HOSTILE_NAME, is_unsafe},
        testing::fixture,
    };

    fn rendered(write: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).expect("presenters write UTF-8")
    }

    #[test]
    fn the_fixture_as_json() {
        let text = rendered(|out| super::json::write(out, &fixture::snapshot()).unwrap());
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_fixture_as_text() {
        let text = rendered(|out| super::text::write(out, &fixture::snapshot()).unwrap());
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_fixture_as_metrics() {
        insta::assert_snapshot!(super::metrics::tests::full(&fixture::snapshot()));
    }

    /// The fixture with every string a guest owner or local user chooses set to a hostile one.
    fn hostile_snapshot() -> crate::model::Snapshot {
        let hostile = crate::model::Untrusted::new(HOSTILE_NAME);
        let mut snapshot = fixture::snapshot();
        let vm = &mut snapshot.vms[0];
        vm.name = hostile.clone();
        vm.vmm = hostile.clone();
        for drive in &mut vm.families.block.drives {
            drive.id = Some(hostile.clone());
            drive.file = Some(hostile.clone());
        }
        for device in &mut vm.families.block.devices {
            device.drives = vec![hostile.clone()];
        }
        for contender in &mut vm.families.sched.contenders {
            contender.name = hostile.clone();
        }
        snapshot.problems.push(hostile.clone());
        snapshot
    }

    #[test]
    fn hostile_names_reach_the_text_report_sanitized_without_forged_lines() {
        let plain = rendered(|out| super::text::write(out, &fixture::snapshot()).unwrap());
        let text = rendered(|out| super::text::write(out, &hostile_snapshot()).unwrap());
        for line in text.lines() {
            assert!(!line.chars().any(is_unsafe), "{line:?}");
        }
        // One more line than the plain report: the problem added; the name's newline forged none.
        assert_eq!(text.lines().count(), plain.lines().count() + 1, "{text}");
        assert!(text.contains("FAKELINE") && !text.contains("\nFAKELINE"));
    }

    #[test]
    fn hostile_names_are_exact_in_the_json_and_in_metric_labels() {
        let snapshot = hostile_snapshot();
        let json = rendered(|out| super::json::write(out, &snapshot).unwrap());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["vms"][0]["name"], HOSTILE_NAME);
        let metrics = super::metrics::tests::full(&snapshot);
        // The exposition format escapes backslash, double quote and newline in label values;
        // everything else is the exact UTF-8.
        let escaped = HOSTILE_NAME
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        assert!(metrics.contains(&format!("vm=\"{escaped}\"")), "{metrics}");
        // No raw newline inside a label: every line is a comment or starts with a metric name.
        for line in metrics.lines() {
            assert!(
                line.starts_with('#') || line.starts_with("kvmtop_"),
                "{line:?}"
            );
        }
    }
}
