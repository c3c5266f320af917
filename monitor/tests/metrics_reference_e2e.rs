//! `docs/metrics.md` against a real `kvmtop serve`: every metric family a live `/metrics`
//! serves over a port-I/O guest and a disk reader, at the default `--metrics-detail` level and
//! at `full`, is in the reference with the same type, help and label names at that level; every
//! reference entry is seen live unless the reference says why it may be absent on this machine,
//! and the test prints the entries not seen with that reason.
//!
//! The live expositions are read with the `prometheus-parse` crate, not with kvmtop's own code.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use guests::{Guest, GuestKind, GuestSpec};
use prometheus_parse::{Scrape, Value};
use support::prometheus::{http_get, serve_with_options};

/// What the reference says of one metric.
#[derive(Debug, Default)]
struct Documented {
    kind: String,
    help: String,
    /// Label names per `--metrics-detail` level.
    labels: BTreeMap<String, BTreeSet<String>>,
    absent_because: Option<String>,
}

/// What a live exposition serves of one metric family.
#[derive(Debug, Default)]
struct Served {
    kind: &'static str,
    help: String,
    labels: BTreeSet<String>,
}

#[test]
fn live_metrics_match_the_reference() {
    const TEST: &str = "live_metrics_match_the_reference";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let reference = reference();
    assert!(reference.len() > 30, "too few entries: {reference:?}");

    let (_portio, _) = support::start_portio("kvmtop-e2e-reference");
    let disk = Guest::start(
        &GuestSpec::new(GuestKind::DiskReader)
            .name("kvmtop-e2e-reference-disk")
            .disk(guests::DiskOptions::default()),
    )
    .expect("starting the disk-reading guest");
    disk.wait_for_vcpus(support::START_LIMIT)
        .expect("the disk reader's vCPUs");

    let (_vm_agent, vm_address) = serve_with_options(support::kvmtop(), "0.5", &[]);
    let (_full_agent, full_address) =
        serve_with_options(support::kvmtop(), "0.5", &["--metrics-detail", "full"]);

    // Scrape until every entry the reference expects here is served at `full` (the numa_maps
    // and smaps_rollup figures and the block histograms take a few windows), or a minute.
    let required: BTreeSet<&str> = reference
        .iter()
        .filter(|(_, d)| d.absent_because.is_none() && d.labels.contains_key("full"))
        .map(|(name, _)| name.as_str())
        .collect();
    let deadline = Instant::now() + Duration::from_mins(1);
    let full = loop {
        let served = served(full_address);
        let missing: Vec<&&str> = required
            .iter()
            .filter(|n| !served.contains_key(**n))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break served;
        }
        thread::sleep(Duration::from_secs(1));
    };
    let vm = served(vm_address);

    let mut problems = Vec::new();
    for (level, served) in [("vm", &vm), ("full", &full)] {
        problems.extend(disagreements(&reference, level, served));
    }
    let mut unseen = Vec::new();
    for (name, documented) in &reference {
        for (level, served) in [("vm", &vm), ("full", &full)] {
            if !documented.labels.contains_key(level) || served.contains_key(name) {
                continue;
            }
            match &documented.absent_because {
                Some(why) => unseen.push(format!("{name} at {level}: {why}")),
                None => problems.push(format!(
                    "{name}: in the reference at {level} but not served here, and the reference \
                     gives no reason it may be absent"
                )),
            }
        }
    }
    eprintln!(
        "{} reference entries, {} families served at vm, {} at full",
        reference.len(),
        vm.len(),
        full.len()
    );
    for line in &unseen {
        eprintln!("not seen here (the reference says why): {line}");
    }
    assert!(
        problems.is_empty(),
        "the live /metrics and docs/metrics.md disagree (regenerate the reference with \
         `KVMTOP_UPDATE_METRICS_REFERENCE=1 cargo test -p monitor --lib output::reference` if \
         the code changed):\n{}",
        problems.join("\n")
    );
}

/// Where the live families and the reference differ at `level`.
fn disagreements(
    reference: &BTreeMap<String, Documented>,
    level: &str,
    served: &BTreeMap<String, Served>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, live) in served {
        let Some(documented) = reference.get(name) else {
            problems.push(format!(
                "{name}: served at {level}, missing from the reference"
            ));
            continue;
        };
        if documented.kind != live.kind {
            problems.push(format!(
                "{name}: served as a {} at {level}, the reference says {}",
                live.kind, documented.kind
            ));
        }
        if documented.help != live.help {
            problems.push(format!(
                "{name}: help differs at {level}:\n  served:    {}\n  reference: {}",
                live.help, documented.help
            ));
        }
        match documented.labels.get(level) {
            None => problems.push(format!(
                "{name}: served at {level}, the reference lists it only at {:?}",
                documented.labels.keys().collect::<Vec<_>>()
            )),
            Some(labels) if *labels != live.labels => problems.push(format!(
                "{name}: labels at {level} are {:?}, the reference says {labels:?}",
                live.labels
            )),
            Some(_) => {}
        }
    }
    problems
}

/// The metric families served at `address`, read by `prometheus-parse`, once it serves a window
/// with the VMs in it.
fn served(address: SocketAddr) -> BTreeMap<String, Served> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = http_get(address, "/metrics");
        if status == 200 && body.contains("kvmtop_vm_info{") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no window with VMs at {address}: {status} {body}"
        );
        thread::sleep(Duration::from_millis(250));
    };
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parsing /metrics");
    let histograms: BTreeSet<String> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .map(|s| s.metric.clone())
        .collect();
    let mut families: BTreeMap<String, Served> = BTreeMap::new();
    for sample in &scrape.samples {
        // A histogram's `_sum` and `_count` come as untyped samples of their own names.
        let of_histogram = ["_sum", "_count"].iter().any(|suffix| {
            sample
                .metric
                .strip_suffix(suffix)
                .is_some_and(|base| histograms.contains(base))
        });
        if of_histogram {
            continue;
        }
        let kind = match sample.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            Value::Summary(_) => "summary",
            Value::Untyped(_) => "untyped",
        };
        let family = families.entry(sample.metric.clone()).or_default();
        family.kind = kind;
        family.help = scrape
            .docs
            .get(&sample.metric)
            .map(|h| h.replace("\\n", "\n").replace("\\\\", "\\"))
            .unwrap_or_default();
        family
            .labels
            .extend(sample.labels.keys().filter(|k| *k != "le").cloned());
    }
    families
}

/// `docs/metrics.md`, parsed: each metric's section (a `###` heading naming it) with its type,
/// labels per level, help and reason it may be absent on the test machine.
fn reference() -> BTreeMap<String, Documented> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("reading docs/metrics.md");
    let mut reference = BTreeMap::new();
    let mut current: Option<(String, Documented)> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### `") {
            if let Some((name, documented)) = current.take() {
                reference.insert(name, documented);
            }
            let name = heading.trim_end_matches('`').to_owned();
            current = Some((name, Documented::default()));
            continue;
        }
        let Some((_, documented)) = current.as_mut() else {
            continue;
        };
        if let Some(kind) = line.strip_prefix("- **type:** ") {
            kind.clone_into(&mut documented.kind);
        } else if let Some(help) = line.strip_prefix("- **help:** ") {
            help.clone_into(&mut documented.help);
        } else if let Some(why) = line.strip_prefix("- **may be absent on the test machine:** ") {
            documented.absent_because = Some(why.to_owned());
        } else if let Some(rest) = line.strip_prefix("- **labels at ") {
            let (levels, labels) = rest.split_once(":** ").expect("labels line");
            let labels: BTreeSet<String> = backticked(labels).collect();
            for level in backticked(levels) {
                documented.labels.insert(level, labels.clone());
            }
        }
    }
    if let Some((name, documented)) = current {
        reference.insert(name, documented);
    }
    reference
}

/// The `` `quoted` `` items of a comma-separated list.
fn backticked(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(", ")
        .map(|item| item.trim().trim_matches('`').to_owned())
        .filter(|item| !item.is_empty())
}
