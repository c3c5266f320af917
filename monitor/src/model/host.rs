//! The host the VMs share: who it is, and over each window what it offers them — CPUs, memory
//! and swap — and how its memory management is set (THP, KSM, NUMA balancing). The live view's
//! header and the text output put the VMs' demand beside these figures (CPU and memory
//! overcommit).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Snapshot, Untrusted};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    /// Capacity and memory management over the window. Absent from recordings made before it
    /// was recorded: every figure is then null.
    #[serde(default)]
    pub state: HostState,
}

/// What the host offers over the window. Every figure is null when its file was missing,
/// unreadable or not understood: unknown, never a default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostState {
    /// Online CPUs (`/sys/devices/system/cpu/online`).
    pub cpus: Option<u32>,
    /// Share of all CPUs' time not idle over the window (0–1, `/proc/stat`).
    pub cpu_busy: Option<f64>,
    /// `MemTotal`, bytes.
    pub memory_bytes: Option<u64>,
    /// `MemAvailable`, bytes.
    pub memory_available_bytes: Option<u64>,
    /// `SwapTotal`, bytes.
    pub swap_bytes: Option<u64>,
    /// `SwapFree`, bytes.
    pub swap_free_bytes: Option<u64>,
    /// Pages swapped in and out per second over the window (`pswpin`, `pswpout`).
    pub swap_in_pages_per_second: Option<f64>,
    pub swap_out_pages_per_second: Option<f64>,
    /// Transparent huge pages: the `enabled` choice (`always`, `madvise`, `never`).
    pub transparent_hugepages: Option<Untrusted>,
    /// KSM's `run`: 0 stopped, 1 running, 2 stopped and unmerged.
    pub ksm_run: Option<u64>,
    /// Pages KSM saves: guest pages mapped to a shared page.
    pub ksm_pages_sharing: Option<u64>,
    /// `kernel.numa_balancing`: 0 off, 1 on, 2 and 3 memory-tiering modes.
    pub numa_balancing: Option<u64>,
}

impl HostState {
    /// Host memory plus swap: what guest memory can be committed against before the host
    /// must refuse or kill.
    #[must_use]
    pub fn memory_and_swap_bytes(&self) -> Option<u64> {
        Some(self.memory_bytes? + self.swap_bytes.unwrap_or(0))
    }

    /// "on", "off", "tiering" for `numa_balancing`; "running", "stopped", "unmerged" for KSM.
    #[must_use]
    pub fn numa_balancing_label(&self) -> Option<&'static str> {
        Some(match self.numa_balancing? {
            0 => "off",
            1 => "on",
            _ => "tiering",
        })
    }

    /// The memory-management settings as operators name them, those known: "THP madvise",
    /// "KSM running", "NUMA balancing on".
    #[must_use]
    pub fn settings(&self) -> Vec<String> {
        let mut settings = Vec::new();
        if let Some(thp) = &self.transparent_hugepages {
            settings.push(format!("THP {thp}"));
        }
        if let Some(ksm) = self.ksm_label() {
            settings.push(format!("KSM {ksm}"));
        }
        if let Some(balancing) = self.numa_balancing_label() {
            settings.push(format!("NUMA balancing {balancing}"));
        }
        settings
    }

    #[must_use]
    pub fn ksm_label(&self) -> Option<&'static str> {
        Some(match self.ksm_run? {
            0 => "stopped",
            1 => "running",
            _ => "unmerged",
        })
    }
}

/// What the VMs of a snapshot ask of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    /// vCPUs with a known index, over all VMs.
    pub vcpus: usize,
    /// The guests' configured RAM, over the VMs whose size is known.
    pub memory_bytes: u64,
    /// VMs whose RAM size is known, and VMs whose is not (the sum is then a lower bound).
    pub memory_known: usize,
    pub memory_unknown: usize,
}

impl Snapshot {
    /// What the VMs ask of the host: their vCPUs and configured RAM.
    #[must_use]
    pub fn demand(&self) -> Demand {
        let mut demand = Demand {
            vcpus: 0,
            memory_bytes: 0,
            memory_known: 0,
            memory_unknown: 0,
        };
        for vm in &self.vms {
            demand.vcpus += vm.vcpus.iter().filter(|v| v.index.is_some()).count();
            let configured = vm.families.numa.memory.as_ref();
            match configured.and_then(|m| m.guest_memory_bytes) {
                Some(bytes) => {
                    demand.memory_bytes = demand.memory_bytes.saturating_add(bytes);
                    demand.memory_known += 1;
                }
                None => demand.memory_unknown += 1,
            }
        }
        demand
    }
}

impl Demand {
    /// vCPUs per online CPU.
    #[must_use]
    pub fn cpu_overcommit(&self, host: &HostState) -> Option<f64> {
        #[expect(clippy::cast_precision_loss, reason = "vCPU counts far below 2^52")]
        host.cpus
            .filter(|&cpus| cpus > 0)
            .map(|cpus| self.vcpus as f64 / f64::from(cpus))
    }

    /// Configured guest RAM per byte of host memory plus swap; unknown without any VM's size.
    #[must_use]
    pub fn memory_overcommit(&self, host: &HostState) -> Option<f64> {
        let committable = host.memory_and_swap_bytes().filter(|&b| b > 0)?;
        #[expect(clippy::cast_precision_loss, reason = "byte counts; a ratio to show")]
        (self.memory_known > 0).then(|| self.memory_bytes as f64 / committable as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_host_without_state_reads_as_unknown() {
        let host: Host = serde_json::from_str(r#"{"hostname":"hv1","kernel":"6.18.0"}"#).unwrap();
        assert_eq!(host.state, HostState::default());
    }

    #[test]
    #[expect(clippy::cast_precision_loss, reason = "small test numbers")]
    fn the_fixture_asks_its_vcpus_and_ram_of_the_host() {
        let snapshot = crate::testing::fixture::snapshot();
        let demand = snapshot.demand();
        assert_eq!(demand.vcpus, 2 + snapshot.vms[1].vcpus.len());
        let host = &snapshot.host.state;
        let cpu = demand.cpu_overcommit(host).unwrap();
        assert!((cpu - demand.vcpus as f64 / 16.0).abs() < 1e-9);
        if demand.memory_known > 0 {
            let memory = demand.memory_overcommit(host).unwrap();
            assert!((memory - demand.memory_bytes as f64 / (72u64 << 30) as f64).abs() < 1e-9);
        }
        assert_eq!(
            demand.memory_known + demand.memory_unknown,
            snapshot.vms.len()
        );
        assert_eq!(demand.cpu_overcommit(&HostState::default()), None);
    }

    #[test]
    fn labels_follow_the_kernel_values() {
        let state = HostState {
            ksm_run: Some(2),
            numa_balancing: Some(1),
            memory_bytes: Some(8 << 30),
            ..HostState::default()
        };
        assert_eq!(state.ksm_label(), Some("unmerged"));
        assert_eq!(state.numa_balancing_label(), Some("on"));
        assert_eq!(state.memory_and_swap_bytes(), Some(8 << 30));
        assert_eq!(HostState::default().memory_and_swap_bytes(), None);
    }
}
