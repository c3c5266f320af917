//! A fleet on Prometheus: two `kvmtop serve` agents on this host stand in for two hosts. A real
//! Prometheus loads the example configuration (`dashboards/prometheus.yml`) with the shipped
//! rule files, and finds the agents through its file-based service discovery. Then, through
//! Prometheus' HTTP API: both targets are up, every rule loaded and evaluates without error,
//! every recording rule and every dashboard panel query returns data (from both agents, where
//! its series keep the host apart; a NaN is no data) with the agents at the default
//! `--metrics-detail` level, but for panels that say they need a higher one, every alert
//! expression evaluates, and the measurement it compares returns data from both agents. The
//! host variable of every dashboard offers both.

mod support;

use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use guests::{DiskAio, DiskCache, DiskInterface, DiskOptions, Guest, GuestKind, GuestSpec};
use serde_json::Value;
use support::{
    dashboards::{self, DIR as DASHBOARDS},
    prometheus::{Prometheus, percent_encode},
};

const TEST: &str =
    "a_prometheus_with_the_example_config_serves_the_dashboards_and_rules_of_two_agents";

/// An alert's condition is false on a healthy host, so its expression may rightly return
/// nothing. What must return data is the measurement the condition compares: proof that the
/// alert looks at series that exist. One entry per shipped alert (checked), with the reason it
/// may be silent here.
const ALERT_MEASUREMENTS: &[(&str, &str)] = &[
    // Fires only while a VM's vCPUs wait for a host CPU more than 10 % of the time.
    (
        "KvmtopVcpuStealHigh",
        "vm:kvmtop_vcpu_run_queue_wait_seconds:avg_rate2m",
    ),
    // Fires only above 50,000 exits/s per vCPU for 10 minutes.
    ("KvmtopExitStorm", "vm_source:kvmtop_vm_exits:avg_rate2m"),
    // Fires only when the p99 passes 100 ms on a device with more than one request a second.
    (
        "KvmtopBlockLatencyHigh",
        "vm_device:kvmtop_vm_block_latency_seconds:p99_rate5m",
    ),
    // This host has one NUMA node: the share off the main node is 0.
    (
        "KvmtopVmMemoryCrossNode",
        "vm:kvmtop_vm_memory_bytes:off_main_node_ratio",
    ),
    // Critical advice needs a host in trouble; the IDE guest with a writeback cache draws
    // advice at lower levels.
    ("KvmtopCriticalAdvice", "kvmtop_recommendation"),
    // Both agents are up.
    ("KvmtopDown", "up{job=\"kvmtop\"}"),
    // No kernel map fills with three guests: the counters are there, at 0.
    ("KvmtopEventsDropped", "kvmtop_events_dropped_total"),
    // Nothing competes with kvmtop's programs here: the counters are there, at 0.
    (
        "KvmtopEventsLost",
        "rate(kvmtop_source_lost_events_total[5m])",
    ),
];

/// Panel queries that may rightly return nothing on this host, and why.
fn may_be_empty(expr: &str, kvm_exit_silent: bool) -> bool {
    // Hardware exits where the kvm_exit tracepoint never fires (this host's KVM backend).
    (kvm_exit_silent && expr.contains("source=\"kvm_exit\""))
        // Critical advice needs a host in trouble.
        || expr.contains("severity=\"critical\"")
}

#[test]
fn a_prometheus_with_the_example_config_serves_the_dashboards_and_rules_of_two_agents() {
    if let Some(reason) = support::missing_prerequisite(true, &["prometheus"]) {
        return support::skip(TEST, &reason);
    }
    // Port-I/O exits; block I/O; and a guest whose IDE disk with a writeback cache draws
    // configuration advice.
    let (_portio, _) = support::start_portio("fleet-portio");
    let disk_reader = Guest::start(
        &GuestSpec::new(GuestKind::DiskReader)
            .name("fleet-disk")
            .debug_threads(true)
            .disk(DiskOptions::default()),
    )
    .expect("starting the disk-reading guest");
    let advised = Guest::start(&GuestSpec::new(GuestKind::Idle).name("fleet-ide").disk(
        DiskOptions {
            interface: DiskInterface::Ide,
            cache: DiskCache::Writeback,
            aio: Some(DiskAio::Threads),
        },
    ))
    .expect("starting the IDE guest");
    for guest in [&disk_reader, &advised] {
        guest
            .wait_for_vcpus(support::START_LIMIT)
            .expect("the guest's vCPUs");
    }

    // Both at the default `--metrics-detail` level, as a fleet runs unless told otherwise.
    let (_first, first) = support::prometheus::serve("1");
    let (_second, second) = support::prometheus::serve("1");
    let agents = [first.to_string(), second.to_string()];

    let dir = tempfile::tempdir().unwrap();
    let config = lay_out_example_config(dir.path(), &agents);
    let mut prometheus = Prometheus::start_with_config(dir, &config);

    wait_until_both_agents_are_up(&mut prometheus, &agents);
    let rules = every_rule_is_healthy(&prometheus);
    let kvm_exit_silent = query(&prometheus, "kvmtop_vm_exits_total{source=\"kvm_exit\"}")
        .as_array()
        .is_some_and(Vec::is_empty);
    let mut checks = dashboard_checks(kvm_exit_silent, &agents);
    checks.extend(rule_checks(&rules, &agents));
    eprintln!("{} queries to check", checks.len());

    // A query passes once it has returned data (from each agent, where it keeps the instance).
    // Rates need two scrapes in their range; on a loaded host a scrape can time out, and its
    // series then read as stale until the next one, so each query gets the whole wait.
    let started = Instant::now();
    let deadline = started + Duration::from_mins(5);
    let mut reported_slow = false;
    loop {
        prometheus.assert_running();
        for check in &mut checks {
            check.evaluate(&prometheus);
        }
        let unmet: Vec<String> = checks.iter().filter_map(Check::unmet).collect();
        if unmet.is_empty() {
            break;
        }
        if !reported_slow && started.elapsed() > Duration::from_mins(1) {
            // Says what a slow run waits for, without failing it.
            eprintln!("still without data after a minute:\n{}", unmet.join("\n"));
            reported_slow = true;
        }
        assert!(
            Instant::now() < deadline,
            "after five minutes of scrapes, no data for:\n{}\nscrapes: {}",
            unmet.join("\n"),
            query(
                &prometheus,
                "{__name__=~\"up|scrape_duration_seconds\", job=\"kvmtop\"}"
            )
        );
        thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "every query had its data after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Evaluated again on all the data now scraped: a rule can fail only once series arrive
    // (two series with one label set, say).
    every_rule_is_healthy(&prometheus);
    let host_variable_problems = host_variables_without_both_agents(&prometheus, &agents);
    assert!(
        host_variable_problems.is_empty(),
        "{}",
        host_variable_problems.join("\n")
    );
}

/// One query the test evaluates, and what it still waits for.
struct Check {
    what: String,
    promql: String,
    /// Must it return data at all?
    required: bool,
    /// Labels a series must carry to count as data (those a panel's legend names).
    labels: Vec<String>,
    seen_data: bool,
    agents: FromAgents,
    /// The agents (instances) it has not yet returned data from.
    agents_missing: Vec<String>,
}

#[derive(PartialEq)]
enum FromAgents {
    /// Data from either agent will do: the query sums over hosts, or picks the top few.
    Any,
    /// Data from every agent.
    Every,
    /// Data from every agent if its series keep the `instance` label, else from either.
    EveryIfKept,
}

impl Check {
    fn new(
        what: String,
        promql: String,
        required: bool,
        agents: FromAgents,
        all: &[String],
    ) -> Self {
        Self {
            what,
            promql,
            required,
            labels: Vec::new(),
            seen_data: false,
            agents,
            agents_missing: all.to_vec(),
        }
    }

    /// Evaluates the query (it must parse and run) and notes what data it returned.
    fn evaluate(&mut self, prometheus: &Prometheus) {
        let result = query(prometheus, &self.promql);
        // A NaN (a percentile of a histogram without buckets, a ratio of zeros) is no data;
        // nor is a series without a label the panel's legend names.
        let series = dashboards::series_with_data(&result, &self.labels);
        self.seen_data |= !series.is_empty();
        let instances: Vec<&str> = series
            .iter()
            .filter_map(|s| s["metric"]["instance"].as_str())
            .collect();
        if self.agents == FromAgents::EveryIfKept && !instances.is_empty() {
            self.agents = FromAgents::Every;
        }
        self.agents_missing
            .retain(|a| !instances.contains(&a.as_str()));
    }

    fn unmet(&self) -> Option<String> {
        if self.required && !self.seen_data {
            Some(format!("{}: {}", self.what, self.promql))
        } else if self.agents == FromAgents::Every && !self.agents_missing.is_empty() {
            Some(format!(
                "{}: {} (nothing from {:?})",
                self.what, self.promql, self.agents_missing
            ))
        } else {
            None
        }
    }
}

/// Copies the example configuration and the rule files into `dir` as the example's comments
/// lay them out, with a file-based discovery file naming `agents`. The one change is a 2 s
/// scrape and evaluation interval, so the test takes seconds rather than minutes.
fn lay_out_example_config(dir: &Path, agents: &[String]) -> PathBuf {
    let example = std::fs::read_to_string(Path::new(DASHBOARDS).join("prometheus.yml")).unwrap();
    let mut config = example.clone();
    for key in ["scrape_interval", "evaluation_interval"] {
        let before = config.clone();
        config = config.replace(&format!("{key}: 15s"), &format!("{key}: 2s"));
        assert_ne!(before, config, "the example sets no 15 s {key}");
    }
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();

    std::fs::create_dir(dir.join("rules")).unwrap();
    for entry in std::fs::read_dir(Path::new(DASHBOARDS).join("rules")).unwrap() {
        let source = entry.unwrap().path();
        if source.extension().is_some_and(|e| e == "yml") {
            std::fs::copy(&source, dir.join("rules").join(source.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir(dir.join("targets")).unwrap();
    let targets: Vec<String> = agents.iter().map(|a| format!("'{a}'")).collect();
    std::fs::write(
        dir.join("targets").join("agents.yml"),
        format!(
            "- targets: [{}]\n  labels:\n    cluster: test\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    path
}

/// Evaluates `promql` now and returns its result; fails the test on any error.
fn query(prometheus: &Prometheus, promql: &str) -> Value {
    let (status, body) = prometheus.query(promql);
    assert_eq!(status, 200, "{promql}: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["data"]["result"].clone()
}

fn wait_until_both_agents_are_up(prometheus: &mut Prometheus, agents: &[String]) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        prometheus.assert_running();
        let (status, body) = prometheus.query("up{job=\"kvmtop\"}");
        if status == 200 {
            let answer: Value = serde_json::from_str(&body).unwrap();
            let up: Vec<&str> = answer["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["value"][1] == "1")
                .filter_map(|s| s["metric"]["instance"].as_str())
                .collect();
            if agents.iter().all(|a| up.contains(&a.as_str())) {
                assert_eq!(up.len(), agents.len(), "targets up: {body}");
                eprintln!("both agents up: {up:?}");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agents {agents:?} were not both up within a minute: {status} {body}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// Every rule of both shipped groups loaded; once each has been evaluated, none reports an
/// error, and every alert carries the labels and annotations the runbook convention asks for.
/// Returns the recording rules' names and the alerts' names with their expressions.
fn every_rule_is_healthy(prometheus: &Prometheus) -> Rules {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = prometheus.api("/api/v1/rules");
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown");
        if status == 200 && evaluated {
            let mut found = Rules::default();
            for rule in rules {
                let name = rule["name"].as_str().unwrap().to_owned();
                assert_eq!(rule["health"], "ok", "rule {name}: {rule:#}");
                if rule["type"] == "alerting" {
                    assert!(
                        ["warning", "critical"]
                            .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                        "alert {name} has no severity: {rule:#}"
                    );
                    for annotation in ["summary", "description", "runbook_url"] {
                        assert!(
                            rule["annotations"][annotation].is_string(),
                            "alert {name} has no {annotation}: {rule:#}"
                        );
                    }
                    found
                        .alerts
                        .push((name, rule["query"].as_str().unwrap().to_owned()));
                } else {
                    found.recorded.push(name);
                }
            }
            let shipped: Vec<&str> = ALERT_MEASUREMENTS.iter().map(|(a, _)| *a).collect();
            let loaded: Vec<&str> = found.alerts.iter().map(|(a, _)| a.as_str()).collect();
            assert_eq!(
                loaded, shipped,
                "alerts loaded against those this test knows"
            );
            assert!(
                found.recorded.len() >= 5,
                "recording rules: {:?}",
                found.recorded
            );
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the rules were not all evaluated within 30 s: {status} {body}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

#[derive(Default)]
struct Rules {
    recorded: Vec<String>,
    alerts: Vec<(String, String)>,
}

/// Every recording rule's series must hold data from both agents; every alert expression
/// must evaluate (it may rightly return nothing: nothing is wrong), and its measurement must
/// return data from both agents.
fn rule_checks(rules: &Rules, agents: &[String]) -> Vec<Check> {
    let mut checks = Vec::new();
    for name in &rules.recorded {
        checks.push(Check::new(
            format!("recording rule {name}"),
            name.clone(),
            true,
            FromAgents::Every,
            agents,
        ));
    }
    for (alert, expr) in &rules.alerts {
        checks.push(Check::new(
            format!("alert {alert}"),
            expr.clone(),
            false,
            FromAgents::Any,
            agents,
        ));
        let (_, measurement) = ALERT_MEASUREMENTS.iter().find(|(a, _)| a == alert).unwrap();
        checks.push(Check::new(
            format!("alert {alert}, its measurement"),
            (*measurement).to_owned(),
            true,
            FromAgents::Every,
            agents,
        ));
    }
    checks
}

/// Every panel query of every dashboard, with the template variables set to "all": data from
/// both agents where its series keep the host apart, at the agents' default level; panels that
/// say they need a higher level, and those that may rightly have no data ([`may_be_empty`]),
/// must still parse and run.
fn dashboard_checks(kvm_exit_silent: bool, agents: &[String]) -> Vec<Check> {
    let mut checks = Vec::new();
    for panel in dashboards::panel_queries() {
        // The top few across hosts may all come from one agent.
        let agents_needed = if panel.expr.starts_with("topk(") {
            FromAgents::Any
        } else {
            FromAgents::EveryIfKept
        };
        let required = dashboards::level_serves("vm", panel.needs.as_deref())
            && !may_be_empty(&panel.expr, kvm_exit_silent);
        let mut check = Check::new(
            panel.what(),
            panel.promql(".*"),
            required,
            agents_needed,
            agents,
        );
        check.labels = panel.legend_labels;
        checks.push(check);
    }
    assert!(
        checks.len() >= 20,
        "only {} dashboard queries found",
        checks.len()
    );
    checks
}

/// Each dashboard's `instance` (host) variable, evaluated as Grafana would
/// (`label_values(METRIC, instance)`), must offer both agents.
fn host_variables_without_both_agents(prometheus: &Prometheus, agents: &[String]) -> Vec<String> {
    dashboards::dashboards()
        .iter()
        .flat_map(|(name, dashboard)| {
            hosts_missing_from_host_variable(prometheus, name, dashboard, agents)
        })
        .collect()
}

fn hosts_missing_from_host_variable(
    prometheus: &Prometheus,
    name: &str,
    dashboard: &Value,
    agents: &[String],
) -> Vec<String> {
    let variable = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "instance")
        .unwrap_or_else(|| panic!("{name} has no instance (host) variable"));
    let definition = variable["query"].as_str().unwrap();
    let metric = definition
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(", instance)"))
        .unwrap_or_else(|| panic!("{name}: host variable {definition:?}"));
    let (status, body) = prometheus.api(&format!(
        "/api/v1/label/instance/values?match[]={}",
        percent_encode(metric)
    ));
    assert_eq!(status, 200, "{name}: {definition}: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let offered: Vec<&str> = answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    agents
        .iter()
        .filter(|a| !offered.contains(&a.as_str()))
        .map(|a| format!("{name}: the host variable ({definition}) does not offer {a}"))
        .collect()
}
