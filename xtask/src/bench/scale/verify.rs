//! Whether kvmtop shows the bench's VMs right: every VMM started is one VM with exactly its 2
//! vCPUs, each matched to the thread `/proc/PID/task` names `vcpuN`; and every other VM it shows
//! is a real VMM (another user's, holding a `kvm-vm` descriptor), not a process taken for one.

use std::collections::{BTreeMap, BTreeSet};

use guests::VcpuThread;
use serde::Serialize;

use super::exposition::Exposition;

/// How many examples of each kind of mistake the report keeps.
const EXAMPLES: usize = 5;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Correctness {
    /// VMs the bench started.
    pub expected: usize,
    /// Of those, shown with exactly their vCPUs (and, from a snapshot, the right threads).
    pub right: usize,
    /// Started but not shown.
    pub missing: usize,
    /// What was wrong, for the first few that were shown wrong or not at all.
    pub wrong: Vec<String>,
    /// Other VMs shown that are real VMMs on this host (not the bench's).
    pub foreign: usize,
    /// VMs shown whose process holds no VM: should never happen.
    pub extra: Vec<u32>,
}

impl Correctness {
    /// Every VM started is right and nothing else was taken for a VM.
    pub fn all_right(&self) -> bool {
        self.right == self.expected && self.extra.is_empty()
    }

    fn wrong(&mut self, pid: u32, why: &str) {
        if self.wrong.len() < EXAMPLES {
            self.wrong.push(format!("pid {pid}: {why}"));
        }
    }

    /// Sorts the VMs not started by the bench into other users' VMMs and mistakes.
    /// `is_vmm(pid)`: `None` once the process has gone (a VM that ended meanwhile).
    fn others(&mut self, shown: impl Iterator<Item = u32>, is_vmm: &dyn Fn(u32) -> Option<bool>) {
        for pid in shown {
            match is_vmm(pid) {
                Some(true) => self.foreign += 1,
                Some(false) => self.extra.push(pid),
                None => {}
            }
        }
    }
}

/// A vCPU as a snapshot lists it: its index and thread id, either possibly missing.
type Pair = (Option<u64>, Option<u64>);

/// The VMs started, by pid, with their vCPU threads.
pub type Expected = BTreeMap<u32, Vec<VcpuThread>>;

/// Checks a `kvmtop snapshot --format json`: VMs, vCPU indices and thread ids.
pub fn snapshot(
    json: &str,
    expected: &Expected,
    is_vmm: &dyn Fn(u32) -> Option<bool>,
) -> Result<Correctness, String> {
    let json: serde_json::Value =
        serde_json::from_str(json).map_err(|err| format!("the snapshot is not JSON: {err}"))?;
    let vms = json["vms"]
        .as_array()
        .ok_or("the snapshot has no \"vms\" list")?;
    let mut shown: BTreeMap<u32, Vec<Pair>> = BTreeMap::new();
    for vm in vms {
        let Some(pid) = vm["pid"].as_u64().and_then(|pid| u32::try_from(pid).ok()) else {
            continue;
        };
        let vcpus = vm["vcpus"].as_array().map_or_else(Vec::new, |vcpus| {
            vcpus
                .iter()
                .map(|vcpu| (vcpu["index"].as_u64(), vcpu["tid"].as_u64()))
                .collect()
        });
        if shown.insert(pid, vcpus).is_some() {
            return Err(format!("pid {pid} is listed twice"));
        }
    }
    let mut result = Correctness {
        expected: expected.len(),
        ..Correctness::default()
    };
    for (pid, threads) in expected {
        let Some(vcpus) = shown.remove(pid) else {
            result.missing += 1;
            result.wrong(*pid, "not shown");
            continue;
        };
        let want: BTreeSet<Pair> = threads
            .iter()
            .map(|t| (Some(u64::from(t.index)), Some(u64::from(t.tid))))
            .collect();
        let got: BTreeSet<Pair> = vcpus.iter().copied().collect();
        if vcpus.len() == threads.len() && got == want {
            result.right += 1;
        } else {
            let describe = |set: &BTreeSet<Pair>| {
                set.iter()
                    .map(|(index, tid)| format!("{}→{}", show(*index), show(*tid)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            result.wrong(
                *pid,
                &format!("vCPU→thread {} (want {})", describe(&got), describe(&want)),
            );
        }
    }
    result.others(shown.into_keys(), is_vmm);
    Ok(result)
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// Checks a scrape: each VM's `kvmtop_vm_vcpus` and the `vcpu` labels of its series (an
/// unmatched vCPU is labelled by thread, `tidN`). Thread ids are not in `/metrics`.
pub fn metrics(
    exposition: &Exposition,
    expected: &Expected,
    is_vmm: &dyn Fn(u32) -> Option<bool>,
) -> Correctness {
    let mut result = Correctness {
        expected: expected.len(),
        ..Correctness::default()
    };
    for (pid, threads) in expected {
        let Some(vm) = exposition.vms.get(pid) else {
            result.missing += 1;
            result.wrong(*pid, "not shown");
            continue;
        };
        let want: BTreeSet<String> = threads.iter().map(|t| t.index.to_string()).collect();
        #[allow(clippy::cast_precision_loss)] // A handful of vCPUs.
        let count_right = vm.vcpus == Some(threads.len() as f64);
        if count_right && vm.vcpu_labels == want {
            result.right += 1;
        } else {
            result.wrong(
                *pid,
                &format!(
                    "kvmtop_vm_vcpus {:?}, vcpu labels {:?}",
                    vm.vcpus, vm.vcpu_labels
                ),
            );
        }
    }
    let others = exposition
        .vms
        .keys()
        .copied()
        .filter(|pid| !expected.contains_key(pid));
    result.others(others, is_vmm);
    result
}

/// Whether a process holds a KVM VM (`anon_inode:kvm-vm` among its descriptors); `None` when it
/// is gone.
pub fn holds_vm(pid: u32) -> Option<bool> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.flatten().any(|entry| {
        std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:kvm-vm")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scale::exposition;

    fn expected() -> Expected {
        let vcpus = |first: u32| {
            vec![
                VcpuThread {
                    index: 0,
                    tid: first,
                },
                VcpuThread {
                    index: 1,
                    tid: first + 1,
                },
            ]
        };
        [(10, vcpus(11)), (20, vcpus(21)), (30, vcpus(31))].into()
    }

    /// 40 is another user's VMM, 50 a process that holds no VM, 60 has gone.
    fn is_vmm(pid: u32) -> Option<bool> {
        match pid {
            40 => Some(true),
            60 => None,
            _ => Some(false),
        }
    }

    #[test]
    fn snapshot_threads_must_match() {
        let json = r#"{"vms":[
            {"pid":10,"vcpus":[{"index":0,"tid":11},{"index":1,"tid":12}]},
            {"pid":20,"vcpus":[{"index":0,"tid":null},{"index":1,"tid":22}]},
            {"pid":40,"vcpus":[]},{"pid":50,"vcpus":[]},{"pid":60,"vcpus":[]}]}"#;
        let result = snapshot(json, &expected(), &is_vmm).unwrap();
        assert_eq!((result.expected, result.right, result.missing), (3, 1, 1));
        assert_eq!(result.foreign, 1);
        assert_eq!(result.extra, [50]);
        assert!(!result.all_right());
        assert_eq!(
            result.wrong,
            [
                "pid 20: vCPU→thread 0→none, 1→22 (want 0→21, 1→22)",
                "pid 30: not shown"
            ]
        );
        let twice = r#"{"vms":[{"pid":10,"vcpus":[]},{"pid":10,"vcpus":[]}]}"#;
        assert!(snapshot(twice, &expected(), &is_vmm).is_err());
        assert!(snapshot("{}", &expected(), &is_vmm).is_err());
    }

    #[test]
    fn snapshot_all_right() {
        let json = r#"{"vms":[
            {"pid":30,"vcpus":[{"index":1,"tid":32},{"index":0,"tid":31}]},
            {"pid":10,"vcpus":[{"index":0,"tid":11},{"index":1,"tid":12}]},
            {"pid":20,"vcpus":[{"index":0,"tid":21},{"index":1,"tid":22}]},
            {"pid":40,"vcpus":[]}]}"#;
        let result = snapshot(json, &expected(), &is_vmm).unwrap();
        assert!(result.all_right(), "{result:?}");
        assert_eq!(result.foreign, 1);
    }

    #[test]
    fn metrics_labels_and_counts() {
        let text = "# TYPE kvmtop_vm_vcpus gauge\n\
            kvmtop_vm_vcpus{pid=\"10\"} 2\n\
            kvmtop_vm_vcpus{pid=\"20\"} 2\n\
            kvmtop_vm_vcpus{pid=\"30\"} 1\n\
            kvmtop_vm_vcpus{pid=\"50\"} 1\n\
            # TYPE r counter\n\
            r{pid=\"10\",vcpu=\"0\"} 1\n\
            r{pid=\"10\",vcpu=\"1\"} 1\n\
            r{pid=\"20\",vcpu=\"0\"} 1\n\
            r{pid=\"20\",vcpu=\"tid22\"} 1\n\
            r{pid=\"30\",vcpu=\"0\"} 1\n";
        let parsed = exposition::parse(text).unwrap();
        let result = metrics(&parsed, &expected(), &is_vmm);
        assert_eq!((result.right, result.missing), (1, 0));
        assert_eq!(result.extra, [50]);
        assert_eq!(result.wrong.len(), 2);
        assert!(result.wrong[0].contains("tid22"), "{:?}", result.wrong);
    }
}
