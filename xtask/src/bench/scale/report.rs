//! The scale bench's figures per configuration, the targets they are held against, and the
//! table. The bench reports; it does not fail on a missed target.

use serde::Serialize;

use super::{syscalls::Syscalls, verify::Correctness};

/// The agent's CPU with this many VMMs and more: at most this much of one core.
const CPU_TARGET_VMMS: usize = 100;
const CPU_TARGET_PERCENT: f64 = 1.0;
const RSS_TARGET_MIB: f64 = 64.0;
const SCRAPE_TARGET_MS: f64 = 100.0;
const SNAPSHOT_TARGET_SECONDS: f64 = 5.5;
/// "At most linear": the cost of one more VM between the two largest configurations may exceed
/// that between the two smallest by this factor, plus `LINEAR_SLACK` (percent of a core per VM),
/// before the growth counts as faster than linear. The host's noise needs both.
const LINEAR_FACTOR: f64 = 1.25;
const LINEAR_SLACK: f64 = 0.005;
/// "Flat in other processes": with the idle processes the agent may use this factor more, plus
/// `FLAT_SLACK` percent of a core.
const FLAT_FACTOR: f64 = 1.10;
const FLAT_SLACK: f64 = 0.1;

/// The scrapes of a window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Scrapes {
    pub count: usize,
    /// Requests that failed (connection, timeout, HTTP status).
    pub failed: usize,
    /// Responses that did not parse as the Prometheus text format.
    pub unparsed: usize,
    pub first_error: Option<String>,
    pub max_ms: Option<f64>,
    /// Nearest rank: with fewer than 100 scrapes this is the maximum.
    pub p99_ms: Option<f64>,
    pub mean_bytes: Option<f64>,
}

impl Scrapes {
    pub fn from_latencies(latencies_ms: &[f64], bytes: &[usize]) -> Self {
        let mut sorted = latencies_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let p99 = (!sorted.is_empty()).then(|| {
            let rank = (0.99 * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        });
        #[allow(clippy::cast_precision_loss)]
        let mean_bytes =
            (!bytes.is_empty()).then(|| bytes.iter().sum::<usize>() as f64 / bytes.len() as f64);
        Self {
            count: latencies_ms.len(),
            max_ms: sorted.last().copied(),
            p99_ms: p99,
            mean_bytes,
            ..Self::default()
        }
    }

    /// Every scrape answered and parsed.
    pub fn all_parsed(&self) -> bool {
        self.count > 0 && self.failed == 0 && self.unparsed == 0
    }
}

/// `kvmtop snapshot --duration 5`, run once after the window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotRun {
    pub wall_seconds: Option<f64>,
    pub correctness: Option<Correctness>,
    pub error: Option<String>,
}

/// One configuration: how many VMMs and idle processes, and what the agent did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measured {
    pub vmms: usize,
    pub idle_processes: usize,
    /// Why the configuration could not be set up or measured, if it could not.
    pub error: Option<String>,
    /// Processes on the host when the window started (the bench's VMMs and idle ones included).
    pub host_processes: Option<usize>,
    /// `/proc/loadavg` before and after.
    pub load_average: [String; 2],
    /// Until every VM of the bench was in `/metrics` with its vCPUs.
    pub warm_up_seconds: Option<f64>,
    pub window_seconds: Option<f64>,
    /// utime + stime over the window, percent of one core.
    pub agent_cpu_percent: Option<f64>,
    /// The same by thread name: `sampler` (discovery, the maps, the window's model, advice),
    /// `flight` (the flight recorder's encoding, compression and writes), `tokio-rt-worker`
    /// (`/metrics`), … Threads that ended within the window are left out.
    pub agent_cpu_percent_by_thread: std::collections::BTreeMap<String, f64>,
    /// `VmHWM` at the end of the window: the peak since start-up, parsing the kernel's BTF
    /// included.
    pub peak_rss_mib: Option<f64>,
    /// `VmRSS` at the end of the window.
    pub rss_mib: Option<f64>,
    pub scrapes: Scrapes,
    /// The last scrape of the window, held against the VMs started.
    pub metrics: Option<Correctness>,
    pub snapshot: SnapshotRun,
    pub syscalls: Option<Syscalls>,
    pub syscalls_skipped: Option<String>,
}

impl Measured {
    #[allow(clippy::cast_precision_loss)]
    pub fn cpu_per_vm(&self) -> Option<f64> {
        (self.vmms > 0)
            .then_some(())
            .and(self.agent_cpu_percent)
            .map(|cpu| cpu / self.vmms as f64)
    }

    /// Every VM right both in the last scrape and in the snapshot.
    pub fn vms_right(&self) -> Option<bool> {
        let metrics = self.metrics.as_ref()?;
        let snapshot = self.snapshot.correctness.as_ref()?;
        Some(metrics.all_right() && snapshot.all_right())
    }
}

/// One target, what was measured against it, and whether it was met (`None`: not measured).
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub pass: Option<bool>,
}

fn verdict(target: String, measured: String, pass: Option<bool>) -> Verdict {
    Verdict {
        target,
        measured,
        pass,
    }
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The targets, each held against every configuration it applies to.
pub fn verdicts(configs: &[Measured]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let measured: Vec<&Measured> = configs.iter().filter(|c| c.error.is_none()).collect();
    let label = |c: &Measured| format!("{} VMMs + {} processes", c.vmms, c.idle_processes);

    let at_scale: Vec<&&Measured> = measured
        .iter()
        .filter(|c| c.vmms >= CPU_TARGET_VMMS)
        .collect();
    if at_scale.is_empty() {
        verdicts.push(verdict(
            format!("agent ≤ {CPU_TARGET_PERCENT} % of one core at {CPU_TARGET_VMMS} VMMs"),
            format!("not measured: no configuration with {CPU_TARGET_VMMS} VMMs or more"),
            None,
        ));
    }
    for c in at_scale {
        verdicts.push(verdict(
            format!("agent ≤ {CPU_TARGET_PERCENT} % of one core ({})", label(c)),
            format!("{} %", fmt(c.agent_cpu_percent, 2)),
            c.agent_cpu_percent.map(|cpu| cpu <= CPU_TARGET_PERCENT),
        ));
    }
    verdicts.push(linear(&measured));
    verdicts.push(flat(&measured));
    for c in &measured {
        verdicts.push(verdict(
            format!("peak RSS ≤ {RSS_TARGET_MIB} MiB ({})", label(c)),
            format!("{} MiB", fmt(c.peak_rss_mib, 1)),
            c.peak_rss_mib.map(|mib| mib <= RSS_TARGET_MIB),
        ));
        let scrapes_ok = c.scrapes.all_parsed();
        verdicts.push(verdict(
            format!(
                "every scrape ≤ {SCRAPE_TARGET_MS} ms and parses ({})",
                label(c)
            ),
            format!(
                "max {} ms, {} of {} parsed",
                fmt(c.scrapes.max_ms, 1),
                c.scrapes.count - c.scrapes.failed - c.scrapes.unparsed,
                c.scrapes.count
            ),
            c.scrapes
                .max_ms
                .map(|max| scrapes_ok && max <= SCRAPE_TARGET_MS),
        ));
        verdicts.push(verdict(
            format!(
                "snapshot --duration 5 ≤ {SNAPSHOT_TARGET_SECONDS} s ({})",
                label(c)
            ),
            c.snapshot.error.clone().map_or_else(
                || format!("{} s", fmt(c.snapshot.wall_seconds, 2)),
                |err| format!("failed: {err}"),
            ),
            c.snapshot
                .wall_seconds
                .filter(|_| c.snapshot.error.is_none())
                .map(|s| s <= SNAPSHOT_TARGET_SECONDS),
        ));
        verdicts.push(verdict(
            format!("every VM and vCPU thread right ({})", label(c)),
            right_summary(c),
            c.vms_right(),
        ));
    }
    verdicts
}

fn right_summary(c: &Measured) -> String {
    let part = |name: &str, check: Option<&Correctness>| {
        check.map_or_else(
            || format!("{name} not checked"),
            |check| {
                let extra = if check.extra.is_empty() {
                    String::new()
                } else {
                    format!(", {} not VMs", check.extra.len())
                };
                format!("{name} {}/{}{extra}", check.right, check.expected)
            },
        )
    };
    format!(
        "{}; {}",
        part("scrape", c.metrics.as_ref()),
        part("snapshot", c.snapshot.correctness.as_ref())
    )
}

/// Growth with VMs: the added cost per VM between the two largest configurations without idle
/// processes against that between the two smallest.
fn linear(measured: &[&Measured]) -> Verdict {
    let target = format!(
        "cost at most linear in VMs (per added VM, largest step ≤ {LINEAR_FACTOR} × smallest \
         + {LINEAR_SLACK} %)"
    );
    let mut counted: Vec<(usize, f64)> = measured
        .iter()
        .filter(|c| c.idle_processes == 0)
        .filter_map(|c| Some((c.vmms, c.agent_cpu_percent?)))
        .collect();
    counted.sort_by_key(|point| point.0);
    counted.dedup_by_key(|point| point.0);
    #[allow(clippy::cast_precision_loss)]
    let points: Vec<(f64, f64)> = counted.iter().map(|(n, cpu)| (*n as f64, *cpu)).collect();
    if points.len() < 3 {
        return verdict(target, "not measured: needs three VMM counts".into(), None);
    }
    let slope = |a: (f64, f64), b: (f64, f64)| (b.1 - a.1) / (b.0 - a.0);
    let first = slope(points[0], points[1]);
    let n = points.len();
    let last = slope(points[n - 2], points[n - 1]);
    verdict(
        target,
        format!(
            "{:.4} % per VM from {} to {} VMMs, {:.4} % from {} to {}",
            first,
            points[0].0,
            points[1].0,
            last,
            points[n - 2].0,
            points[n - 1].0
        ),
        Some(last <= LINEAR_FACTOR * first.max(0.0) + LINEAR_SLACK),
    )
}

/// Cost with other processes: the same VMMs with and without the idle processes.
fn flat(measured: &[&Measured]) -> Verdict {
    let target = format!(
        "cost flat in other processes (with them ≤ {FLAT_FACTOR} × without + {FLAT_SLACK} %)"
    );
    let pair = measured
        .iter()
        .filter(|c| c.idle_processes > 0)
        .find_map(|with| {
            let without = measured
                .iter()
                .find(|c| c.vmms == with.vmms && c.idle_processes == 0)?;
            Some((with, without))
        });
    let Some((with, without)) = pair else {
        return verdict(
            target,
            "not measured: no pair of configurations with and without idle processes".into(),
            None,
        );
    };
    let (Some(cpu_with), Some(cpu_without)) = (with.agent_cpu_percent, without.agent_cpu_percent)
    else {
        return verdict(target, "not measured".into(), None);
    };
    verdict(
        target,
        format!(
            "{cpu_without:.2} % without, {cpu_with:.2} % with {} processes ({} VMMs)",
            with.idle_processes, with.vmms
        ),
        Some(cpu_with <= FLAT_FACTOR * cpu_without + FLAT_SLACK),
    )
}

/// Prints the table, the targets beside it, and each verdict.
pub fn print(configs: &[Measured], verdicts: &[Verdict]) {
    println!(
        "\nkvmtop serve --interval 1 --metrics-detail full at scale ({} configurations):",
        configs.len()
    );
    let header = [
        "VMMs",
        "idle procs",
        "other VMs",
        "agent CPU %",
        "CPU/VM %",
        "peak RSS MiB",
        "scrape max/p99 ms",
        "snapshot s",
        "VMs right",
        "syscalls/s",
    ];
    let targets = [
        String::new(),
        String::new(),
        String::new(),
        format!("≤ {CPU_TARGET_PERCENT} @{CPU_TARGET_VMMS}"),
        "linear".to_owned(),
        format!("≤ {RSS_TARGET_MIB}"),
        format!("≤ {SCRAPE_TARGET_MS}"),
        format!("≤ {SNAPSHOT_TARGET_SECONDS}"),
        "all".to_owned(),
        String::new(),
    ];
    let mut rows: Vec<Vec<String>> = vec![header.map(str::to_owned).to_vec()];
    for c in configs {
        if let Some(error) = &c.error {
            rows.push(vec![
                c.vmms.to_string(),
                c.idle_processes.to_string(),
                format!("not measured: {error}"),
            ]);
            continue;
        }
        rows.push(vec![
            c.vmms.to_string(),
            c.idle_processes.to_string(),
            other_vms(c).map_or_else(|| "—".to_owned(), |n| n.to_string()),
            fmt(c.agent_cpu_percent, 2),
            fmt(c.cpu_per_vm(), 3),
            fmt(c.peak_rss_mib, 1),
            format!("{}/{}", fmt(c.scrapes.max_ms, 0), fmt(c.scrapes.p99_ms, 0)),
            fmt(c.snapshot.wall_seconds, 2),
            right_cell(c),
            fmt(c.syscalls.as_ref().map(|s| s.total_per_second), 0),
        ]);
    }
    rows.push(targets.to_vec());
    print_rows(&rows);
    println!("\ntargets:");
    for v in verdicts {
        let mark = match v.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        println!("  {mark}  {}: {}", v.target, v.measured);
    }
    for c in configs.iter().filter(|c| c.error.is_none()) {
        let notes = notes(c);
        if !notes.is_empty() {
            println!("\n{} VMMs + {} processes:", c.vmms, c.idle_processes);
            for note in notes {
                println!("  {note}");
            }
        }
    }
}

/// VMs on the host that are not the bench's (other users' VMMs), as the snapshot saw them.
fn other_vms(c: &Measured) -> Option<usize> {
    c.snapshot
        .correctness
        .as_ref()
        .or(c.metrics.as_ref())
        .map(|check| check.foreign)
}

fn right_cell(c: &Measured) -> String {
    let snapshot = c.snapshot.correctness.as_ref();
    let cell = snapshot.map_or_else(|| "—".to_owned(), |s| format!("{}/{}", s.right, s.expected));
    match c.vms_right() {
        Some(true) => cell,
        Some(false) => format!("{cell} !"),
        None => format!("{cell} ?"),
    }
}

/// Where the syscalls go, what was wrong, and other VMs present.
fn notes(c: &Measured) -> Vec<String> {
    let mut notes = Vec::new();
    if !c.agent_cpu_percent_by_thread.is_empty() {
        let mut threads: Vec<(&String, &f64)> = c.agent_cpu_percent_by_thread.iter().collect();
        threads.sort_by(|a, b| b.1.total_cmp(a.1));
        let threads: Vec<String> = threads
            .iter()
            .map(|(name, percent)| format!("{name} {percent:.2} %"))
            .collect();
        notes.push(format!("agent CPU by thread: {}", threads.join(", ")));
    }
    notes.push(format!(
        "{} processes on the host; load average {} before, {} after; agent RSS at the end {} MiB",
        c.host_processes
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        c.load_average[0],
        c.load_average[1],
        fmt(c.rss_mib, 1)
    ));
    if let Some(syscalls) = &c.syscalls {
        let top: Vec<String> = super::syscalls::top(syscalls, 8)
            .iter()
            .map(|(name, rate)| format!("{name} {rate:.0}"))
            .collect();
        notes.push(format!("syscalls/s: {}", top.join(", ")));
    } else if let Some(why) = &c.syscalls_skipped {
        notes.push(format!("syscalls not counted: {why}"));
    }
    for (source, check) in [
        ("scrape", c.metrics.as_ref()),
        ("snapshot", c.snapshot.correctness.as_ref()),
    ] {
        let Some(check) = check else { continue };
        for wrong in &check.wrong {
            notes.push(format!("{source}: {wrong}"));
        }
        if !check.extra.is_empty() {
            notes.push(format!(
                "{source}: shown as VMs but holding none: {:?}",
                check.extra
            ));
        }
    }
    if let Some(err) = &c.snapshot.error {
        notes.push(format!("snapshot: {err}"));
    }
    if let Some(err) = &c.scrapes.first_error {
        notes.push(format!("scrape: {err}"));
    }
    notes
}

fn print_rows(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter(|row| row.len() == columns)
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if row.len() < columns && i == row.len() - 1 {
                    cell.clone()
                } else {
                    format!("{cell:>width$}", width = widths[i])
                }
            })
            .collect();
        println!("  {}", cells.join("  "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vmms: usize, idle: usize, cpu: f64) -> Measured {
        let right = Correctness {
            expected: vmms,
            right: vmms,
            ..Correctness::default()
        };
        Measured {
            vmms,
            idle_processes: idle,
            agent_cpu_percent: Some(cpu),
            peak_rss_mib: Some(30.0),
            scrapes: Scrapes::from_latencies(&[10.0, 20.0, 30.0], &[100]),
            metrics: Some(right.clone()),
            snapshot: SnapshotRun {
                wall_seconds: Some(5.2),
                correctness: Some(right),
                error: None,
            },
            ..Measured::default()
        }
    }

    fn pass_of(verdicts: &[Verdict], starts: &str) -> Vec<Option<bool>> {
        verdicts
            .iter()
            .filter(|v| v.target.starts_with(starts))
            .map(|v| v.pass)
            .collect()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let latencies: Vec<f64> = (1..=200).map(f64::from).collect();
        let scrapes = Scrapes::from_latencies(&latencies, &[]);
        assert_eq!(scrapes.p99_ms, Some(198.0));
        assert_eq!(scrapes.max_ms, Some(200.0));
        let few = Scrapes::from_latencies(&[3.0, 1.0, 2.0], &[]);
        assert_eq!(few.p99_ms, Some(3.0));
        assert_eq!(Scrapes::from_latencies(&[], &[]).p99_ms, None);
    }

    #[test]
    fn linear_growth_passes_and_faster_growth_fails() {
        // Today's agent: 1.05, 3.9, 9.1 % at 10, 50, 100 VMMs.
        let today = [config(10, 0, 1.05), config(50, 0, 3.9), config(100, 0, 9.1)];
        let v = verdicts(&today);
        assert_eq!(pass_of(&v, "cost at most linear"), [Some(false)]);
        assert_eq!(pass_of(&v, "agent ≤"), [Some(false)]);
        let linear = [config(10, 0, 0.2), config(50, 0, 0.5), config(100, 0, 0.88)];
        let v = verdicts(&linear);
        assert_eq!(pass_of(&v, "cost at most linear"), [Some(true)]);
        assert_eq!(pass_of(&v, "agent ≤"), [Some(true)]);
        assert_eq!(pass_of(&v, "cost flat"), [None]);
    }

    #[test]
    fn idle_processes_must_not_add_cost() {
        let base = [config(10, 0, 0.2), config(50, 0, 0.5), config(100, 0, 0.9)];
        let with = |cpu| {
            let mut all = base.to_vec();
            all.push(config(100, 2000, cpu));
            verdicts(&all)
        };
        assert_eq!(pass_of(&with(0.95), "cost flat"), [Some(true)]);
        assert_eq!(pass_of(&with(1.5), "cost flat"), [Some(false)]);
        // Both 100-VMM configurations are held to the CPU target.
        assert_eq!(pass_of(&with(1.5), "agent ≤"), [Some(true), Some(false)]);
    }

    #[test]
    fn per_configuration_targets() {
        let mut slow = config(10, 0, 0.2);
        slow.peak_rss_mib = Some(65.0);
        slow.scrapes = Scrapes::from_latencies(&[150.0], &[]);
        slow.snapshot.wall_seconds = Some(7.2);
        slow.snapshot.correctness.as_mut().unwrap().right = 9;
        let v = verdicts(&[slow.clone()]);
        for target in ["peak RSS", "every scrape", "snapshot", "every VM"] {
            assert_eq!(pass_of(&v, target), [Some(false)], "{target}");
        }
        let mut unparsed = config(10, 0, 0.2);
        unparsed.scrapes.unparsed = 1;
        assert_eq!(
            pass_of(&verdicts(&[unparsed]), "every scrape"),
            [Some(false)]
        );
        // A configuration that could not be set up is in the table but held to nothing.
        let mut broken = config(100, 0, 0.0);
        broken.error = Some("could not start".into());
        let v = verdicts(&[broken]);
        assert_eq!(pass_of(&v, "agent ≤"), [None]);
        assert!(pass_of(&v, "peak RSS").is_empty());
    }
}
