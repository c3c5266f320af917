//! End to end: a recorded incident seen in Prometheus.
//!
//! A port-I/O guest runs under `kvmtop record` for about 20 s; the recording is exported with
//! `kvmtop replay --format openmetrics`, turned into TSDB blocks by `promtool tsdb
//! create-blocks-from openmetrics`, and a real Prometheus server is started on those blocks.
//! Its HTTP API must then give the guest's series, with the host as `instance` and the job
//! the dashboards expect, at each window's time with the value `kvmtop replay --format json`
//! gives for that window (its memory per NUMA node, exactly), and a dashboard panel (steal per
//! VM) must have data for the guest over the imported range.
//!
//! The counters are checked by a second test: recordings keep the running totals the exporter
//! reads (left out of the snapshot JSON, so the check counts against each window's own figures):
//! each window's rise of the guest's busiest exit counter must equal the exits the JSON counts
//! in that window, and `rate()` must agree.

mod support;

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use kvmtop::recording::playback::Recording;
use serde_json::Value;
use support::{Observed, dashboards, prometheus};

const RECORD_FOR: &str = "20s";
/// `rate()` over the imported samples against the JSON's exits per second over the same
/// windows: `rate()` extrapolates to the ends of its range, which adds up to one window's
/// worth on a 10 s range.
const RATE_TOLERANCE: f64 = 0.15;
const RATE_RANGE_SECONDS: u64 = 10;
const READY_LIMIT: Duration = Duration::from_mins(1);

fn run(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The exits of `pid` in one JSON window with `source` and `reason`, over its vCPUs.
fn exits_in_window(snapshot: &Value, pid: u32, source: &str, reason: &str) -> u64 {
    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == pid)
        .unwrap_or_else(|| panic!("no VM {pid} in a window"));
    vm["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|vcpu| vcpu["exits"]["by_reason"].as_array().unwrap())
        .filter(|r| r["source"] == source && r["reason"] == reason)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// The most frequent exit of `pid` over all windows: its source and reason. (Which sources
/// see exits depends on the host: a nested host may show only userspace exits.)
fn busiest_reason(windows: &[Value], pid: u32) -> (String, String) {
    let mut counts = std::collections::BTreeMap::<(String, String), u64>::new();
    for snapshot in windows {
        for vm in snapshot["vms"].as_array().unwrap() {
            if vm["pid"] != pid {
                continue;
            }
            for r in vm["vcpus"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|v| v["exits"]["by_reason"].as_array().unwrap())
            {
                let key = (
                    r["source"].as_str().unwrap().to_owned(),
                    r["reason"].as_str().unwrap().to_owned(),
                );
                *counts.entry(key).or_default() += r["count"].as_u64().unwrap();
            }
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .unwrap_or_else(|| {
            let vm = windows[windows.len() / 2]["vms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|vm| vm["pid"] == pid)
                .cloned();
            panic!("the guest took no exits: {vm:?}")
        })
        .0
}

/// Prometheus' instant query at `time` (unix seconds, as the export wrote them): the result.
fn query_at(server: &prometheus::Prometheus, promql: &str, time: &str) -> Value {
    let (status, body) = server.api(&format!(
        "/api/v1/query?query={}&time={time}",
        prometheus::percent_encode(promql)
    ));
    assert_eq!(status, 200, "{promql} at {time}: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["data"]["result"].clone()
}

/// The only series' value of an instant query's result.
fn single_value(result: &Value, what: &str) -> f64 {
    let series = result.as_array().unwrap();
    assert_eq!(series.len(), 1, "{what}: {result}");
    series[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// Unix ns as the export writes the time: seconds to the millisecond.
fn export_time(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000_000, ns / 1_000_000 % 1000)
}

/// A Prometheus server over the TSDB blocks in `dir`/data, scraping nothing; ready.
fn prometheus_over(dir: tempfile::TempDir) -> prometheus::Prometheus {
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
    )
    .unwrap();
    let mut server = prometheus::Prometheus::start_with_config(dir, &config);
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        server.assert_running();
        if server.api("/-/ready").0 == 200 {
            return server;
        }
        assert!(Instant::now() < deadline, "prometheus not ready");
        thread::sleep(Duration::from_millis(200));
    }
}

/// A guest recorded for [`RECORD_FOR`], exported and imported into a Prometheus.
struct Imported {
    server: prometheus::Prometheus,
    pid: u32,
    /// The JSON windows and their times (unix ns).
    windows: Vec<Value>,
    times: Vec<u64>,
    openmetrics: String,
    hostname: String,
    _dir: tempfile::TempDir,
}

/// Records a guest, exports the recording and starts Prometheus on it; `None` (with the
/// reason printed) when the host cannot.
fn record_and_import(test: &str) -> Option<Imported> {
    if let Some(reason) = support::missing_prerequisite(true, &["promtool", "prometheus"]) {
        support::skip(test, &reason);
        return None;
    }
    let (guest, _) = support::start_portio("kvmtop-openmetrics");
    let pid = guest.pid();
    let dir = tempfile::tempdir().unwrap();
    let recording_dir = dir.path().join("incident");
    let mut command = support::kvmtop();
    command
        .arg("record")
        .arg("-o")
        .arg(&recording_dir)
        .arg("--control-dir")
        .arg(dir.path().join("control"))
        .args(["--interval", "1", "--duration", RECORD_FOR]);
    let mut recorder = Observed::spawn(command);
    let status = recorder.wait(support::START_LIMIT + Duration::from_secs(20));
    assert!(status.success(), "{}", recorder.stderr_lines.join("\n"));
    drop(guest);

    let json = run(support::kvmtop()
        .arg("replay")
        .arg(&recording_dir)
        .args(["--format", "json"]));
    let windows: Vec<Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let export = dir.path().join("incident.om");
    let openmetrics = run(support::kvmtop()
        .arg("replay")
        .arg(&recording_dir)
        .args(["--format", "openmetrics"]));
    std::fs::write(&export, &openmetrics.stdout).unwrap();
    let openmetrics = String::from_utf8(openmetrics.stdout).unwrap();
    let times: Vec<u64> = Recording::open(&recording_dir)
        .unwrap()
        .window_times()
        .collect();
    assert_eq!(times.len(), windows.len());
    assert!(windows.len() >= 15, "{} windows", windows.len());
    let vms = windows[0]["vms"].as_array().unwrap().len();
    #[allow(clippy::cast_precision_loss)]
    let per_vm_window = openmetrics.len() as f64 / (windows.len() * vms) as f64;
    println!(
        "{} windows of {vms} VMs, {} bytes of OpenMetrics: {per_vm_window:.0} bytes per VM-window",
        windows.len(),
        openmetrics.len()
    );

    let server_dir = tempfile::tempdir().unwrap();
    run(Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&export)
        .arg(server_dir.path().join("data")));
    assert!(
        std::fs::read_dir(server_dir.path().join("data"))
            .unwrap()
            .any(|e| Path::new(&e.unwrap().file_name())
                .to_string_lossy()
                .starts_with("01")),
        "promtool made no block"
    );
    let server = prometheus_over(server_dir);
    let hostname = windows[0]["host"]["hostname"].as_str().unwrap().to_owned();
    Some(Imported {
        server,
        pid,
        windows,
        times,
        openmetrics,
        hostname,
        _dir: dir,
    })
}

#[test]
fn a_recording_exported_as_openmetrics_is_queried_in_prometheus() {
    const TEST: &str = "a_recording_exported_as_openmetrics_is_queried_in_prometheus";
    let Some(imported) = record_and_import(TEST) else {
        return;
    };
    let Imported {
        server,
        pid,
        windows,
        times,
        hostname,
        ..
    } = &imported;
    let pid = *pid;

    // The VM's series, with the host as instance and the job the dashboards expect.
    let last = export_time(*times.last().unwrap());
    let vcpus = query_at(server, &format!("kvmtop_vm_vcpus{{pid=\"{pid}\"}}"), &last);
    assert!(
        (single_value(&vcpus, "kvmtop_vm_vcpus") - 1.0).abs() < f64::EPSILON,
        "{vcpus}"
    );
    assert_eq!(vcpus[0]["metric"]["vm"], "kvmtop-openmetrics", "{vcpus}");
    assert_eq!(vcpus[0]["metric"]["instance"], hostname.as_str(), "{vcpus}");
    assert_eq!(vcpus[0]["metric"]["job"], "kvmtop", "{vcpus}");

    // At each window's time, the guest's memory per NUMA node is the JSON's for that window.
    let mut compared = 0;
    for (snapshot, &time) in windows.iter().zip(times) {
        let vm = snapshot["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|vm| vm["pid"] == pid)
            .expect("the guest in every window");
        for node in vm["numa"]["memory"]["by_node"].as_array().unwrap() {
            let promql = format!(
                "kvmtop_vm_memory_bytes{{pid=\"{pid}\",node=\"{}\"}}",
                node["node"]
            );
            let value = single_value(&query_at(server, &promql, &export_time(time)), &promql);
            #[allow(clippy::cast_precision_loss)]
            let bytes = node["bytes"].as_u64().unwrap() as f64;
            assert!(
                (value - bytes).abs() < 0.5,
                "{promql} at {}: {value}, the JSON has {bytes}",
                export_time(time)
            );
            compared += 1;
        }
    }
    println!("{compared} memory values at their windows' times match the JSON exactly");
    assert!(compared >= windows.len());

    // A dashboard panel, as Grafana sends it for this host, has data for the guest.
    let panel = dashboards::panel_queries()
        .into_iter()
        .find(|q| q.title.starts_with("Steal per VM"))
        .expect("the steal panel");
    let promql = panel.promql(&hostname.replace('.', "\\\\."));
    let result = query_at(server, &promql, &last);
    let ours: Vec<&Value> = dashboards::series_with_data(&result, &panel.legend_labels)
        .into_iter()
        .filter(|s| s["metric"]["pid"] == pid.to_string().as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{}: {promql}: {result}", panel.what());
    println!(
        "{}: steal {} for the guest",
        panel.what(),
        ours[0]["value"][1]
    );
}

#[test]
fn exported_counters_rise_by_each_windows_count() {
    const TEST: &str = "exported_counters_rise_by_each_windows_count";
    let Some(imported) = record_and_import(TEST) else {
        return;
    };
    let Imported {
        server,
        pid,
        windows,
        times,
        openmetrics,
        ..
    } = &imported;
    let pid = *pid;
    let last = export_time(*times.last().unwrap());

    // Each window's rise of the exit counter is what the JSON counts in that window.
    let (source, reason) = busiest_reason(windows, pid);
    let selector =
        format!("kvmtop_vm_exits_total{{pid=\"{pid}\",source=\"{source}\",reason=\"{reason}\"}}");
    let summed = format!("sum({selector})");
    let mut previous: Option<f64> = None;
    let mut compared = 0;
    for (snapshot, &time) in windows.iter().zip(times) {
        let value = single_value(&query_at(server, &summed, &export_time(time)), &summed);
        let counted = exits_in_window(snapshot, pid, &source, &reason);
        if let Some(previous) = previous {
            #[allow(clippy::cast_precision_loss)]
            let counted = counted as f64;
            assert!(
                (value - previous - counted).abs() < 0.5,
                "{summed} rose by {} in the window ending {}; the JSON counts {counted}; exported:\n{}",
                value - previous,
                export_time(time),
                openmetrics
                    .lines()
                    .filter(|l| l.starts_with("kvmtop_vm_exits_total{")
                        && l.contains(&format!("pid=\"{pid}\""))
                        && l.contains(&format!("reason=\"{reason}\"")))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            compared += 1;
        }
        previous = Some(value);
    }
    println!("{compared} windows' {source} {reason} exits match the JSON exactly");

    // rate() over the last 10 s against the JSON's exits over the same windows.
    let end = *times.last().unwrap();
    let start = end - RATE_RANGE_SECONDS * 1_000_000_000;
    let (mut exits, mut seconds) = (0u64, 0.0);
    for snapshot in windows
        .iter()
        .zip(times)
        .filter(|&(_, &t)| t > start)
        .map(|(s, _)| s)
    {
        exits += exits_in_window(snapshot, pid, &source, &reason);
        seconds += snapshot["window"]["duration_seconds"].as_f64().unwrap();
    }
    #[allow(clippy::cast_precision_loss)]
    let json_rate = exits as f64 / seconds;
    let rate = single_value(
        &query_at(
            server,
            &format!("sum(rate({selector}[{RATE_RANGE_SECONDS}s]))"),
            &last,
        ),
        "rate",
    );
    println!("{source} {reason} exits/s: rate() {rate:.0}, JSON {json_rate:.0}");
    assert!(json_rate > 0.0);
    assert!(
        (rate / json_rate - 1.0).abs() <= RATE_TOLERANCE,
        "rate() {rate:.0} vs the JSON's {json_rate:.0} exits/s"
    );
}
