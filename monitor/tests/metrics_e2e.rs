//! `kvmtop serve`: the exposition passes `promtool check metrics` at the default
//! `--metrics-detail` level and at `full`, and a real Prometheus server scraping both on
//! loopback returns the exit series of a running guest and data for every dashboard panel: at
//! the default level every panel but those that say they need more, at `full` every one.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use guests::{Guest, GuestKind, GuestSpec};
use support::{
    dashboards,
    prometheus::{Prometheus, http_get},
};

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

    // One agent at the default level, `vm`, which every panel not marked otherwise must
    // serve; one at `full`, which every panel must serve.
    let (_default, default) = support::prometheus::serve("0.5");
    let (_full, full) = support::prometheus::serve_with_options(
        support::kvmtop(),
        "0.5",
        &["--metrics-detail", "full"],
    );

    // Wait until the guest's exits show up, then lint the whole exposition.
    for address in [default, full] {
        let exposition = exposition_with_exits(address);
        support::prometheus::assert_promtool_accepts(&exposition);
        every_attached_source_has_a_loss_counter(&exposition);
    }
    a_client_that_never_finishes_its_headers_is_cut_off(default);

    // Anything but GET /metrics is refused.
    assert_eq!(http_get(default, "/").0, 404);
    assert_eq!(http_get(default, "/metrics/../../etc/passwd").0, 404);

    // A real Prometheus scraping both.
    let prometheus = Prometheus::start_scraping(&[default, full]);

    // The port-I/O exits, per vCPU at `full`, per VM (no `vcpu` label) at the default.
    for (address, vcpu) in [(full, Some("0")), (default, None)] {
        let series = exits_series(&prometheus, address, &guest.pid().to_string());
        assert_eq!(series["metric"]["vcpu"].as_str(), vcpu, "{series}");
    }
    let kvm_exit_silent = !http_get(full, "/metrics")
        .1
        .lines()
        .any(|l| l.starts_with("kvmtop_vm_exits_total{") && l.contains("source=\"kvm_exit\""));
    // rate() over 15 s needs a few scrapes, and slow scrapes need more time.
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let mut empty = panels_without_data(&prometheus, default, "vm", kvm_exit_silent);
        empty.extend(panels_without_data(
            &prometheus,
            full,
            "full",
            kvm_exit_silent,
        ));
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

/// The exposition of `kvmtop serve` at `address` once it has the port-I/O guest's exits.
fn exposition_with_exits(address: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(address, "/metrics");
        if status == 200 && body.contains(VM_NAME) && body.contains("kvmtop_vm_exits_total{") {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no exit series for {VM_NAME} at {address}; last body:\n{body}"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// The port-I/O guest's exits to its VMM for port I/O as Prometheus has scraped them from the
/// agent at `address`: one series, positive, of the guest's pid.
fn exits_series(prometheus: &Prometheus, address: SocketAddr, pid: &str) -> serde_json::Value {
    let query = format!(
        "kvmtop_vm_exits_total{{instance=\"{address}\",vm=\"{VM_NAME}\",source=\"userspace\",reason=\"IO\"}}"
    );
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
                assert_eq!(series[0]["metric"]["pid"], pid);
                return series[0].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series; last: {status} {body}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// Evaluates every panel query of the Grafana dashboards on the live Prometheus, for the agent
/// at `address` serving `level`: each must parse and run. Returns those that gave no data (a
/// NaN is none, nor a series without a label the panel's legend names), leaving out the panels that say they need a higher level than `level` and
/// the ones that may rightly have none, such as hardware exits on a host where `kvm:kvm_exit`
/// is silent.
fn panels_without_data(
    prometheus: &Prometheus,
    address: SocketAddr,
    level: &str,
    kvm_exit_silent: bool,
) -> Vec<String> {
    let mut checked = 0;
    let mut without_data = Vec::new();
    for panel in dashboards::panel_queries() {
        let promql = panel.promql(&address.to_string());
        let (status, body) = prometheus.query(&promql);
        assert_eq!(status, 200, "{}: {promql}: {body}", panel.what());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let empty = dashboards::series_with_data(&answer["data"]["result"], &panel.legend_labels)
            .is_empty();
        let expr = &panel.expr;
        // Hardware exits on a host where kvm_exit is silent, lost events, and advice (a
        // well-tuned host has none) may rightly have no series.
        let may_be_empty = (kvm_exit_silent && expr.contains("source=\"kvm_exit\""))
            || expr.contains("dropped")
            || expr.contains("kvmtop_recommendation")
            // Shootdowns need memory-map changes in the VMM, which the test guests do
            // not make.
            || expr.contains("tlb_shootdowns");
        let needs_more = !dashboards::level_serves(level, panel.needs.as_deref());
        if empty && !may_be_empty && !needs_more {
            without_data.push(format!("{} at level {level}: {promql}", panel.what()));
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} dashboard queries found");
    eprintln!(
        "evaluated {checked} dashboard queries on Prometheus for level {level}, {} without data",
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
