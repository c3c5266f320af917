//! The metrics reference, `docs/metrics.md`: every metric family `/metrics` serves, with its
//! type, label names at each `--metrics-detail` level, help text and the signal family that
//! serves it, generated from the exporter itself over a snapshot that fills every family.
//!
//! What the exporter cannot say — when a family has series at all, and why one may be missing
//! on a host like the test machine — is in [`NOTES`], one entry per metric; a test holds the
//! notes, the source's metric names and the committed file to the exporter.

use std::{collections::BTreeMap, fmt::Write as _};

use prometheus::proto::{MetricFamily, MetricType};

use crate::{
    model::Snapshot,
    output::{
        metrics::families_by_group,
        series::{Context, Level, details},
    },
    testing::fixture,
};

/// Where the reference is, from the crate's directory.
const COMMITTED: &str = "../docs/metrics.md";

/// Set to regenerate the committed reference instead of comparing with it.
const UPDATE: &str = "KVMTOP_UPDATE_METRICS_REFERENCE";

/// The command that regenerates the reference, named in its header and in the test's failure.
const REGENERATE: &str =
    "KVMTOP_UPDATE_METRICS_REFERENCE=1 cargo test -p monitor --lib output::reference";

/// Per metric: when it has series, and, where it may have none on the test machine (a 2-CPU
/// PVM guest with one NUMA node: see the project's test-machine notes) over the e2e workload
/// (a port-I/O guest and a disk reader), why. The e2e test `metrics_reference_e2e` requires
/// every metric without that reason.
pub const NOTES: &[(&str, &str, Option<&str>)] = &[
    (
        "kvmtop_host_info",
        "Always: one series, its labels empty where a setting could not be read.",
        None,
    ),
    (
        "kvmtop_host_cpus",
        "When `/sys/devices/system/cpu/online` is readable.",
        None,
    ),
    (
        "kvmtop_host_cpu_busy_ratio",
        "When `/proc/stat` is readable, from the second reading on.",
        None,
    ),
    (
        "kvmtop_host_memory_bytes",
        "When `/proc/meminfo` is readable.",
        None,
    ),
    (
        "kvmtop_host_memory_available_bytes",
        "When `/proc/meminfo` is readable.",
        None,
    ),
    (
        "kvmtop_host_swap_bytes",
        "When `/proc/meminfo` is readable (0 without swap).",
        None,
    ),
    (
        "kvmtop_host_swap_free_bytes",
        "When `/proc/meminfo` is readable (0 without swap).",
        None,
    ),
    (
        "kvmtop_host_ksm_pages_sharing",
        "When the kernel has KSM (`/sys/kernel/mm/ksm`).",
        None,
    ),
    ("kvmtop_vm_info", "One series per VM kvmtop watches.", None),
    ("kvmtop_vm_vcpus", "One series per VM kvmtop watches.", None),
    (
        "kvmtop_source_up",
        "Always: one series per kernel source of every signal family, 0 when unavailable.",
        None,
    ),
    (
        "kvmtop_events_dropped_total",
        "Always: one series per signal family.",
        None,
    ),
    (
        "kvmtop_source_lost_events_total",
        "One series per attached source (none for an unavailable one).",
        None,
    ),
    (
        "kvmtop_program_skipped_events_total",
        "Per kernel program once the kernel skipped it for an event (another BPF program was \
         running on that CPU, typically another tracer on the same tracepoints).",
        Some("no other tracer runs beside kvmtop in the test, so no program skips an event"),
    ),
    (
        "kvmtop_recommendation",
        "While a tuning rule holds (see `kvmtop explain`): one series per rule and target.",
        Some("advice fires only when the guests cross a rule's threshold for two windows"),
    ),
    (
        "kvmtop_vm_exits_total",
        "Once a VM has exited: per source and reason (`kvm_exit` only where `kvm:kvm_exit` \
         fires, not under nested or PVM KVM).",
        None,
    ),
    (
        "kvmtop_vm_exit_latency_seconds",
        "Per VM and reason whose handling time is measured (`--collect latency` or `details`).",
        None,
    ),
    (
        "kvmtop_vcpu_exit_time_seconds_total",
        "Per vCPU (or VM) and exit source once time was spent in it (`--collect latency` or \
         `details`).",
        None,
    ),
    (
        "kvmtop_vm_exit_detail_events_total",
        "Per VM and kind of exit detail seen (`--collect details`, the default).",
        None,
    ),
    (
        "kvmtop_vm_exit_detail_rate",
        "At `--metrics-detail full` only: the top values of each kind in the last window.",
        None,
    ),
    (
        "kvmtop_vm_exit_detail_value_events_total",
        "At `--metrics-detail full` only: each value that was among the top ones once, and \
         `other`.",
        None,
    ),
    (
        "kvmtop_vcpu_run_queue_wait_seconds_total",
        "Per vCPU (or VM) while `sched_switch` is attached.",
        None,
    ),
    (
        "kvmtop_vcpu_run_seconds_total",
        "Per vCPU (or VM) while `sched_switch` is attached.",
        None,
    ),
    (
        "kvmtop_vcpu_context_switches_total",
        "Per vCPU (or VM) while `sched_switch` is attached.",
        None,
    ),
    (
        "kvmtop_vcpu_migrations_total",
        "Per vCPU (or VM) and class while migrations are counted (`sched_switch`).",
        None,
    ),
    (
        "kvmtop_vm_thread_run_queue_wait_seconds_total",
        "Per VM and class of its threads while `sched_switch` is attached.",
        None,
    ),
    (
        "kvmtop_vm_run_queue_wait_seconds",
        "Per VM once one of its vCPU threads waited for a CPU.",
        None,
    ),
    (
        "kvmtop_vm_memory_bytes",
        "Per VM and NUMA node once `/proc/PID/numa_maps` was read (every 30 s at most).",
        None,
    ),
    (
        "kvmtop_vm_huge_page_coverage_ratio",
        "Per VM once `/proc/PID/smaps_rollup` was read (every 30 s at most).",
        None,
    ),
    (
        "kvmtop_numa_fault_source",
        "Always: one series saying where NUMA fault figures come from.",
        None,
    ),
    (
        "kvmtop_vm_numa_placement_decisions_total",
        "Per VM while the `sched_*_numa` tracepoints are attached (they fire only on hosts with \
         more than one node and NUMA balancing on).",
        None,
    ),
    (
        "kvmtop_vm_numa_balancing_pages_migrated_total",
        "Per VM only while `task_numa_fault` cannot be hooked and the procfs fallback runs \
         (`kvmtop_numa_fault_source{kind=\"procfs_fallback\"}`), on kernels with NUMA \
         balancing.",
        None,
    ),
    (
        "kvmtop_vm_numa_recent_remote_fault_share",
        "Per VM only from the procfs fallback, once the VM's threads have recent NUMA hinting \
         faults.",
        Some(
            "one NUMA node and kernel.numa_balancing=0: no NUMA hinting fault ever happens, so \
             there is no share to give",
        ),
    ),
    (
        "kvmtop_vm_tlb_shootdowns_total",
        "Per VM while `tlb_flush` is attached.",
        None,
    ),
    (
        "kvmtop_cpu_tlb_shootdowns_received_total",
        "Per host CPU while `tlb_flush` is attached.",
        None,
    ),
    (
        "kvmtop_vm_block_requests_total",
        "Per VM, host device and operation once the VM's requests reached a device.",
        None,
    ),
    (
        "kvmtop_vm_block_bytes_total",
        "Per VM, host device and operation once the VM's requests reached a device.",
        None,
    ),
    (
        "kvmtop_vm_block_in_flight_requests",
        "Per VM and host device its requests reached.",
        None,
    ),
    (
        "kvmtop_vm_block_expired_requests_total",
        "Per VM and host device its requests reached (0 until a request expires).",
        None,
    ),
    (
        "kvmtop_vm_block_latency_seconds",
        "Per VM, device and operation once a request completed.",
        None,
    ),
    (
        "kvmtop_vm_block_queue_seconds",
        "Per VM, device and operation once a request was seen from submission to issue \
         (`block_io_start`, or `block_rq_insert` before Linux 6.5).",
        None,
    ),
];

/// What the reference says of one metric family.
#[derive(Debug, PartialEq)]
pub(super) struct Entry {
    group: &'static str,
    pub(super) kind: &'static str,
    help: String,
    /// Label names per level where the family has series (`le` left out).
    labels: BTreeMap<Level, Vec<String>>,
}

/// The fixture snapshot with every family filled: histograms with counts, so that each
/// histogram family has series.
fn rich_snapshot() -> Snapshot {
    let mut snapshot = fixture::snapshot();
    let vm = &mut snapshot.vms[0];
    for op in &mut vm.families.block.devices[0].ops {
        for histogram in [&mut op.cumulative_latency, &mut op.cumulative_queue] {
            histogram.count = 4_800;
            histogram.sum_ns = 4_800 * 65_536;
            histogram.buckets[16] = 4_800;
        }
    }
    let waits = &mut vm.families.sched.vcpus.cumulative;
    waits.wait.count = 1_000;
    waits.wait.sum_ns = 1_000 * 8_192;
    waits.wait.buckets[13] = 1_000;
    snapshot
}

/// Every metric family the exporter serves for [`rich_snapshot`], at every level.
pub(super) fn entries() -> BTreeMap<String, Entry> {
    let snapshot = rich_snapshot();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for level in [Level::Vm, Level::Vcpu, Level::Full] {
        let mut kept = details::Kept::new(details::MAX_TOP_N);
        kept.observe(&snapshot);
        let context = Context {
            level,
            details: &kept,
        };
        for (group, families) in families_by_group(&snapshot, context).expect("the exporter") {
            for family in families {
                let entry = entries
                    .entry(family.name().to_owned())
                    .or_insert_with(|| Entry {
                        group,
                        kind: kind(&family),
                        help: family.help().to_owned(),
                        labels: BTreeMap::new(),
                    });
                assert_eq!(entry.group, group, "{} in two groups", family.name());
                entry.labels.insert(level, label_names(&family));
            }
        }
    }
    entries
}

fn kind(family: &MetricFamily) -> &'static str {
    match family.get_field_type() {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    }
}

/// The label names of a family's series: `vm`, `pid` and `vcpu` first where present, then the
/// rest in alphabetical order (as the exposition sorts them).
fn label_names(family: &MetricFamily) -> Vec<String> {
    let metric = family
        .get_metric()
        .first()
        .expect("gathered families have series");
    let mut names: Vec<String> = metric
        .get_label()
        .iter()
        .map(|l| l.name().to_owned())
        .collect();
    let rank = |n: &str| match n {
        "vm" => 0,
        "pid" => 1,
        "vcpu" => 2,
        _ => 3,
    };
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    names
}

fn note(name: &str) -> (&'static str, Option<&'static str>) {
    let Some((_, appears, absent)) = NOTES.iter().find(|(n, ..)| *n == name) else {
        panic!("{name} has no entry in output::reference::NOTES")
    };
    (appears, *absent)
}

fn quoted(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|i| format!("`{}`", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reference as Markdown.
fn render(entries: &BTreeMap<String, Entry>) -> String {
    let mut out = String::new();
    write!(
        out,
        "# Metrics reference\n\n\
         <!-- Generated from the exporter; do not edit. Regenerate with:\n     {REGENERATE}\n-->\n\n\
         Generated from the exporter's code by `{REGENERATE}`; a test fails when this file and \
         the code differ, and `metrics_reference_e2e` holds a real `kvmtop serve`'s `/metrics` to \
         it.\n\n"
    )
    .unwrap();
    out.push_str(
        "Every metric `kvmtop serve` serves at `/metrics` (Prometheus text format 0.0.4). \
         `kvmtop replay DIR --format openmetrics` exports the same families from a recording. \
         Counters are the kernel's running totals since kvmtop began watching the VM: use \
         `rate()`. Times are in seconds, sizes in bytes, shares as ratios from 0 to 1.\n\n\
         - **levels**: the `--metrics-detail` levels at which the metric has series. At `vm` \
         (the default) per-vCPU families are summed over each VM's vCPUs and have no `vcpu` \
         label; `vcpu` keeps vCPUs apart; `full` adds every histogram bucket and the exit-detail \
         values.\n\
         - **labels**: the label names of its series at those levels. Histograms add `le` to \
         their `_bucket` series (below `full`, most histograms keep only `le=\"+Inf\"`).\n\
         - **appears**: when it has series at all. A family with no series is left out of the \
         exposition.\n\
         - **may be absent on the test machine**: why the e2e test may not see it on a 2-CPU \
         PVM host with one NUMA node (where `kvm:kvm_exit` never fires) running a port-I/O guest \
         and a disk reader.\n\n\
         Every series about a VM carries only `vm` and `pid`; join `kvmtop_vm_info` on them for \
         the rest: `rate(kvmtop_vm_exits_total[5m]) * on (vm, pid) group_left (uuid, vmm) \
         kvmtop_vm_info`.\n\n",
    );
    out.push_str("| metric | type | family | levels |\n|---|---|---|---|\n");
    let groups = ["agent", "exits", "sched", "numa", "tlb", "block"];
    let in_group = |group: &str| {
        entries
            .iter()
            .filter(move |(_, e)| e.group == group)
            .collect::<Vec<_>>()
    };
    for group in groups {
        for (name, entry) in in_group(group) {
            let levels: Vec<String> = entry.labels.keys().map(ToString::to_string).collect();
            writeln!(
                out,
                "| [`{name}`](#{name}) | {} | {} | {} |",
                entry.kind,
                entry.group,
                levels.join(", ")
            )
            .unwrap();
        }
    }
    for group in groups {
        let title = match group {
            "agent" => "agent: VMs, kernel sources, advice",
            "exits" => "exits: VM exits",
            "sched" => "sched: scheduling of the VMs' threads",
            "numa" => "numa: memory placement and NUMA balancing",
            "tlb" => "tlb: TLB shootdowns",
            _ => "block: block I/O",
        };
        writeln!(out, "\n## {title}").unwrap();
        for (name, entry) in in_group(group) {
            let (appears, absent) = note(name);
            writeln!(out, "\n### `{name}`\n").unwrap();
            writeln!(out, "- **type:** {}", entry.kind).unwrap();
            writeln!(
                out,
                "- **levels:** {}",
                quoted(entry.labels.keys().map(ToString::to_string))
            )
            .unwrap();
            // Levels with the same label names on one line.
            let mut by_labels: Vec<(Vec<String>, &Vec<String>)> = Vec::new();
            for (level, labels) in &entry.labels {
                match by_labels.iter_mut().find(|(_, l)| *l == labels) {
                    Some((levels, _)) => levels.push(level.to_string()),
                    None => by_labels.push((vec![level.to_string()], labels)),
                }
            }
            for (levels, labels) in by_labels {
                writeln!(
                    out,
                    "- **labels at {}:** {}",
                    quoted(&levels),
                    quoted(labels)
                )
                .unwrap();
            }
            writeln!(out, "- **appears:** {appears}").unwrap();
            if let Some(why) = absent {
                writeln!(out, "- **may be absent on the test machine:** {why}").unwrap();
            }
            writeln!(out, "- **help:** {}", entry.help).unwrap();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_committed_reference_is_the_one_the_exporter_generates() {
        crate::testing::assert_committed(COMMITTED, &render(&entries()), UPDATE, REGENERATE);
    }

    /// The fixture fills every family: each metric name written in the exporter's source has
    /// an entry, so a metric added without series in the fixture fails here rather than
    /// missing from the reference.
    #[test]
    fn every_metric_in_the_source_is_in_the_reference() {
        let entries = entries();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/output");
        let mut names = Vec::new();
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("reference.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    names.extend(metric_literals(&text));
                }
            }
        }
        assert!(names.len() > 30, "too few metric names found: {names:?}");
        for name in names {
            // Tests name series (`_bucket`) and the snapshot field `kvmtop_version`.
            let family = name.strip_suffix("_bucket").unwrap_or(&name);
            if family == "kvmtop_version" {
                continue;
            }
            assert!(
                entries.contains_key(family),
                "{family} is in the exporter's source but the fixture gives it no series: fill it \
                 in rich_snapshot()"
            );
        }
    }

    #[test]
    fn every_metric_has_notes_and_every_note_a_metric() {
        let entries = entries();
        for name in entries.keys() {
            note(name);
        }
        for (name, ..) in NOTES {
            assert!(
                entries.contains_key(*name),
                "NOTES names {name}, which the exporter lacks"
            );
        }
    }

    /// `"kvmtop_…"` string literals of `text`.
    fn metric_literals(text: &str) -> Vec<String> {
        text.match_indices("\"kvmtop_")
            .filter_map(|(at, _)| {
                let rest = &text[at + 1..];
                let name = &rest[..rest.find('"')?];
                (!name.ends_with('_') && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                    .then(|| name.to_owned())
            })
            .collect()
    }
}
