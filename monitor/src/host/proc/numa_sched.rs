//! NUMA balancing's own per-thread statistics, the NUMA part of `/proc/PID/task/TID/sched`
//! (`sched_show_numa()` in `kernel/sched/debug.c`, `show_numa_stats()` in `kernel/sched/fair.c`):
//!
//! ```text
//! mm->numa_scan_seq                            :                   12
//! numa_pages_migrated                          :                 3072
//! numa_preferred_nid                           :                    1
//! total_numa_faults                            :                  860
//! current_node=1, numa_group_id=4242
//! numa_faults node=0 task_private=40 task_shared=0 group_private=120 group_shared=8
//! numa_faults node=1 task_private=800 task_shared=20 group_private=2400 group_shared=60
//! ```
//!
//! Only `numa_pages_migrated` and `mm->numa_scan_seq` are running counts. The fault figures are
//! the kernel's decaying averages: at each placement pass (about once per scan of the address
//! space) every node's figure is halved and the pages faulted since are added, so they describe
//! where a thread's recent faults went, not how many there were in a window. The group figures
//! are shared by every thread of a NUMA group (the threads of a VMM, usually), so they must not
//! be summed over threads. The lines are there only on kernels built with NUMA balancing
//! (`CONFIG_NUMA_BALANCING`); `mm->numa_scan_seq` only for tasks with an address space.
//!
//! The file is untrusted text: it is read as a bounded prefix, numbers that do not parse drop
//! their field, and node numbers and line counts are capped.

use std::{collections::BTreeMap, path::Path};

use crate::host::read::{MAX_CPU, read_prefix};

/// One node's line. `private`: pages only this thread (or group) touched lately; `shared`:
/// pages other threads touched too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFaultWeights {
    pub task_private: u64,
    pub task_shared: u64,
    pub group_private: u64,
    pub group_shared: u64,
}

impl NodeFaultWeights {
    /// The thread's own recent faults on this node's memory.
    #[must_use]
    pub fn task(&self) -> u64 {
        self.task_private.saturating_add(self.task_shared)
    }
}

/// The NUMA statistics of one thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadNumaStats {
    /// `mm->numa_scan_seq`: scan passes over the process's memory so far.
    pub scan_seq: Option<u64>,
    /// `numa_pages_migrated`: pages NUMA balancing moved on this thread's faults, so far.
    pub pages_migrated: Option<u64>,
    /// `numa_preferred_nid`; `None` for the kernel's -1 (no preference yet).
    pub preferred_node: Option<u32>,
    /// `total_numa_faults`: the decaying sum of the node figures.
    pub total_faults: Option<u64>,
    /// `current_node`: the node of the CPU the thread last ran on.
    pub current_node: Option<u32>,
    /// `numa_group_id`; `None` for 0 (no group).
    pub group_id: Option<u32>,
    /// By memory node: recent faults (decaying), see the module documentation.
    pub by_node: BTreeMap<u32, NodeFaultWeights>,
}

/// Beyond any sched file: its scheduler part is about 2 KiB, and each of at most 1024 nodes
/// (`MAX_NUMNODES`) adds a line under 120 bytes.
const MAX_FILE_BYTES: u64 = 160 * 1024;
/// `numa_faults` lines taken from one file (`MAX_NUMNODES` is at most 1024).
const MAX_NODE_LINES: usize = 1024;

/// The NUMA statistics of a `sched` file; `None` when it has none (a kernel without NUMA
/// balancing).
#[must_use]
pub fn parse(text: &str) -> Option<ThreadNumaStats> {
    let mut stats = ThreadNumaStats::default();
    let mut seen = false;
    let mut node_lines = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("numa_faults ") {
            seen = true;
            node_lines += 1;
            if node_lines > MAX_NODE_LINES {
                continue;
            }
            if let Some((node, weights)) = node_line(rest) {
                stats.by_node.insert(node, weights);
            }
        } else if line.starts_with("current_node=") {
            seen = true;
            for pair in line.split(',') {
                match pair.trim().split_once('=') {
                    Some(("current_node", v)) => stats.current_node = node(v),
                    Some(("numa_group_id", v)) => {
                        stats.group_id = v.trim().parse().ok().filter(|&id| id != 0);
                    }
                    _ => {}
                }
            }
        } else if let Some((key, value)) = line.split_once(':') {
            let value = value.trim();
            match key.trim() {
                "mm->numa_scan_seq" => stats.scan_seq = value.parse().ok(),
                "numa_pages_migrated" => {
                    seen = true;
                    stats.pages_migrated = value.parse().ok();
                }
                "numa_preferred_nid" => {
                    seen = true;
                    stats.preferred_node = node(value);
                }
                "total_numa_faults" => {
                    seen = true;
                    stats.total_faults = value.parse().ok();
                }
                _ => {}
            }
        }
    }
    seen.then_some(stats)
}

/// `node=N task_private=… task_shared=… group_private=… group_shared=…`; a missing or garbled
/// figure reads as 0, a missing or garbled node drops the line.
fn node_line(rest: &str) -> Option<(u32, NodeFaultWeights)> {
    let mut node_id = None;
    let mut weights = NodeFaultWeights::default();
    for token in rest.split_ascii_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let number = || value.parse::<u64>().unwrap_or(0);
        match key {
            "node" => node_id = node(value),
            "task_private" => weights.task_private = number(),
            "task_shared" => weights.task_shared = number(),
            "group_private" => weights.group_private = number(),
            "group_shared" => weights.group_shared = number(),
            _ => {}
        }
    }
    Some((node_id?, weights))
}

/// A node number; `None` for -1, garbage or a number no host has.
fn node(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|&n| n <= MAX_CPU)
}

/// Reads thread `tid` of process `pid`. `Err` when the file cannot be read (the thread has
/// gone), `Ok(None)` when it has no NUMA statistics.
pub fn read(proc_root: &Path, pid: u32, tid: u32) -> Result<Option<ThreadNumaStats>, String> {
    let path = super::task_dir(proc_root, pid, tid).join("sched");
    let text = read_prefix(&path, MAX_FILE_BYTES)
        .ok_or_else(|| format!("cannot read {pid}/task/{tid}/sched"))?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/numa/sched")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn a_vcpu_thread_of_a_two_node_host() {
        let stats = parse(&fixture("two-node/4242/task/4250/sched")).unwrap();
        assert_eq!(stats.scan_seq, Some(12));
        assert_eq!(stats.pages_migrated, Some(3072));
        assert_eq!(stats.preferred_node, Some(1));
        assert_eq!(stats.total_faults, Some(860));
        assert_eq!(stats.current_node, Some(1));
        assert_eq!(stats.group_id, Some(4242));
        assert_eq!(stats.by_node.len(), 2);
        assert_eq!(
            stats.by_node[&1],
            NodeFaultWeights {
                task_private: 800,
                task_shared: 20,
                group_private: 2400,
                group_shared: 60,
            }
        );
        assert_eq!(stats.by_node[&0].task(), 40);
    }

    #[test]
    fn a_kernel_without_numa_balancing_has_none() {
        assert_eq!(parse(&fixture("no-numa-balancing")), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn no_preference_no_group_and_garbage() {
        let stats = parse(
            "numa_preferred_nid : -1\n\
             total_numa_faults : lots\n\
             current_node=0, numa_group_id=0\n\
             numa_faults node=0 task_private=x task_shared=3 group_private=0 group_shared=0\n\
             numa_faults node=-1 task_private=9 task_shared=9 group_private=9 group_shared=9\n\
             numa_faults node=99999999 task_private=9\n\
             numa_faults task_private=9\n",
        )
        .unwrap();
        assert_eq!(stats.preferred_node, None);
        assert_eq!(stats.total_faults, None);
        assert_eq!(stats.group_id, None);
        assert_eq!(stats.current_node, Some(0));
        assert_eq!(stats.scan_seq, None);
        assert_eq!(stats.by_node.len(), 1);
        assert_eq!(stats.by_node[&0].task(), 3);
    }

    #[test]
    fn node_lines_are_capped() {
        let text = "numa_faults node=7 task_private=1\n".repeat(MAX_NODE_LINES)
            + "numa_faults node=8 task_private=1\n";
        let stats = parse(&text).unwrap();
        assert_eq!(stats.by_node.keys().copied().collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn this_thread_reads_as_this_kernel_prints_it() {
        let me = std::process::id();
        let stats = read(Path::new("/proc"), me, me).expect("own sched file");
        let Some(stats) = stats else {
            crate::testing::skip(
                "host::proc::numa_sched::tests::this_thread_reads_as_this_kernel_prints_it",
                "this kernel prints no NUMA balancing statistics (CONFIG_NUMA_BALANCING off)",
            );
            return;
        };
        assert!(stats.scan_seq.is_some(), "{stats:?}");
        assert!(stats.pages_migrated.is_some(), "{stats:?}");
        assert!(stats.total_faults.is_some(), "{stats:?}");
        assert!(stats.current_node.is_some(), "{stats:?}");
        assert!(!stats.by_node.is_empty(), "{stats:?}");
    }
}
