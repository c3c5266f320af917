//! The shipped Grafana dashboards' panel queries, and what counts as data in an answer to one.
//!
//! A panel that can only show something at a higher `--metrics-detail` level than the default
//! says so in its title, "(needs --metrics-detail vcpu)" or "(needs --metrics-detail full)";
//! every other panel must have data at the default level, `vm`.

use serde_json::Value;

/// Where the shipped dashboards, rules and example configuration are.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");

/// What a panel's title says it needs.
const NEEDS: &str = "(needs --metrics-detail ";

/// One query of one panel.
pub struct PanelQuery {
    /// The dashboard's file name.
    pub dashboard: String,
    pub title: String,
    /// As written in the dashboard, with its template variables.
    pub expr: String,
    /// The `--metrics-detail` level the panel needs, if not the default.
    pub needs: Option<String>,
    /// The labels its legend names (`{{vcpu}}`, say): a series without one of them is not what
    /// the panel says it shows.
    pub legend_labels: Vec<String>,
}

impl PanelQuery {
    /// The query as Grafana would send it with `$instance` set to `instance` (a regular
    /// expression) and every VM chosen, over a 15 s rate interval. Fails the test on a
    /// template variable it does not set, or on a query that does not choose the host.
    pub fn promql(&self, instance: &str) -> String {
        assert!(
            self.expr.contains("$instance"),
            "{}: panel {:?} does not follow the Host variable: {}",
            self.dashboard,
            self.title,
            self.expr
        );
        let promql = self
            .expr
            .replace("$__rate_interval", "15s")
            .replace("$instance", instance)
            .replace("$vm", ".*");
        assert!(
            !promql.contains('$'),
            "{}: panel {:?}: a template variable this test does not set: {promql}",
            self.dashboard,
            self.title
        );
        promql
    }

    /// "dashboard: panel "title"", for messages.
    pub fn what(&self) -> String {
        format!("{}: panel {:?}", self.dashboard, self.title)
    }
}

/// Whether an agent at `--metrics-detail` `level` serves a panel that needs `needs` (none:
/// the default); each level has every series of the ones below it.
pub fn level_serves(level: &str, needs: Option<&str>) -> bool {
    let rank = |level: &str| {
        ["vm", "vcpu", "full"]
            .iter()
            .position(|l| *l == level)
            .unwrap_or_else(|| panic!("no level {level:?}"))
    };
    rank(level) >= needs.map_or(0, rank)
}

/// The dashboards, by file name.
pub fn dashboards() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            found.push((name, serde_json::from_str(&text).unwrap()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Every query of every panel of every dashboard.
pub fn panel_queries() -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for (dashboard, value) in dashboards() {
        for panel in value["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let needs = title.split_once(NEEDS).map(|(_, rest)| {
                let level = rest.trim_end_matches(')').to_owned();
                assert!(
                    ["vcpu", "full"].contains(&level.as_str()),
                    "{dashboard}: panel {title:?} needs an unknown level {level:?}"
                );
                level
            });
            for target in panel["targets"].as_array().into_iter().flatten() {
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                queries.push(PanelQuery {
                    dashboard: dashboard.clone(),
                    title: title.clone(),
                    expr: target["expr"].as_str().unwrap().to_owned(),
                    needs: needs.clone(),
                    legend_labels: legend
                        .split("{{")
                        .skip(1)
                        .filter_map(|rest| Some(rest.split_once("}}")?.0.trim().to_owned()))
                        .collect(),
                });
            }
        }
    }
    queries
}

/// Labels a legend may name that a series may rightly lack: an exit without a hardware exit
/// reason has an empty (absent) `isa`.
const MAY_LACK: &[&str] = &["isa"];

/// The series of an instant query's result (`data.result`) that hold a number and carry every
/// one of `labels`. A NaN, as a percentile of a histogram with no buckets but `+Inf` or a ratio
/// of two zeros gives, is no data; nor is a series without a label its panel's legend names,
/// such as a per-VM sum in a panel of vCPUs.
pub fn series_with_data<'a>(result: &'a Value, labels: &[String]) -> Vec<&'a Value> {
    result
        .as_array()
        .into_iter()
        .flatten()
        .filter(|series| {
            series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| !v.is_nan())
        })
        .filter(|series| {
            labels.iter().all(|label| {
                MAY_LACK.contains(&label.as_str())
                    || series["metric"][label]
                        .as_str()
                        .is_some_and(|v| !v.is_empty())
            })
        })
        .collect()
}
