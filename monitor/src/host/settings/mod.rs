//! The host's configuration as the tuning rules see it: memory management (THP, KSM, NUMA
//! balancing, memory and swap), KVM's module parameters, virtualisation support, and the CPUs and
//! nodes. Every fact is optional: a file that is missing, unreadable or not understood makes the
//! fact unknown, never a default.

mod topology;

use serde::Serialize;

pub use self::topology::{CpuFacts, CpuTopology, HugePagePool, NodeFacts};
use super::{
    Roots,
    read::{
        bracketed_choice, field_value, read_bool_param, read_line, read_prefix, read_text, read_u64,
    },
};

/// Which hardware virtualisation flag `/proc/cpuinfo` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HwVirt {
    /// Intel VT-x.
    Vmx,
    /// AMD-V.
    Svm,
    /// The x86 flags line lists neither.
    Absent,
}

/// Whether the host can run KVM guests at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Virtualization {
    /// `None` when `/proc/cpuinfo` is unreadable or has no x86 `flags` line.
    pub cpu_flag: Option<HwVirt>,
    /// `/sys/module/kvm` exists; `None` when `/sys/module` cannot be read.
    pub kvm_loaded: Option<bool>,
    /// `/sys/class/misc/kvm` exists, i.e. `/dev/kvm` is registered.
    pub kvm_device: Option<bool>,
}

/// `/sys/kernel/mm/transparent_hugepage`: the bracketed choice of each file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Thp {
    /// `always`, `madvise` or `never`.
    pub enabled: Option<String>,
    /// `always`, `defer`, `defer+madvise`, `madvise` or `never`.
    pub defrag: Option<String>,
}

/// `/sys/kernel/mm/ksm`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ksm {
    /// 0 stopped, 1 running, 2 stopped and unmerged.
    pub run: Option<u64>,
    pub pages_shared: Option<u64>,
    pub pages_sharing: Option<u64>,
    pub pages_unshared: Option<u64>,
    pub merge_across_nodes: Option<u64>,
}

/// `kvm_intel` parameters; present only when the module is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KvmIntel {
    pub enable_apicv: Option<bool>,
    pub enable_ipiv: Option<bool>,
    pub ple_gap: Option<u64>,
    pub ept: Option<bool>,
}

/// `kvm_amd` parameters; present only when the module is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KvmAmd {
    pub avic: Option<bool>,
    pub pause_filter_count: Option<u64>,
    pub npt: Option<bool>,
}

/// `/sys/module/kvm*/parameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KvmParams {
    pub halt_poll_ns: Option<u64>,
    pub halt_poll_ns_grow: Option<u64>,
    pub halt_poll_ns_shrink: Option<u64>,
    /// As the kernel prints it: `Y`, `N`, `force`, `off`, `never`, `auto`.
    pub nx_huge_pages: Option<String>,
    pub intel: Option<KvmIntel>,
    pub amd: Option<KvmAmd>,
}

/// `/proc/meminfo`, sizes in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    pub mem_total: Option<u64>,
    pub mem_available: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
    /// Pages of the default huge page size.
    pub hugepages_total: Option<u64>,
    pub hugepages_free: Option<u64>,
    pub hugepagesize: Option<u64>,
}

/// Cumulative counters from `/proc/vmstat`; rates need two readings
/// (see [`crate::advice::HostObservations::from_vmstat`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VmStat {
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
    pub numa_hint_faults: Option<u64>,
    pub numa_hint_faults_local: Option<u64>,
}

/// Everything the rules know about the host's configuration. Every field is optional: a
/// missing or unreadable file means "unknown", never a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub virtualization: Virtualization,
    pub thp: Thp,
    pub ksm: Ksm,
    /// `kernel.numa_balancing`: 0 off, 1 on (2 and 3 are memory-tiering modes).
    pub numa_balancing: Option<u64>,
    pub kvm: KvmParams,
    /// `/sys/devices/system/cpu/online`.
    pub online_cpus: Option<Vec<u32>>,
    /// One entry per `cpuN` directory; `None` when the directory cannot be listed.
    pub cpus: Option<Vec<CpuFacts>>,
    /// `/sys/devices/system/cpu/smt/active`.
    pub smt_active: Option<bool>,
    /// One entry per `nodeN`; `None` when the kernel has no NUMA sysfs.
    pub nodes: Option<Vec<NodeFacts>>,
    pub meminfo: MemInfo,
    pub vmstat: VmStat,
}

impl VmStat {
    /// The counters of a `/proc/vmstat` text.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        Self {
            pswpin: field_value(text, "pswpin"),
            pswpout: field_value(text, "pswpout"),
            numa_hint_faults: field_value(text, "numa_hint_faults"),
            numa_hint_faults_local: field_value(text, "numa_hint_faults_local"),
        }
    }
}

impl HostFacts {
    /// Reads only `/proc/vmstat`, for counters sampled every window.
    #[must_use]
    pub fn read_vmstat(roots: &Roots) -> VmStat {
        VmStat::parse(&read_text(&roots.proc.join("vmstat")).unwrap_or_default())
    }

    /// Reads every fact under `roots`. Never fails: what cannot be read stays `None`.
    #[must_use]
    pub fn read(roots: &Roots) -> Self {
        let mut facts = Self::read_stable(roots);
        facts.refresh(roots, Self::read_vmstat(roots));
        facts
    }

    /// The facts that change only when the host is reconfigured — virtualisation support,
    /// KVM's module parameters, the CPUs, nodes and their governors — and are costly to read
    /// on a large host (`/proc/cpuinfo`, a dozen sysfs files per CPU). The others stay unknown
    /// until [`Self::refresh`].
    #[must_use]
    pub fn read_stable(roots: &Roots) -> Self {
        let topology = CpuTopology::read(&roots.sys);
        Self {
            virtualization: read_virtualization(roots),
            kvm: read_kvm(roots),
            online_cpus: topology.online,
            cpus: topology.cpus,
            smt_active: topology.smt_active,
            nodes: topology.nodes,
            ..Self::default()
        }
    }

    /// Re-reads the facts that change while VMs run — memory management (THP, KSM, NUMA
    /// balancing) and memory — and takes `vmstat`, read by the caller once for the window.
    pub fn refresh(&mut self, roots: &Roots, vmstat: VmStat) {
        let mm = roots.sys.join("kernel/mm");
        let thp = mm.join("transparent_hugepage");
        let ksm = mm.join("ksm");
        let meminfo = read_text(&roots.proc.join("meminfo")).unwrap_or_default();
        self.thp = Thp {
            enabled: read_choice(&thp.join("enabled")),
            defrag: read_choice(&thp.join("defrag")),
        };
        self.ksm = Ksm {
            run: read_u64(&ksm.join("run")),
            pages_shared: read_u64(&ksm.join("pages_shared")),
            pages_sharing: read_u64(&ksm.join("pages_sharing")),
            pages_unshared: read_u64(&ksm.join("pages_unshared")),
            merge_across_nodes: read_u64(&ksm.join("merge_across_nodes")),
        };
        self.numa_balancing = read_u64(&roots.proc.join("sys/kernel/numa_balancing"));
        self.meminfo = MemInfo {
            mem_total: field_value(&meminfo, "MemTotal"),
            mem_available: field_value(&meminfo, "MemAvailable"),
            swap_total: field_value(&meminfo, "SwapTotal"),
            swap_free: field_value(&meminfo, "SwapFree"),
            hugepages_total: field_value(&meminfo, "HugePages_Total"),
            hugepages_free: field_value(&meminfo, "HugePages_Free"),
            hugepagesize: field_value(&meminfo, "Hugepagesize"),
        };
        self.vmstat = vmstat;
    }
}

fn read_choice(path: &std::path::Path) -> Option<String> {
    bracketed_choice(&read_line(path)?)
}

fn read_virtualization(roots: &Roots) -> Virtualization {
    // The first CPU's block is enough and lies well within the first 64 KiB.
    let cpu_flag = read_prefix(&roots.proc.join("cpuinfo"), 64 * 1024).and_then(|text| {
        let flags = text
            .lines()
            .find(|l| l.starts_with("flags") && l.contains(':'))?;
        let (_, words) = flags.split_once(':')?;
        let mut words = words.split_whitespace();
        Some(if words.clone().any(|w| w == "vmx") {
            HwVirt::Vmx
        } else if words.any(|w| w == "svm") {
            HwVirt::Svm
        } else {
            HwVirt::Absent
        })
    });
    let exists_under = |dir: &str, entry: &str| {
        let dir = roots.sys.join(dir);
        dir.is_dir().then(|| dir.join(entry).exists())
    };
    Virtualization {
        cpu_flag,
        kvm_loaded: exists_under("module", "kvm"),
        kvm_device: exists_under("class/misc", "kvm"),
    }
}

fn read_kvm(roots: &Roots) -> KvmParams {
    let module = |name: &str| {
        let dir = roots.sys.join("module").join(name).join("parameters");
        dir.is_dir().then_some(dir)
    };
    let kvm = module("kvm");
    let param = |name: &str| kvm.as_ref().and_then(|d| read_u64(&d.join(name)));
    KvmParams {
        halt_poll_ns: param("halt_poll_ns"),
        halt_poll_ns_grow: param("halt_poll_ns_grow"),
        halt_poll_ns_shrink: param("halt_poll_ns_shrink"),
        nx_huge_pages: kvm
            .as_ref()
            .and_then(|d| read_line(&d.join("nx_huge_pages")))
            .filter(|v| v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric())),
        intel: module("kvm_intel").map(|d| KvmIntel {
            enable_apicv: read_bool_param(&d.join("enable_apicv")),
            enable_ipiv: read_bool_param(&d.join("enable_ipiv")),
            ple_gap: read_u64(&d.join("ple_gap")),
            ept: read_bool_param(&d.join("ept")),
        }),
        amd: module("kvm_amd").map(|d| KvmAmd {
            avic: read_bool_param(&d.join("avic")),
            pause_filter_count: read_u64(&d.join("pause_filter_count")),
            npt: read_bool_param(&d.join("npt")),
        }),
    }
}
