//! `kvmtop serve`: the exposition passes `promtool check metrics`, and a real Prometheus server
//! scraping it on loopback returns the exit series of a running guest.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use guests::{Guest, GuestKind, GuestSpec};
use support::prometheus::{Prometheus, http_get};

const VM_NAME: &str = "kvmtop-e2e-metrics";

#[test]
fn metrics_pass_promtool_and_prometheus_scrapes_the_exit_series() {
    const TEST: &str = "metrics_pass_promtool_and_prometheus_scrapes_the_exit_series";
    if let Some(reason) = support::missing_prerequisite(true, &["promtool", "prometheus"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(VM_NAME);
    // A second guest reads its disk, for the block I/O series and panels.
    let disk_reader = Guest::start(
        &GuestSpec::new(GuestKind::DiskReader)
            .name("kvmtop-e2e-metrics-disk")
            .disk(guests::DiskOptions::default()),
    )
    .expect("starting the disk-reading guest");
    disk_reader
        .wait_for_vcpus(support::START_LIMIT)
        .expect("the disk reader's vCPUs");

    let (_kvmtop, address) = support::prometheus::serve("0.5");

    // Wait until the guest's exits show up, then lint the whole exposition.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exposition = loop {
        let (status, body) = http_get(address, "/metrics");
        if status == 200 && body.contains(VM_NAME) && body.contains("kvmtop_vm_exits_total{") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no exit series for {VM_NAME}; last body:\n{body}"
        );
        thread::sleep(Duration::from_millis(250));
    };
    a_client_that_never_finishes_its_headers_is_cut_off(address);
    support::prometheus::assert_promtool_accepts(&exposition);
    every_attached_source_has_a_loss_counter(&exposition);

    // Anything but GET /metrics is refused.
    assert_eq!(http_get(address, "/").0, 404);
    assert_eq!(http_get(address, "/metrics/../../etc/passwd").0, 404);

    // A real Prometheus scraping kvmtop.
    let prometheus = Prometheus::start(address);

    let query =
        format!("kvmtop_vm_exits_total{{vm=\"{VM_NAME}\",source=\"userspace\",reason=\"IO\"}}");
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let (status, body) = prometheus.query(&query);
        if status == 200 {
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(series) = answer["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
            {
                let value: f64 = series[0]["value"][1].as_str().unwrap().parse().unwrap();
                assert!(value > 0.0, "IO exits counter should be positive: {body}");
                assert_eq!(series[0]["metric"]["pid"], guest.pid().to_string());
                assert_eq!(series[0]["metric"]["vcpu"], "0");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series; last: {status} {body}"
        );
        thread::sleep(Duration::from_millis(500));
    }
    let kvm_exit_silent = !http_get(address, "/metrics")
        .1
        .lines()
        .any(|l| l.starts_with("kvmtop_vm_exits_total{") && l.contains("source=\"kvm_exit\""));
    // rate() over 15 s needs a few scrapes, and slow scrapes need more time.
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let empty = panels_without_data(&prometheus, kvm_exit_silent);
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels with no data after a minute:\n{}",
            empty.join("\n")
        );
        thread::sleep(Duration::from_secs(2));
    }
}

/// Evaluates every panel query of the Grafana dashboards on the live Prometheus: each must parse
/// and run. Returns those that gave no data, leaving out the ones that may rightly have none,
/// such as hardware exits on a host where `kvm:kvm_exit` is silent.
fn panels_without_data(prometheus: &Prometheus, kvm_exit_silent: bool) -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");
    let mut checked = 0;
    let mut without_data = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                let promql = expr
                    .replace("$__rate_interval", "15s")
                    .replace("$instance", ".*")
                    .replace("$vm", ".*");
                let (status, body) = prometheus.query(&promql);
                assert_eq!(
                    status,
                    200,
                    "{}: panel {:?}: {promql}: {body}",
                    path.display(),
                    panel["title"]
                );
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                let empty = answer["data"]["result"]
                    .as_array()
                    .is_none_or(Vec::is_empty);
                // Hardware exits on a host where kvm_exit is silent, lost events, and advice (a
                // well-tuned host has none) may rightly have no series.
                let may_be_empty = (kvm_exit_silent && expr.contains("source=\"kvm_exit\""))
                    || expr.contains("dropped")
                    || expr.contains("kvmtop_recommendation")
                    // Shootdowns need memory-map changes in the VMM, which the test guests do
                    // not make.
                    || expr.contains("tlb_shootdowns");
                if empty && !may_be_empty {
                    without_data.push(format!(
                        "{}: panel {:?}: {promql}",
                        path.display(),
                        panel["title"]
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} dashboard queries found");
    eprintln!(
        "evaluated {checked} dashboard queries on Prometheus, {} without data",
        without_data.len()
    );
    without_data
}

/// Losses are never left out: every attached source (`kvmtop_source_up` 1) has its
/// `kvmtop_source_lost_events_total` series, 0 when it lost nothing.
fn every_attached_source_has_a_loss_counter(exposition: &str) {
    let attached: Vec<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("kvmtop_source_up")?.strip_suffix(" 1"))
        .collect();
    assert!(!attached.is_empty(), "no attached source:\n{exposition}");
    for labels in attached {
        let series = format!("kvmtop_source_lost_events_total{labels} ");
        assert!(
            exposition.lines().any(|l| l.starts_with(&series)),
            "no loss counter for {labels}:\n{exposition}"
        );
    }
}

/// A connection that sends half a request is closed by the server within its header timeout
/// (5 s), so idle or slow clients cannot hold connections open.
fn a_client_that_never_finishes_its_headers_is_cut_off(address: SocketAddr) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    // The server answers 408 or just closes; either way the read ends well before 15 s.
    let outcome = stream.read_to_end(&mut reply);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "a half-sent request held the connection for {waited:?} ({outcome:?})"
    );
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}
