//! A monitoring session: the loaded kernel programs, VM discovery, and the signal families.
//!
//! [`Session::sample`] reads running totals; [`Session::snapshot`] turns two samples into the
//! snapshot users see. The session knows VMs and windows; what each family counts, it leaves to
//! the families ([`crate::families`]), and it names none of them.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    bpf::{
        Kernel,
        hooks::{HookKind, Sources},
    },
    discovery::{Discovery, ProcRoot, ScanResult, Vmm, VmmKind},
    families::{Families, Totals},
    family::{CollectLevel, HostView, VmSpan, Vms},
    host::{
        btf::{KernelBtf, SYSTEM_BTF},
        clock::WallClock,
        proc,
        topology::Topology,
        tracefs::TraceFs,
    },
    model::{self, Host, HostFamilies, HostState, LostEvents, Snapshot, Untrusted, VmFamilies},
    privileges,
};

/// Where kvmtop reads the host from. Defaults are the live system; tests point them at fixtures.
#[derive(Clone, Debug)]
pub struct Config {
    pub proc_root: PathBuf,
    /// Root of sysfs: topology, block devices, and the configuration facts the advice reads.
    pub sys_root: PathBuf,
    pub tracefs: TraceFs,
    /// The kernel's BTF file (struct offsets for the raw-argument programs).
    pub btf: PathBuf,
    /// The kinds of tracepoint program sources may run as.
    pub hook_kinds: Vec<HookKind>,
    /// How much the families collect (`--collect`).
    pub collect: CollectLevel,
    /// Readings per reading of the scheduler's contender map: 1 (a snapshot's two readings
    /// both read it) unless [`Config::sampling_every`] says otherwise.
    pub contender_readings: u64,
}

impl Config {
    /// This configuration for readings every `interval` (the live modes): the contender lists
    /// then cover about `families::sched::contender_span::CONTENDER_SPAN` each.
    #[must_use]
    pub fn sampling_every(&self, interval: std::time::Duration) -> Self {
        Self {
            contender_readings: crate::families::sched::contender_span::readings_per_span(interval),
            ..self.clone()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            tracefs: TraceFs::default(),
            btf: PathBuf::from(SYSTEM_BTF),
            hook_kinds: HookKind::ALL.to_vec(),
            collect: CollectLevel::default(),
            contender_readings: 1,
        }
    }
}

pub struct Session {
    host: Host,
    view: HostView,
    kernel: Kernel,
    discovery: Discovery,
    /// Problems of scans between samples, until a sample reports them.
    unreported: Unreported,
    families: Families,
    identities: Identities,
    wall_clock: WallClock,
}

/// Problems found by scans no sample has reported yet: the first scan's, made while the programs
/// loaded, and those of the rescans between samples. A window reports its later sample's
/// problems, so the first sample's are reported again with the second: nothing found before or
/// within a window is left out of it.
#[derive(Debug, Default)]
struct Unreported {
    problems: Vec<String>,
    sampled: bool,
}

impl Unreported {
    fn new(first_scan: Vec<String>) -> Self {
        Self {
            problems: first_scan,
            sampled: false,
        }
    }

    /// Keeps the problems of a scan that is not a sample, each once: `snapshot` rescans four
    /// times a second, for as long as its window lasts.
    fn found(&mut self, problems: Vec<String>) {
        for problem in problems {
            if !self.problems.contains(&problem) {
                self.problems.push(problem);
            }
        }
    }

    /// The problems a sample reports: those kept since the last sample, then `latest` (its
    /// own), each once.
    fn report_with(&mut self, latest: Vec<String>) -> Vec<String> {
        let mut problems = std::mem::take(&mut self.problems);
        problems.extend(latest);
        let mut seen = HashSet::new();
        problems.retain(|problem| seen.insert(problem.clone()));
        if !self.sampled {
            self.sampled = true;
            self.problems.clone_from(&problems);
        }
        problems
    }
}

/// Running totals at one instant.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub wall: SystemTime,
    pub vmms: Vec<Vmm>,
    pub totals: Totals,
    /// Per program, events the kernel skipped it for (running totals, see
    /// [`Kernel::skipped_events`]).
    pub skipped: BTreeMap<String, u64>,
    pub problems: Vec<String>,
}

impl Session {
    /// Checks privileges, loads the kernel programs and attaches every source this kernel has.
    /// Only a failure that stops every signal is an error; a missing tracepoint is reported per
    /// source, in every snapshot.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        privileges::check(&config.tracefs).map_err(anyhow::Error::msg)?;
        // Without the topology migrations are still counted, as of unknown class.
        let topology = Topology::read(&config.sys_root)
            .inspect_err(|e| log::warn!("host topology: {e}"))
            .ok();
        let btf = KernelBtf::open(&config.btf);
        if let Err(why) = &btf {
            log::warn!("{why}: sources fall back to classic tracepoints where they need it");
        }
        let mut view = HostView {
            proc_root: config.proc_root.clone(),
            sys_root: config.sys_root.clone(),
            tracefs: config.tracefs.clone(),
            topology,
            btf,
            hook_kinds: config.hook_kinds.clone(),
            collect: config.collect,
            contender_readings: config.contender_readings,
        };
        // The first scan lists and inspects every process of the host (0.2 s beside 2,000 idle
        // processes on a 2-CPU host), about as long as loading and attaching the programs takes:
        // it runs while they load instead of after. A process that execs a VMM while they load,
        // before the exec program sees it, is found as one that did before kvmtop started: by
        // its vCPUs' exits, or by the periodic recheck of the listing. The thread ends before
        // the capabilities are dropped, which is per thread.
        let mut discovery = Discovery::new(ProcRoot::new(&config.proc_root));
        let (opened, first_scan) = std::thread::scope(|scope| {
            let scan = std::thread::Builder::new()
                .name("discovery".into())
                .spawn_scoped(scope, || discovery.scan());
            let opened = Families::open(&view);
            let scanned = match scan {
                Ok(scan) => scan.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                // No thread to be had: the first sample scans instead.
                Err(_) => ScanResult::default(),
            };
            (opened, scanned)
        });
        let (mut kernel, families) = opened?;
        // The kernel's BTF (the file for the offsets, ~5 MiB, and aya's parse for loading and
        // typing BTF tracepoints, ~20 MiB) is needed only to build the hook tables and attach;
        // handing the freed pages back keeps the agent's resident memory what it needs while
        // running.
        view.btf = Err("read at start-up only".to_owned());
        kernel.release_btf();
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        unsafe { libc::malloc_trim(0) };
        Ok(Self {
            host: read_host(&config.proc_root),
            discovery,
            unreported: Unreported::new(first_scan.problems),
            view,
            kernel,
            families,
            identities: Identities::default(),
            wall_clock: WallClock::default(),
        })
    }

    #[must_use]
    pub fn families(&self) -> &Families {
        &self.families
    }

    /// The families, e.g. for tests that watch synthetic threads.
    pub fn families_mut(&mut self) -> &mut Families {
        &mut self.families
    }

    /// The host topology, when sysfs could be read.
    #[must_use]
    pub fn topology(&self) -> Option<&Topology> {
        self.view.topology.as_ref()
    }

    /// The loaded programs, e.g. for driving the test harnesses.
    pub fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// Scans for VMs without reading counters. Calling it between samples lets the families
    /// follow new threads while the guests run (a thread is seen inside `KVM_RUN` only then).
    pub fn rescan(&mut self) {
        let scan = self.scan();
        self.unreported.found(scan.problems);
        self.identities.track(&scan.vmms);
        let vms = Vms::new(&scan.vmms, &scan.vhost_workers, &self.identities.reused);
        for problem in self.families.follow(&vms) {
            log::warn!("{problem}");
        }
    }

    /// Scans for VMs and reads every family's running totals.
    pub fn sample(&mut self) -> Sample {
        let mut scan = self.scan();
        self.identities.track(&scan.vmms);
        let reused = std::mem::take(&mut self.identities.reused);
        let vms = Vms::new(&scan.vmms, &scan.vhost_workers, &reused);
        scan.problems.extend(self.families.follow(&vms));
        let totals = self.families.sample(&vms);
        // The moment the totals were read, on both clocks; the wall clock advances with the
        // monotonic one, so that consecutive windows tile (see `WallClock`).
        let at = Instant::now();
        let wall = self.wall_clock.at(at);
        self.learn_vcpu_threads(&mut scan.vmms, &totals);
        for pid in Families::unknown_vmms(&totals) {
            self.discovery.note_kvm_activity(pid);
        }
        self.identities.forget_all_but(&scan.vmms);
        for message in self.kernel.diagnostics() {
            log::warn!("kernel programs: {message}");
            scan.problems.push(format!("kernel programs: {message}"));
        }
        let problems = self.unreported.report_with(scan.problems);
        Sample {
            at,
            wall,
            vmms: scan.vmms,
            totals,
            skipped: self.kernel.skipped_events(),
            problems,
        }
    }

    /// The snapshot of the window between two samples of this session.
    #[must_use]
    pub fn snapshot(&self, earlier: &Sample, later: &Sample) -> Snapshot {
        let seconds = later.at.saturating_duration_since(earlier.at).as_secs_f64();
        // The one rule for "the same VM as at the earlier sample": same pid and start time.
        let spans: Vec<VmSpan<'_>> = later
            .vmms
            .iter()
            .map(|vmm| VmSpan {
                vmm,
                new: !earlier.vmms.iter().any(|e| e.id == vmm.id),
            })
            .collect();
        let mut snapshot = Snapshot {
            schema_version: model::SCHEMA_VERSION,
            kvmtop_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: self.host.clone(),
            window: model::Window {
                start_unix_seconds: earlier
                    .wall
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
                duration_seconds: seconds,
            },
            families: HostFamilies::default(),
            vms: later.vmms.iter().map(vm).collect(),
            problems: later
                .problems
                .iter()
                .cloned()
                .map(Untrusted::from)
                .collect(),
            skipped_events: skipped_events(&earlier.skipped, &later.skipped),
            // Filled by the advisor, which keeps its own state across windows.
            recommendations: Vec::new(),
            advice_inputs_missing: Vec::new(),
        };
        self.families.window(
            (&earlier.totals, &later.totals),
            &spans,
            seconds,
            &mut snapshot,
        );
        for (family, sources) in self.families.sources() {
            if let Some(lost) = snapshot.families.lost_mut(family) {
                *lost = source_losses(sources, &earlier.skipped, &later.skipped);
            }
        }
        snapshot
    }

    /// A discovery scan that follows the kernel's lifecycle counters and the processes it saw
    /// exec where they count, read just before it so that no change after the read goes unseen.
    fn scan(&mut self) -> ScanResult {
        let changes = self.families.vmm_changes(self.discovery.vmm_pids());
        self.discovery.note_execs(self.families.process_execs());
        self.discovery.scan_following(changes)
    }

    /// Tells discovery which thread runs which vCPU, from what the kernel programs saw.
    fn learn_vcpu_threads(&mut self, vmms: &mut [Vmm], totals: &Totals) {
        for seen in Families::vcpu_threads(totals, vmms) {
            self.discovery
                .note_vcpu_thread(seen.pid, seen.tid, seen.index);
            let vcpu = vmms
                .iter_mut()
                .filter(|v| v.id.pid == seen.pid)
                .flat_map(|v| v.vcpus.iter_mut())
                .find(|v| v.index == seen.index);
            if let Some(vcpu) = vcpu {
                vcpu.tid = Some(seen.tid);
            }
        }
    }
}

/// Start time of each VMM pid seen, to notice pid reuse.
#[derive(Default)]
struct Identities {
    start_times: HashMap<u32, u64>,
    /// Pids reused since the last sample, whose counters must be forgotten.
    reused: HashSet<u32>,
}

impl Identities {
    fn track(&mut self, vmms: &[Vmm]) {
        for vmm in vmms {
            if let Some(old) = self.start_times.insert(vmm.id.pid, vmm.id.start_time)
                && old != vmm.id.start_time
            {
                self.reused.insert(vmm.id.pid);
            }
        }
    }

    fn forget_all_but(&mut self, vmms: &[Vmm]) {
        self.start_times
            .retain(|pid, _| vmms.iter().any(|v| v.id.pid == *pid));
    }
}

/// A VM of the snapshot as discovery describes it; the families fill in its figures.
fn vm(vmm: &Vmm) -> model::Vm {
    model::Vm {
        pid: vmm.id.pid,
        start_time: vmm.id.start_time,
        name: vmm.name.clone(),
        uuid: vmm.uuid.clone(),
        vmm: match &vmm.kind {
            VmmKind::Qemu => "qemu".into(),
            VmmKind::Other { exe } => exe
                .exact()
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or(exe.exact())
                .into(),
        },
        vcpus: vmm
            .vcpus
            .iter()
            .map(|v| model::Vcpu::new(Some(v.index), v.tid))
            .collect(),
        families: VmFamilies::default(),
    }
}

/// Per program, the events the kernel skipped it for in the window and since it was loaded
/// (programs that never skipped any are left out).
fn skipped_events(
    earlier: &BTreeMap<String, u64>,
    later: &BTreeMap<String, u64>,
) -> BTreeMap<String, LostEvents> {
    later
        .iter()
        .map(|(program, &total)| {
            let before = earlier.get(program).copied().unwrap_or(0);
            (program.clone(), LostEvents::between(before, total))
        })
        .filter(|(_, skipped)| skipped.total > 0)
        .collect()
}

/// Per attached source of a family, the events the kernel skipped its program for, in the window
/// and since it was loaded (sources that never lost any are left out). A source is its program
/// on its hook, so what the program missed, the source missed.
fn source_losses(
    sources: &Sources,
    earlier: &BTreeMap<String, u64>,
    later: &BTreeMap<String, u64>,
) -> BTreeMap<String, LostEvents> {
    sources
        .iter()
        .filter(|(_, source)| source.is_attached())
        .filter_map(|(name, source)| {
            let total = *later.get(source.program)?;
            let before = earlier.get(source.program).copied().unwrap_or(0);
            Some(((*name).to_owned(), LostEvents::between(before, total)))
        })
        .filter(|(_, lost)| lost.total > 0)
        .collect()
}

/// Host name and kernel release, read once: they do not change while kvmtop runs.
fn read_host(proc_root: &Path) -> Host {
    let (hostname, kernel) = proc::host_identity(proc_root);
    Host {
        hostname,
        kernel,
        // Filled in per window with the advice, which reads these files anyway.
        state: HostState::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bpf::hooks::{Hook, Source},
        model::Attachment,
    };

    fn source(program: &'static str, attachment: Attachment) -> Source {
        Source {
            attachment,
            hook: Hook::tracepoint("block", program),
            program,
        }
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_problem_found_before_or_within_a_window_is_reported_with_it_once() {
        let mut unreported = Unreported::new(texts(&["first scan"]));
        // The first sample: the first window's earlier end, whose problems no window reports.
        let first = unreported.report_with(texts(&["first sample"]));
        assert_eq!(first, texts(&["first scan", "first sample"]));
        // Rescans within the first window, one finding a problem twice.
        unreported.found(texts(&["pid 7 vanished"]));
        unreported.found(texts(&["pid 7 vanished", "first scan"]));
        // Kept once however often a rescan finds it.
        assert_eq!(unreported.problems.len(), 3, "{:?}", unreported.problems);
        let second = unreported.report_with(texts(&["second sample"]));
        assert_eq!(
            second,
            texts(&[
                "first scan",
                "first sample",
                "pid 7 vanished",
                "second sample"
            ])
        );
        // The next window starts empty.
        assert_eq!(unreported.report_with(Vec::new()), Vec::<String>::new());
    }

    #[test]
    fn each_source_loses_what_the_kernel_skipped_its_program_for() {
        let sources: Sources = [
            (
                "block_rq_complete",
                source("block_rq_complete", Attachment::Attached),
            ),
            (
                "block_rq_issue",
                source("block_rq_issue", Attachment::Attached),
            ),
            (
                "block_io_start",
                source("block_io_start", Attachment::Attached),
            ),
            (
                "block_rq_insert",
                source("block_rq_insert", Attachment::Unavailable("no".into())),
            ),
        ]
        .into_iter()
        .collect();
        let programs = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
        };
        let earlier = programs(&[
            ("block_rq_complete", 10),
            ("block_rq_issue", 4),
            ("block_io_start", 0),
        ]);
        let later = programs(&[
            ("block_rq_complete", 40),
            ("block_rq_issue", 4),
            ("block_io_start", 0),
            // An unattached source's program never runs; a count for it is not the source's.
            ("block_rq_insert", 7),
        ]);
        let lost = source_losses(&sources, &earlier, &later);
        assert_eq!(
            lost,
            [
                (
                    "block_rq_complete".to_owned(),
                    LostEvents {
                        count: 30,
                        total: 40
                    }
                ),
                (
                    "block_rq_issue".to_owned(),
                    LostEvents { count: 0, total: 4 }
                ),
            ]
            .into_iter()
            .collect()
        );
    }
}
