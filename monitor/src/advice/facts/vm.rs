//! Per-VM configuration facts: what the discovered [`Vmm`]'s command line asks for, plus the
//! CPU affinity and memory-node policy actually in effect for its threads.

use serde::Serialize;

use super::Roots;
use crate::discovery::qemu::{Disk, Nic, QemuCommandLine};
use crate::discovery::{ThreadRole, Vmm, VmmKind};
use crate::host::proc::{hugetlbfs_mounts, status_list};
use crate::model::Untrusted;

/// How guest RAM is backed.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent options of the command line"
)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryBacking {
    /// Guest RAM comes from hugetlbfs or a `hugetlb=on` memfd. For a file backend this is
    /// decided from the QEMU process's own mount table when it can be read, else from the
    /// path (hugetlbfs is conventionally mounted at `/dev/hugepages*`).
    pub hugetlb: bool,
    /// `-mem-path`, or the first file backend's `mem-path`.
    pub mem_path: Option<String>,
    /// `-mem-prealloc` or `prealloc=on` on every backend.
    pub prealloc: bool,
    /// `-overcommit mem-lock=on` (libvirt `<locked/>`): RAM cannot be swapped.
    pub locked: bool,
    /// Union of the backends' `host-nodes`.
    pub host_nodes: Vec<u32>,
    /// Every backend has `policy=bind` with host nodes (libvirt strict `<numatune>`).
    pub bind: bool,
    /// `memory-backend-*` types, in command-line order.
    pub backends: Vec<String>,
}

/// A guest disk, plus the controller it sits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskFacts {
    #[serde(flatten)]
    pub disk: Disk,
    /// The driver of the bus's controller (`lsi53c895a`, `virtio-scsi-pci`, `ahci`, …) when
    /// the bus names a `-device` on the command line.
    pub controller: Option<String>,
}

impl DiskFacts {
    /// The name users know the disk by: the device id, else the node, else its position.
    #[must_use]
    pub fn label(&self, position: usize) -> String {
        self.disk
            .id
            .clone()
            .or_else(|| self.disk.node.clone())
            .unwrap_or_else(|| format!("disk{position}"))
    }
}

/// A vCPU's thread and where it may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VcpuThread {
    pub index: u32,
    pub tid: Option<u32>,
    /// `Cpus_allowed_list` of the thread.
    pub allowed_cpus: Option<Vec<u32>>,
}

/// A QEMU main-loop, `IOThread` or vhost worker thread, and where it may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelperThread {
    pub tid: u32,
    pub role: ThreadRole,
    pub allowed_cpus: Option<Vec<u32>>,
}

/// Everything the rules know about one VM's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VmFacts {
    pub pid: u32,
    pub name: Untrusted,
    /// The VMM is QEMU and its command line was read.
    pub qemu: bool,
    /// `argv[0]` of QEMU.
    pub binary: Option<String>,
    /// vCPUs: KVM vCPU file descriptors when seen, else QEMU's boot CPUs.
    pub vcpus: Option<u32>,
    /// Guest RAM: `-m`, else the sum of the memory backends.
    pub memory_bytes: Option<u64>,
    pub memory: MemoryBacking,
    pub disks: Vec<DiskFacts>,
    pub nics: Vec<Nic>,
    /// `-cpu` model; `None` when not given.
    pub cpu_model: Option<String>,
    /// Accelerators in QEMU's order of preference (empty: QEMU's default).
    pub accelerators: Vec<String>,
    /// `-overcommit cpu-pm=on`: guest HLT/MWAIT do not exit.
    pub cpu_pm: Option<bool>,
    pub vcpu_threads: Vec<VcpuThread>,
    pub helper_threads: Vec<HelperThread>,
    /// `Mems_allowed_list` of the process (cpuset `mems`, libvirt strict `<numatune>`).
    pub mems_allowed: Option<Vec<u32>>,
}

fn on_mount(path: &str, mounts: &[String]) -> bool {
    mounts.iter().any(|m| {
        let m = m.trim_end_matches('/');
        path == m || path.strip_prefix(m).is_some_and(|r| r.starts_with('/')) || m.is_empty()
    })
}

/// Whether guest memory is backed by files (`-mem-path`, `memory-backend-file`).
fn memory_in_files(cmd: &QemuCommandLine) -> bool {
    cmd.mem_path.is_some() || cmd.memory_backends.iter().any(|b| b.mem_path.is_some())
}

fn memory_backing(cmd: &QemuCommandLine, mounts: Option<&[String]>) -> MemoryBacking {
    let huge_path = |path: &str| match mounts {
        Some(m) => on_mount(path, m),
        None => path.contains("hugepages"),
    };
    let backends = &cmd.memory_backends;
    let mut host_nodes: Vec<u32> = backends.iter().flat_map(|b| b.host_nodes.clone()).collect();
    host_nodes.sort_unstable();
    host_nodes.dedup();
    let backend_huge = backends
        .iter()
        .any(|b| b.hugetlb == Some(true) || b.mem_path.as_deref().is_some_and(huge_path));
    MemoryBacking {
        hugetlb: backend_huge || cmd.mem_path.as_deref().is_some_and(huge_path),
        mem_path: cmd
            .mem_path
            .clone()
            .or_else(|| backends.iter().find_map(|b| b.mem_path.clone())),
        prealloc: cmd.mem_prealloc
            || (!backends.is_empty() && backends.iter().all(|b| b.prealloc == Some(true))),
        locked: cmd
            .overcommit
            .as_ref()
            .and_then(|o| o.mem_lock.as_deref())
            .is_some_and(|v| v == "on" || v == "on-fault"),
        bind: !backends.is_empty()
            && backends
                .iter()
                .all(|b| b.policy.as_deref() == Some("bind") && !b.host_nodes.is_empty()),
        host_nodes,
        backends: backends.iter().map(|b| b.qom_type.clone()).collect(),
    }
}

/// The controller driver behind a disk's `bus=` (`scsi0.0` → the device `scsi0`). A
/// `-drive if=scsi` gets QEMU's default x86 SCSI controller, the LSI 53C895A.
fn controller(cmd: &QemuCommandLine, disk: &Disk) -> Option<String> {
    if let Some(bus) = disk.bus.as_deref() {
        let id = bus.split_once('.').map_or(bus, |(id, _)| id);
        return cmd
            .devices
            .iter()
            .rev()
            .find(|d| d.id.as_deref() == Some(id))
            .map(|d| d.driver.clone());
    }
    (disk.frontend.is_none() && disk.interface == "scsi").then(|| "lsi53c895a".to_owned())
}

impl VmFacts {
    /// The facts the discovered VMM carries, without reading anything.
    #[must_use]
    pub fn from_vmm(vmm: &Vmm) -> Self {
        Self::build(vmm, None)
    }

    /// [`Self::from_vmm`] plus the thread affinities, memory-node policy and mount table
    /// read from `roots.proc`.
    #[must_use]
    pub fn collect(vmm: &Vmm, roots: &Roots) -> Self {
        Self::build(vmm, Some(roots))
    }

    fn build(vmm: &Vmm, roots: Option<&Roots>) -> Self {
        let pid = vmm.id.pid;
        let affinity = |tid: u32| {
            roots.and_then(|r| status_list(&r.proc, pid, Some(tid), "Cpus_allowed_list"))
        };
        let cmd = vmm.qemu.as_deref();
        // The mount table (the host's whole table, long on a busy host) only tells whether a
        // guest memory file lies on hugetlbfs: it is read for guests with such a file alone.
        let mounts = roots
            .filter(|_| cmd.is_some_and(memory_in_files))
            .and_then(|r| hugetlbfs_mounts(&r.proc, pid));
        let vcpus = u32::try_from(vmm.vcpus.len())
            .ok()
            .filter(|n| *n > 0)
            .or_else(|| cmd.map(QemuCommandLine::boot_cpus));
        let memory_bytes = cmd.and_then(|c| {
            c.memory.as_ref().and_then(|m| m.size_bytes).or_else(|| {
                c.memory_backends
                    .iter()
                    .map(|b| b.size_bytes)
                    .try_fold(0u64, |acc, s| acc.checked_add(s?))
                    .filter(|n| *n > 0)
            })
        });
        let helper_threads = vmm
            .threads
            .iter()
            .filter(|t| match &t.role {
                ThreadRole::Main | ThreadRole::IoThread(_) => true,
                ThreadRole::KernelWorker(name) => name.exact().starts_with("vhost"),
                ThreadRole::Vcpu(_) | ThreadRole::Other(_) => false,
            })
            .map(|t| HelperThread {
                tid: t.tid,
                role: t.role.clone(),
                allowed_cpus: affinity(t.tid),
            })
            .collect();
        Self {
            pid,
            name: vmm.name.clone(),
            qemu: matches!(vmm.kind, VmmKind::Qemu) && cmd.is_some(),
            binary: cmd.and_then(|c| c.binary.clone()),
            vcpus,
            memory_bytes,
            memory: cmd
                .map(|c| memory_backing(c, mounts.as_deref()))
                .unwrap_or_default(),
            disks: cmd
                .map(|c| {
                    c.disks()
                        .into_iter()
                        .map(|disk| DiskFacts {
                            controller: controller(c, &disk),
                            disk,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            nics: cmd.map(QemuCommandLine::nics).unwrap_or_default(),
            cpu_model: cmd.and_then(|c| c.cpu.as_ref()).map(|c| c.model.clone()),
            accelerators: cmd.map(|c| c.accel.clone()).unwrap_or_default(),
            cpu_pm: cmd.and_then(|c| c.overcommit.as_ref()?.cpu_pm),
            vcpu_threads: vmm
                .vcpus
                .iter()
                .map(|v| VcpuThread {
                    index: v.index,
                    tid: v.tid,
                    allowed_cpus: v.tid.and_then(affinity),
                })
                .collect(),
            helper_threads,
            mems_allowed: roots.and_then(|r| status_list(&r.proc, pid, None, "Mems_allowed_list")),
        }
    }

    /// The thread running vCPU `index`.
    #[must_use]
    pub fn vcpu_tid(&self, index: u32) -> Option<u32> {
        self.vcpu_threads
            .iter()
            .find(|v| v.index == index)
            .and_then(|v| v.tid)
    }

    /// Union of the vCPU threads' allowed CPUs; `None` unless every vCPU's is known.
    #[must_use]
    pub fn vcpu_cpus(&self) -> Option<Vec<u32>> {
        if self.vcpu_threads.is_empty() {
            return None;
        }
        let mut all = Vec::new();
        for v in &self.vcpu_threads {
            all.extend(v.allowed_cpus.as_ref()?);
        }
        all.sort_unstable();
        all.dedup();
        Some(all)
    }

    /// Every vCPU thread may run on fewer CPUs than `online` (libvirt `<vcpupin>` or
    /// `placement='auto'`); `None` unless every affinity is known.
    #[must_use]
    pub fn vcpus_pinned(&self, online: &[u32]) -> Option<bool> {
        if self.vcpu_threads.is_empty() {
            return None;
        }
        self.vcpu_threads.iter().try_fold(true, |acc, v| {
            let cpus = v.allowed_cpus.as_ref()?;
            Some(acc && cpus.len() < online.len())
        })
    }

    /// Each vCPU has exactly one CPU and no two share one.
    #[must_use]
    pub fn pinned_one_to_one(&self) -> bool {
        let mut seen = Vec::new();
        !self.vcpu_threads.is_empty()
            && self
                .vcpu_threads
                .iter()
                .all(|v| match v.allowed_cpus.as_deref() {
                    Some([cpu]) if !seen.contains(cpu) => {
                        seen.push(*cpu);
                        true
                    }
                    _ => false,
                })
    }
}
