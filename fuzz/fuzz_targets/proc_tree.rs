//! A whole `/proc` as a file tree (see `kvmtop_fuzz::records`): processes with their `stat`,
//! `status`, `cmdline`, `comm`, `fd/` links, `task/*/{stat,comm,syscall,schedstat,sched}` (the
//! scheduler's and NUMA balancing's figures of `sched`),
//! `numa_maps`, `smaps_rollup`, `mountinfo`, and the host files (`stat`, `uptime`,
//! `sys/kernel/*`). Discovery scans it twice (it keeps state between scans) and every procfs
//! reader of `host::proc` reads each process and thread. Nothing may panic, and every name that
//! reaches a terminal must be free of characters a terminal acts on.
#![no_main]

use std::sync::LazyLock;

use kvmtop::{
    discovery::{Discovery, ProcRoot},
    host::proc::{self as procfs, ThreadAccounting},
};
use libfuzzer_sys::fuzz_target;

static ROOT: LazyLock<std::path::PathBuf> = LazyLock::new(|| kvmtop_fuzz::scratch("proc"));

fuzz_target!(|data: &[u8]| {
    let root: &std::path::Path = &ROOT;
    kvmtop_fuzz::write_tree(root, data);
    let mut discovery = Discovery::new(ProcRoot::new(root));
    for _ in 0..2 {
        let scan = discovery.scan();
        for vmm in &scan.vmms {
            kvmtop_fuzz::assert_terminal_safe("a VM name", &vmm.name.to_string());
            kvmtop_fuzz::assert_terminal_safe("a VMM's comm", &vmm.comm.to_string());
            for thread in &vmm.threads {
                kvmtop_fuzz::assert_terminal_safe("a thread name", &thread.comm.to_string());
            }
        }
        for problem in &scan.problems {
            kvmtop_fuzz::assert_terminal_safe("a discovery problem", problem);
        }
    }
    let _ = procfs::cpu_times(root);
    let _ = procfs::uptime(root);
    let _ = procfs::host_identity(root);
    let pids: Vec<u32> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .take(4)
        .collect();
    for pid in pids {
        if let Some(comm) = procfs::comm(root, pid) {
            kvmtop_fuzz::assert_terminal_safe("a comm", &comm.to_string());
        }
        let _ = procfs::status_list(root, pid, None, "Cpus_allowed_list");
        let _ = procfs::hugetlbfs_mounts(root, pid);
        let _ = procfs::memory::read(root, pid);
        let tids: Vec<u32> = std::fs::read_dir(root.join(pid.to_string()).join("task"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .take(8)
            .collect();
        for tid in tids {
            let _ = ThreadAccounting::read(root, pid, tid);
            if let Ok(Some(stats)) = procfs::numa_sched::read(root, pid, tid) {
                // Node numbers are bounded, whatever the file says.
                assert!(stats.by_node.len() <= 1024);
                assert!(stats.by_node.keys().all(|&node| node <= 65_535));
            }
            let _ = procfs::thread_runnable(root, pid, tid);
            let _ = procfs::status_list(root, pid, Some(tid), "Cpus_allowed_list");
        }
    }
});
