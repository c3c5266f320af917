//! Series per VM at each `--metrics-detail` level, counted in the `/metrics` of real
//! `kvmtop serve` processes watching the demo guests (a port-I/O loop, an idle guest and a disk
//! reader, 2 vCPUs each), and the default level held to the budget the README states. A real
//! Prometheus scraping the default level counts the same series per VM on its own.

mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use guests::{Guest, GuestKind, GuestSpec};
use support::{
    Observed,
    prometheus::{Prometheus, http_get, serve_with_options},
};

/// The budget of series per VM at the default level, as the README states it: measurements,
/// without the advice in force (one `kvmtop_recommendation` per piece, which depends on how the
/// host is tuned and loaded, not on the level).
const BUDGET: usize = 64;
const ADVICE: &str = "kvmtop_recommendation";

/// How long series are counted once every guest shows: several windows, so that a series that
/// appears only after a while (a new exit reason, a detail value) is counted too.
const COUNTING: Duration = Duration::from_secs(6);

const LEVELS: [Option<&str>; 4] = [None, Some("vm"), Some("vcpu"), Some("full")];

#[test]
fn series_per_vm_at_each_level_and_the_default_within_budget() {
    const TEST: &str = "series_per_vm_at_each_level_and_the_default_within_budget";
    if let Some(reason) = support::missing_prerequisite(true, &["prometheus"]) {
        return support::skip(TEST, &reason);
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading the README");
    assert!(
        readme.contains(&format!("at most {BUDGET} series per VM")),
        "the README does not state the budget of {BUDGET} series per VM"
    );

    let guests = start_demo_guests();
    let pids: Vec<(String, u32)> = guests
        .iter()
        .map(|(name, guest)| ((*name).to_owned(), guest.pid()))
        .collect();
    let servers: Vec<(Observed, SocketAddr)> = LEVELS
        .iter()
        .map(|level| {
            let options = level.map_or_else(Vec::new, |l| vec!["--metrics-detail", l]);
            serve_with_options(support::kvmtop(), "0.5", &options)
        })
        .collect();
    let prometheus = Prometheus::start(servers[0].1);

    let mut counted: Vec<Counts> = Vec::new();
    for (level, (_, address)) in LEVELS.iter().zip(&servers) {
        let counts = count_series(*address, &pids);
        print_table(level.unwrap_or("default"), &counts, &pids);
        counted.push(counts);
    }

    let [default, vm, vcpu, full] = &counted[..] else {
        unreachable!()
    };
    for (name, pid) in &pids {
        let at = |counts: &Counts| counts.per_vm(*pid) - counts.advice(*pid);
        let (d, v, c, f) = (at(default), at(vm), at(vcpu), at(full));
        eprintln!(
            "{name}: default {d}, vm {v}, vcpu {c}, full {f} series, and {} pieces of advice",
            default.advice(*pid)
        );
        assert!(
            d <= BUDGET,
            "{name} has {d} series at the default level, over the budget of {BUDGET}:\n{:#?}",
            default.families(*pid)
        );
        // Each level adds to the one below: vCPUs apart, then buckets and detail values.
        assert!(v < c && c < f, "{name}: vm {v}, vcpu {c}, full {f}");
    }
    // The default level is `vm`: the same families, no vCPU kept apart, no detail value.
    assert_eq!(default.names(), vm.names());
    for counts in [default, vm] {
        assert!(!counts.any_label("vcpu=\""), "a vcpu label at level vm");
        assert!(!counts.names().contains("kvmtop_vm_exit_detail_rate"));
    }
    assert!(vcpu.any_label("vcpu=\"1\""), "no second vCPU at level vcpu");
    assert!(
        full.names()
            .contains("kvmtop_vm_exit_detail_value_events_total")
    );

    prometheus_counts_the_same(&prometheus, &pids);
    drop(servers);
    drop(guests);
}

/// The demo's three guests, with 2 vCPUs each.
fn start_demo_guests() -> Vec<(&'static str, Guest)> {
    let guests: Vec<(&str, Guest)> = [
        ("e2e-series-portio", GuestKind::PortIo, true),
        ("e2e-series-idle", GuestKind::Idle, false),
        ("e2e-series-disk", GuestKind::DiskReader, true),
    ]
    .into_iter()
    .map(|(name, kind, debug_threads)| {
        let mut spec = GuestSpec::new(kind)
            .name(name)
            .vcpus(2)
            .debug_threads(debug_threads);
        if kind == GuestKind::DiskReader {
            spec = spec.disk(guests::DiskOptions::default());
        }
        (name, Guest::start(&spec).expect("starting a demo guest"))
    })
    .collect();
    for (name, guest) in &guests {
        guest
            .wait_for_vcpus(support::START_LIMIT)
            .unwrap_or_else(|e| panic!("{name}'s vCPUs: {e}"));
    }
    guests
}

/// Series of one exposition: for each series about a VM, its pid, family and labels.
#[derive(Default)]
struct Counts {
    /// pid → family → the series' label sets (most seen in any one scrape).
    vms: BTreeMap<u32, BTreeMap<String, usize>>,
    /// Every series line's labels, to look for a label.
    labels: Vec<String>,
}

impl Counts {
    fn per_vm(&self, pid: u32) -> usize {
        self.vms.get(&pid).map_or(0, |f| f.values().sum())
    }

    fn advice(&self, pid: u32) -> usize {
        self.families(pid).get(ADVICE).copied().unwrap_or(0)
    }

    fn families(&self, pid: u32) -> BTreeMap<String, usize> {
        self.vms.get(&pid).cloned().unwrap_or_default()
    }

    /// The families about VMs, without the advice (which two agents may see come and go at
    /// different windows).
    fn names(&self) -> std::collections::BTreeSet<String> {
        self.vms
            .values()
            .flat_map(|f| f.keys().cloned())
            .filter(|name| name != ADVICE)
            .collect()
    }

    fn any_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l.contains(label))
    }
}

/// Scrapes `address` until every guest has its exit and (for the disk reader) block series, then
/// for [`COUNTING`] more, and keeps for each VM and family the most series seen in one scrape.
fn count_series(address: SocketAddr, pids: &[(String, u32)]) -> Counts {
    let deadline = Instant::now() + Duration::from_mins(2);
    let ready = |body: &str| {
        pids.iter().all(|(_, pid)| {
            let pid = format!("pid=\"{pid}\"");
            body.lines()
                .any(|l| l.starts_with("kvmtop_vm_exits_total{") && l.contains(&pid))
        }) && body.contains("kvmtop_vm_block_requests_total{")
    };
    loop {
        let (status, body) = http_get(address, "/metrics");
        if status == 200 && ready(&body) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every guest shows on {address}:\n{body}"
        );
        thread::sleep(Duration::from_millis(250));
    }
    let mut counts = Counts::default();
    let end = Instant::now() + COUNTING;
    while Instant::now() < end {
        let (status, body) = http_get(address, "/metrics");
        assert_eq!(status, 200, "{body}");
        let mut scrape: BTreeMap<u32, BTreeMap<String, usize>> = BTreeMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let (name, labels) = split_series(line);
            counts.labels.push(labels.to_owned());
            let Some(pid) = label(labels, "pid").and_then(|p| p.parse().ok()) else {
                continue;
            };
            *scrape
                .entry(pid)
                .or_default()
                .entry(family(name).to_owned())
                .or_default() += 1;
        }
        for (pid, families) in scrape {
            let most = counts.vms.entry(pid).or_default();
            for (family, n) in families {
                let kept = most.entry(family).or_default();
                *kept = (*kept).max(n);
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    counts
}

/// `name{labels} value` → (name, labels).
fn split_series(line: &str) -> (&str, &str) {
    match line.split_once('{') {
        Some((name, rest)) => (name, rest.rsplit_once('}').map_or(rest, |(l, _)| l)),
        None => (line.split(' ').next().unwrap_or(line), ""),
    }
}

/// A histogram's series under its family's name.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| base.ends_with("_seconds"))
        .unwrap_or(name)
}

/// The value of label `name` (values this test looks up hold no quote).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

fn print_table(level: &str, counts: &Counts, pids: &[(String, u32)]) {
    eprintln!("level {level}: series per VM by family");
    let families = counts.names();
    for family in &families {
        let row: Vec<String> = pids
            .iter()
            .map(|(_, pid)| {
                counts
                    .families(*pid)
                    .get(family)
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            })
            .collect();
        eprintln!("  {family:<48} {}", row.join("\t"));
    }
    let totals: Vec<String> = pids
        .iter()
        .map(|(name, pid)| format!("{name} {}", counts.per_vm(*pid)))
        .collect();
    eprintln!("  total: {}", totals.join(", "));
}

/// Prometheus, scraping the default level, counts each VM's series (without the advice) itself;
/// every count is within the budget.
fn prometheus_counts_the_same(prometheus: &Prometheus, pids: &[(String, u32)]) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let (status, body) = prometheus.query(&format!(
            "count by (pid) ({{pid=~\".+\",__name__!=\"{ADVICE}\"}})"
        ));
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let counted: BTreeMap<String, usize> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let pid = r["metric"]["pid"].as_str()?.to_owned();
                let n = r["value"][1].as_str()?.parse().ok()?;
                Some((pid, n))
            })
            .collect();
        let all = pids
            .iter()
            .all(|(_, pid)| counted.contains_key(&pid.to_string()));
        if status == 200 && all {
            for (name, pid) in pids {
                let n = counted[&pid.to_string()];
                eprintln!("Prometheus counts {n} series of {name} at the default level");
                assert!(
                    n <= BUDGET,
                    "Prometheus counts {n} series of {name}, over {BUDGET}"
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never counted every VM: {status} {body}"
        );
        thread::sleep(Duration::from_secs(1));
    }
}
