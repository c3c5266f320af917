//! Prometheus metrics for a snapshot.
//!
//! Counters carry the kernel's running totals since kvmtop started watching each VM; Prometheus
//! computes rates with `rate()`. Label sets are bounded, and how many series each VM gets is set
//! by the level ([`Level`], `--metrics-detail`): at `vm` (the default) per VM and exit reason
//! (the reason tables are finite; unknown codes are rare by definition), with per-vCPU families
//! summed over the VM's vCPUs and latency histograms reduced to sum and count (block latency
//! keeps a few buckets); `vcpu` keeps vCPUs apart; `full` adds every histogram bucket and each
//! VM's top exit-detail values (ports, MSRs, …), at most a fixed number per VM and kind
//! ([`details`]). Latency histograms are never per vCPU; per-vCPU time goes in plain counters.
//!
//! Every series about a VM carries only the VM's identity, `vm` and `pid` (a pid alone is reused,
//! a name alone may repeat); what else kvmtop knows of the VM is in one `kvmtop_vm_info` series
//! to join on, as the libvirt exporters do.

mod host;

use prometheus::proto::MetricFamily;

pub use crate::output::series::Level;
use crate::{
    model::{Snapshot, SourceState, advice::Severity, advice::Target},
    output::{
        families,
        series::{
            Context, details,
            exposition::Exposition,
            plain::{Gathered, Series},
        },
    },
};

/// Turns each window's snapshot into its exposition, keeping what must last from one window to
/// the next: the exit-detail values with a series and their counters.
pub struct Exporter {
    level: Level,
    details: details::Kept,
}

impl Exporter {
    /// `top_n`: exit-detail values per VM and kind that get a series each window, at most
    /// [`details::MAX_TOP_N`] (only at the `full` level).
    #[must_use]
    pub fn new(level: Level, top_n: usize) -> Self {
        Self {
            level,
            details: details::Kept::new(top_n),
        }
    }

    /// The exposition of one window. Call once per window, in order: the detail-value counters
    /// add each window's counts.
    pub fn window(&mut self, snapshot: &Snapshot) -> anyhow::Result<String> {
        let exposition = self.counted(snapshot)?;
        Ok(encode(&exposition, snapshot.vms.len()))
    }

    /// Counts a window and returns its exposition unrendered: `serve` renders a window when it
    /// is first scraped, so a window no scrape asks for (most of them, at Prometheus' usual
    /// 15 s or more) costs only the counting. Call once per window, in order.
    pub fn pending(&mut self, snapshot: std::sync::Arc<Snapshot>) -> Pending {
        self.observe(&snapshot);
        // Only `full` exports the detail values; the other levels need none of them.
        let details = if self.level.full() {
            self.details.clone()
        } else {
            details::Kept::new(self.details.top_n())
        };
        Pending {
            level: self.level,
            details,
            snapshot,
        }
    }

    /// Counts a window without exporting it: the detail-value counters of the windows exported
    /// after it go on from its counts, as if it had been exported. Call in order, as
    /// [`Exporter::window`].
    pub fn observe(&mut self, snapshot: &Snapshot) {
        self.details.observe(snapshot);
    }

    /// The metric families of one window, before encoding: what [`Exporter::window`] encodes
    /// for `/metrics`, and what the `OpenMetrics` export of a recording encodes with timestamps.
    /// Call once per window, in order, as [`Exporter::window`].
    pub fn window_families(&mut self, snapshot: &Snapshot) -> anyhow::Result<Vec<MetricFamily>> {
        Ok(self.counted(snapshot)?.into_proto())
    }

    /// Counts a window and gathers its families: what [`Self::window`] writes as text and
    /// [`Self::window_families`] hands over as the crate's messages.
    fn counted(&mut self, snapshot: &Snapshot) -> anyhow::Result<Exposition> {
        self.observe(snapshot);
        gather(
            snapshot,
            Context {
                level: self.level,
                details: &self.details,
            },
        )
    }
}

/// A window's exposition before it is rendered: the window with the exit-detail values kept
/// up to it.
pub struct Pending {
    level: Level,
    details: details::Kept,
    snapshot: std::sync::Arc<Snapshot>,
}

impl Pending {
    /// The exposition, as [`Exporter::window`] would have rendered it for this window.
    pub fn render(&self) -> anyhow::Result<String> {
        let exposition = gather(
            &self.snapshot,
            Context {
                level: self.level,
                details: &self.details,
            },
        )?;
        Ok(encode(&exposition, self.snapshot.vms.len()))
    }
}

/// The text exposition of a window of `vms` VMs.
fn encode(exposition: &Exposition, vms: usize) -> String {
    // Room for the usual exposition up front (about 10 KB a VM at `full`, measured at 100
    // VMs), so writing does not grow the buffer through a dozen copies of itself.
    let mut text = String::with_capacity((16 << 10) + vms * (10 << 10));
    exposition.write_text(&mut text);
    text
}

/// The metric families of `snapshot`: the VMs' identities, every family's metrics at
/// `context`'s level, the health of the kernel sources, and the advice in force.
fn gather(snapshot: &Snapshot, context: Context<'_>) -> anyhow::Result<Exposition> {
    let mut gathered = Gathered::default();
    register_agent(&mut gathered, snapshot);
    let histograms = families::metrics(&mut gathered, snapshot, context)?;
    Ok(Exposition {
        plain: gathered.into_families(),
        histograms,
    })
}

/// The metric families that belong to no signal family: the host, the VMs' identities, the
/// health of the kernel sources and the advice in force.
fn register_agent(gathered: &mut Gathered, snapshot: &Snapshot) {
    host::register(gathered, snapshot);
    register_vms(gathered, snapshot);
    register_health(gathered, snapshot);
    gathered.add(recommendations(snapshot));
}

/// The metric families of `snapshot` grouped by who serves them: `agent` (identities, source
/// health, advice), then each signal family. Together they are what [`gather`] returns.
#[cfg(test)]
pub fn families_by_group(
    snapshot: &Snapshot,
    context: Context<'_>,
) -> anyhow::Result<Vec<(&'static str, Vec<MetricFamily>)>> {
    let mut gathered = Gathered::default();
    register_agent(&mut gathered, snapshot);
    let agent = Exposition {
        plain: gathered.into_families(),
        histograms: Vec::new(),
    };
    Ok(std::iter::once(("agent", agent))
        .chain(families::metrics_by_family(snapshot, context)?)
        .map(|(group, exposition)| (group, exposition.into_proto()))
        .collect())
}

/// One info series per VM with everything kvmtop knows of it as labels, to join on `vm` and
/// `pid` (`* on (vm, pid) group_left (uuid, vmm) kvmtop_vm_info`), and its vCPU count.
fn register_vms(gathered: &mut Gathered, snapshot: &Snapshot) {
    let mut info = Series::gauge(
        "kvmtop_vm_info",
        "Always 1: one series per VM with what kvmtop knows of it as labels (uuid: QEMU's \
         -uuid, the libvirt domain UUID and OpenStack instance id under libvirt and nova; \
         vmm: qemu or the executable of another VMM). Join on vm and pid.",
        &["vm", "pid", "uuid", "vmm"],
    );
    let mut vcpus = Series::gauge(
        "kvmtop_vm_vcpus",
        "Number of vCPUs of the VM.",
        &["vm", "pid"],
    );
    for vm in &snapshot.vms {
        let pid = vm.pid.to_string();
        info.with_label_values(&[
            vm.name.exact(),
            pid.as_str(),
            vm.uuid.as_deref().unwrap_or(""),
            vm.vmm.exact(),
        ])
        .set(1);
        let indexed = vm.vcpus.iter().filter(|v| v.index.is_some()).count();
        vcpus
            .with_label_values(&[vm.name.exact(), pid.as_str()])
            .set(i64::try_from(indexed).unwrap_or(i64::MAX));
    }
    gathered.add(info);
    gathered.add(vcpus);
}

/// Whether each kernel source is attached, and what the kernel programs lost: events dropped
/// on full maps, events the kernel skipped a program for, and the same per source.
fn register_health(gathered: &mut Gathered, snapshot: &Snapshot) {
    let mut source_up = Series::gauge(
        "kvmtop_source_up",
        "1 when a kernel source (tracepoint, kprobe or fentry) of a signal family is \
         attached, 0 when it is unavailable on this host (the snapshot says why).",
        &["family", "source"],
    );
    let mut dropped = Series::counter(
        "kvmtop_events_dropped_total",
        "Events of a signal family not counted because one of its kernel maps was full \
         (counted by the family's *_DROPS map).",
        &["family"],
    );
    let mut lost = Series::counter(
        "kvmtop_source_lost_events_total",
        "Events of an attached kernel source the kernel did not run its program for (another \
         BPF program was already running on that CPU): the source's figures undercount by as \
         much. Per source what kvmtop_program_skipped_events_total counts per program.",
        &["family", "source"],
    );
    let mut skipped = Series::counter(
        "kvmtop_program_skipped_events_total",
        "Events the kernel did not run a kvmtop program for because another BPF program was \
         already running on that CPU; figures from that program undercount by as much.",
        &["program"],
    );
    for (program, count) in &snapshot.skipped_events {
        skipped.with_label_values(&[program]).inc_by(count.total);
    }
    gathered.add(skipped);
    for family in snapshot.families.states() {
        for (source, state) in family.sources {
            let up = !matches!(state, SourceState::Unavailable(_));
            source_up
                .with_label_values(&[family.family, source.as_str()])
                .set(i64::from(up));
            if up {
                lost.with_label_values(&[family.family, source.as_str()])
                    .inc_by(family.lost.get(source).map_or(0, |l| l.total));
            }
        }
        dropped
            .with_label_values(&[family.family])
            .inc_by(family.dropped.total);
    }
    gathered.add(source_up);
    gathered.add(dropped);
    gathered.add(lost);
}

/// One gauge per recommendation in force: 1 info, 2 warning, 3 critical. The evidence is in the
/// JSON snapshot and the live view; labels stay bounded (rule × target).
fn recommendations(snapshot: &Snapshot) -> Series {
    let mut gauge = Series::gauge(
        "kvmtop_recommendation",
        "A tuning recommendation in force (value: 1 info, 2 warning, 3 critical). \
         `kvmtop explain RULE` describes the rule; the evidence is in the snapshot.",
        &["rule", "severity", "target", "vm", "pid"],
    );
    for r in &snapshot.recommendations {
        let (vm, pid) = match &r.target {
            Target::Host => (String::new(), String::new()),
            Target::Vm { pid, .. }
            | Target::Vcpu { pid, .. }
            | Target::Drive { pid, .. }
            | Target::Nic { pid, .. } => (
                snapshot
                    .vms
                    .iter()
                    .find(|v| v.pid == *pid)
                    .map_or_else(String::new, |v| v.name.exact().to_owned()),
                pid.to_string(),
            ),
        };
        let severity = format!("{:?}", r.severity).to_lowercase();
        let level = match r.severity {
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Critical => 3,
        };
        gauge
            .with_label_values(&[r.id, &severity, &r.target.to_string(), &vm, &pid])
            .set(level);
    }
    gauge
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::{output::series::histograms, testing::fixture};

    /// `snapshot` as the first window of an exporter at the `full` level.
    #[must_use]
    pub fn full(snapshot: &Snapshot) -> String {
        Exporter::new(Level::Full, details::MAX_TOP_N)
            .window(snapshot)
            .unwrap()
    }

    /// The exposition written directly is what the `prometheus` crate's encoder writes from the
    /// same families, at every level, window after window, with a hostile VM name that needs
    /// escaping (hostile help texts: `series::histograms`).
    #[test]
    fn the_text_is_the_crate_encoders() {
        use prometheus::{Encoder as _, TextEncoder};
        for level in [Level::Vm, Level::Vcpu, Level::Full] {
            let mut direct = Exporter::new(level, 2);
            let mut through_crate = Exporter::new(level, 2);
            for window in 0..3 {
                let mut snapshot = fixture::snapshot();
                if window == 1 {
                    snapshot.vms[0].name = "evil\"} 1\nfake_metric 2 \\".into();
                    snapshot.vms.truncate(1);
                }
                let text = direct.window(&snapshot).unwrap();
                let mut encoded = Vec::new();
                TextEncoder::new()
                    .encode(
                        &through_crate.window_families(&snapshot).unwrap(),
                        &mut encoded,
                    )
                    .unwrap();
                assert_eq!(text, String::from_utf8(encoded).unwrap(), "{level:?}");
                assert!(text.contains("# TYPE kvmtop_vm_exit_latency_seconds histogram"));
            }
        }
    }

    /// A window rendered when scraped is the window rendered when it closed, at every level,
    /// the detail values kept up to it included, however many windows came after it.
    #[test]
    fn a_pending_window_renders_as_the_window_did() {
        for level in [Level::Vm, Level::Vcpu, Level::Full] {
            let mut now = Exporter::new(level, details::MAX_TOP_N);
            let mut later = Exporter::new(level, details::MAX_TOP_N);
            let mut pending = Vec::new();
            let mut rendered = Vec::new();
            for window in 0..3 {
                let mut snapshot = fixture::snapshot();
                if window == 1 {
                    snapshot.vms.truncate(1);
                }
                rendered.push(now.window(&snapshot).unwrap());
                pending.push(later.pending(std::sync::Arc::new(snapshot)));
            }
            for (pending, rendered) in pending.iter().zip(&rendered) {
                assert_eq!(&pending.render().unwrap(), rendered, "{level:?}");
            }
        }
    }

    #[test]
    fn exit_counters_carry_every_label() {
        let text = full(&fixture::snapshot());
        assert!(
            text.contains("# TYPE kvmtop_vm_exits_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_exits_total{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vcpu=\"0\",vm=\"web-1\"} 2000000"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_exits_total{isa=\"\",pid=\"4242\",reason=\"IO\",source=\"userspace\",vcpu=\"0\",vm=\"web-1\"} 1980000"
            ),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_vcpus{pid=\"4242\",vm=\"web-1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_source_up{family=\"exits\",source=\"kvm_exit\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn latency_is_a_histogram_on_power_of_two_bounds() {
        let text = full(&fixture::snapshot());
        assert!(
            text.contains("# TYPE kvmtop_vm_exit_latency_seconds histogram"),
            "{text}"
        );
        // The fixture's IO_INSTRUCTION: 2,000,000 intervals, 9/10 in [2048, 4096) ns.
        let series = |le: &str| {
            format!(
                "kvmtop_vm_exit_latency_seconds_bucket{{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vm=\"web-1\",le=\"{le}\"}}"
            )
        };
        assert!(
            text.contains(&format!("{} 0", series("0.000002048"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1800000", series("0.000004096"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 2000000", series("+Inf"))),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vcpu_exit_time_seconds_total{pid=\"4242\",source=\"kvm_exit\",vcpu=\"0\",vm=\"web-1\"}"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_exit_detail_rate{kind=\"pio\",pid=\"4242\",sub=\"out\",value=\"0x80\",vm=\"web-1\"} 99500"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_exit_detail_events_total{kind=\"pio\",pid=\"4242\",vm=\"web-1\"} 2000000"
            ),
            "{text}"
        );
    }

    #[test]
    fn scheduling_counters_and_memory_gauges() {
        let mut snapshot = fixture::snapshot();
        let vcpu = snapshot.vms[0].vcpus[0].sched.as_mut().unwrap();
        vcpu.figures.cumulative.wait_ns = 1_500_000_000;
        vcpu.figures.cumulative.migrations.insert("same_llc", 7);
        let text = full(&snapshot);
        assert!(
            text.contains(
                "kvmtop_vcpu_run_queue_wait_seconds_total{pid=\"4242\",vcpu=\"0\",vm=\"web-1\"} 1.5"
            ),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vcpu_migrations_total{class=\"same_llc\",pid=\"4242\",vcpu=\"0\",vm=\"web-1\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vcpu_migrations_total{class=\"cross_node\",pid=\"4242\",vcpu=\"0\",vm=\"web-1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_memory_bytes{node=\"1\",pid=\"4242\",vm=\"web-1\"}"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_huge_page_coverage_ratio{pid=\"4242\",vm=\"web-1\"}"),
            "{text}"
        );
    }

    #[test]
    fn block_and_tlb_counters() {
        let mut snapshot = fixture::snapshot();
        let read = &mut snapshot.vms[0].families.block.devices[0].ops[0];
        read.cumulative_latency.count = 4_800;
        read.cumulative_latency.buckets[16] = 4_800;
        let text = full(&snapshot);
        assert!(
            text.contains("# TYPE kvmtop_vm_block_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_block_requests_total{device=\"nvme0n1\",op=\"read\",pid=\"4242\",vm=\"web-1\"} 4800"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vm_tlb_shootdowns_total{direction=\"sent\",pid=\"4242\",vm=\"web-1\"}"
            ),
            "{text}"
        );
    }

    #[test]
    fn each_recommendation_is_a_gauge() {
        let text = full(&fixture::snapshot());
        assert!(
            text.contains("kvmtop_recommendation{pid=\"4242\",rule=\"C1\",severity=\"critical\",target=\"vCPU 0 of pid 4242 (tid 4250)\",vm=\"web-1\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn skipped_events_are_counted_per_program() {
        let text = full(&fixture::snapshot());
        assert!(
            text.contains("kvmtop_program_skipped_events_total{program=\"block_rq_complete\"} 400"),
            "{text}"
        );
    }

    #[test]
    fn losses_are_counted_per_source_and_expired_requests_per_device() {
        let text = full(&fixture::snapshot());
        for line in [
            "kvmtop_source_lost_events_total{family=\"block\",source=\"block_rq_complete\"} 400",
            "kvmtop_source_lost_events_total{family=\"block\",source=\"block_io_start\"} 0",
            "kvmtop_source_lost_events_total{family=\"exits\",source=\"kvm_exit\"} 0",
            "kvmtop_events_dropped_total{family=\"block\"} 0",
            "kvmtop_vm_block_expired_requests_total{device=\"nvme0n1\",pid=\"4242\",vm=\"web-1\"} 5",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // An unavailable source runs no program: it has no loss series, only kvmtop_source_up 0.
        assert!(
            !text.contains("kvmtop_source_lost_events_total{family=\"numa\",source=\"numa_fault\""),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_source_lost_events_total{family=\"numa\",source=\"sched_move_numa\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_host_without_vms_renders() {
        let mut snapshot = fixture::snapshot();
        snapshot.vms.clear();
        snapshot.recommendations.clear();
        let text = full(&snapshot);
        assert!(text.contains("kvmtop_source_up"), "{text}");
        assert!(
            text.contains("kvmtop_source_up{family=\"numa\",source=\"numa_fault\"} 0"),
            "{text}"
        );
    }

    fn at(level: Level, snapshot: &Snapshot) -> String {
        Exporter::new(level, details::MAX_TOP_N)
            .window(snapshot)
            .unwrap()
    }

    /// The series of `text` about the VM with pid 4242.
    fn of_web_1(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains("pid=\"4242\""))
            .collect()
    }

    #[test]
    fn level_vm_sums_over_vcpus_and_keeps_sums_counts_and_few_block_buckets() {
        let mut snapshot = fixture::snapshot();
        let read = &mut snapshot.vms[0].families.block.devices[0].ops[0];
        read.cumulative_latency.count = 4_800;
        read.cumulative_latency.buckets[16] = 4_800;
        let text = at(Level::Vm, &snapshot);
        let series = of_web_1(&text);
        assert!(!series.iter().any(|l| l.contains("vcpu=")), "{text}");
        assert!(!text.contains("kvmtop_vm_exit_detail_rate"), "{text}");
        assert!(
            !text.contains("kvmtop_vm_exit_detail_value_events_total"),
            "{text}"
        );
        // The fixture's vCPUs took 2,000,000 and 1,000,000 IO_INSTRUCTION exits: one series.
        let vcpu_exits: u64 = snapshot.vms[0]
            .vcpus
            .iter()
            .flat_map(|v| &v.exits.by_reason)
            .filter(|r| r.reason == "IO_INSTRUCTION")
            .map(|r| r.cumulative)
            .sum();
        assert!(
            text.contains(&format!(
                "kvmtop_vm_exits_total{{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vm=\"web-1\"}} {vcpu_exits}"
            )),
            "{text}"
        );
        // Exit latency: +Inf, sum and count only; the mean stays exact.
        let exit_buckets: Vec<&&str> = series
            .iter()
            .filter(|l| l.starts_with("kvmtop_vm_exit_latency_seconds_bucket"))
            .collect();
        assert!(
            exit_buckets.iter().all(|l| l.contains("le=\"+Inf\"")),
            "{text}"
        );
        assert!(
            text.contains("kvmtop_vm_exit_latency_seconds_sum{"),
            "{text}"
        );
        // Block latency keeps its coarse buckets, with the same bounds as at full.
        let block_buckets = series
            .iter()
            .filter(|l| l.starts_with("kvmtop_vm_block_latency_seconds_bucket"))
            .count();
        assert_eq!(
            block_buckets,
            histograms::BLOCK_LATENCY_COARSE.len() + 1,
            "{text}"
        );
        assert!(text.contains("le=\"0.000016384\""), "{text}");
        let full = at(Level::Full, &snapshot);
        for line in series
            .iter()
            .filter(|l| l.starts_with("kvmtop_vm_block_latency_seconds_bucket"))
        {
            assert!(full.contains(line), "{line} differs at full:\n{full}");
        }
    }

    #[test]
    fn level_vcpu_keeps_vcpus_apart_without_buckets_or_detail_values() {
        let snapshot = fixture::snapshot();
        let text = at(Level::Vcpu, &snapshot);
        assert!(
            text.contains("kvmtop_vm_exits_total{isa=\"vmx\",pid=\"4242\",reason=\"IO_INSTRUCTION\",source=\"kvm_exit\",vcpu=\"0\",vm=\"web-1\"} 2000000"),
            "{text}"
        );
        assert!(
            text.contains(
                "kvmtop_vcpu_run_queue_wait_seconds_total{pid=\"4242\",vcpu=\"0\",vm=\"web-1\"}"
            ),
            "{text}"
        );
        assert!(!text.contains("kvmtop_vm_exit_detail_rate"), "{text}");
        assert!(!text.contains("le=\"0.000002048\""), "{text}");
    }

    #[test]
    fn each_level_adds_series_to_the_one_below() {
        let snapshot = fixture::snapshot();
        let counts: Vec<usize> = [Level::Vm, Level::Vcpu, Level::Full]
            .into_iter()
            .map(|level| of_web_1(&at(level, &snapshot)).len())
            .collect();
        assert!(counts[0] < counts[1] && counts[1] < counts[2], "{counts:?}");
        // Every level is a valid exposition with every VM's identity.
        for level in [Level::Vm, Level::Vcpu] {
            let text = at(level, &snapshot);
            assert!(text.contains("kvmtop_vm_info{pid=\"5000\""), "{text}");
        }
    }

    #[test]
    fn detail_values_fold_into_other_beyond_top_n_at_full() {
        let snapshot = fixture::snapshot();
        let text = Exporter::new(Level::Full, 1).window(&snapshot).unwrap();
        let values: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kvmtop_vm_exit_detail_value_events_total{"))
            .collect();
        assert_eq!(values.len(), 2, "{text}");
        assert!(text.contains("kvmtop_vm_exit_detail_value_events_total{kind=\"pio\",pid=\"4242\",sub=\"\",value=\"other\",vm=\"web-1\"} 1000"), "{text}");
        let rates = text
            .lines()
            .filter(|l| l.starts_with("kvmtop_vm_exit_detail_rate{"))
            .count();
        assert_eq!(rates, 2, "the top value and other:\n{text}");
    }

    #[test]
    fn hostile_names_are_escaped() {
        let mut snapshot = fixture::snapshot();
        snapshot.vms[0].name = "evil\"} 1\nfake_metric 2".into();
        let text = full(&snapshot);
        assert!(
            !text.lines().any(|l| l.starts_with("fake_metric")),
            "{text}"
        );
    }
}
