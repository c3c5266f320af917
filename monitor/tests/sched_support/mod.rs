//! Shared by the scheduling tests: real guests frozen at both ends of a window, kvmtop and the
//! reference observers around them, and the synthetic-event harness.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod harness;

use std::{
    collections::HashMap,
    fs,
    process::{Command, Stdio},
};

use guests::Guest;
use serde_json::Value;

/// Restricts thread `tid` to `cpus` (a `taskset` CPU list) with `taskset`, the tool an operator
/// would use.
pub fn pin(tid: u32, cpus: &str) {
    let status = Command::new("taskset")
        .args(["-p", "-c", cpus, &tid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("running taskset");
    assert!(status.success(), "taskset -p -c {cpus} {tid} failed");
}

/// Freezes a guest: once this returns, none of its threads runs.
pub fn freeze(guest: &Guest) {
    guest.freeze().expect("freezing the guest");
}

/// Time a hypervisor below this host has stolen from `cpu` so far, in ns (the `steal` column of
/// its `/proc/stat` line, in `USER_HZ` ticks of 10 ms).
///
/// Where the kernel accounts steal (paravirtualised steal clock), a thread's `schedstat` run time
/// leaves out time stolen while it was on a CPU, but kvmtop's on-CPU time, taken from the
/// monotonic clock at each switch, keeps it (as run-queue wait does in both): on a host whose own
/// CPUs are shared, the two run times differ by the steal that fell in the thread's runs.
pub fn cpu_steal_ns(cpu: &str) -> u64 {
    let stat = fs::read_to_string("/proc/stat").expect("/proc/stat");
    let prefix = format!("cpu{cpu} ");
    let steal_ticks: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|fields| fields.split_whitespace().nth(7)?.parse().ok())
        .unwrap_or_else(|| panic!("no steal column for cpu{cpu} in /proc/stat"));
    steal_ticks * 10_000_000
}

/// The kernel's own accounting of a thread: `/proc/PID/task/TID/schedstat` (run time, run-queue
/// wait, times switched in) and the context-switch counts of its `status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelAccounting {
    pub run_ns: u64,
    pub wait_ns: u64,
    pub switched_in: u64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl KernelAccounting {
    pub fn read(pid: u32, tid: u32) -> Self {
        let dir = format!("/proc/{pid}/task/{tid}");
        let schedstat = fs::read_to_string(format!("{dir}/schedstat")).expect("schedstat");
        let fields: Vec<u64> = schedstat
            .split_whitespace()
            .map(|f| f.parse().expect("schedstat field"))
            .collect();
        let status = fs::read_to_string(format!("{dir}/status")).expect("status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {dir}/status"))
        };
        Self {
            run_ns: fields[0],
            wait_ns: fields[1],
            switched_in: fields[2],
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        }
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            run_ns: self.run_ns - earlier.run_ns,
            wait_ns: self.wait_ns - earlier.wait_ns,
            switched_in: self.switched_in - earlier.switched_in,
            voluntary: self.voluntary - earlier.voluntary,
            involuntary: self.involuntary - earlier.involuntary,
        }
    }
}

pub fn vm(snapshot: &Value, pid: u32) -> &Value {
    snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == pid)
        .unwrap_or_else(|| panic!("VM {pid} missing from {snapshot:#}"))
}

pub fn vcpu_sched(vm: &Value, tid: u32) -> &Value {
    let vcpu = vm["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["tid"] == tid)
        .unwrap_or_else(|| panic!("vCPU thread {tid} missing from {vm:#}"));
    assert!(vcpu["sched"].is_object(), "no scheduling figures: {vcpu:#}");
    &vcpu["sched"]
}

/// runqlat's per-thread histograms (`-L`): tid → counts per log2 usec slot.
pub fn parse_runqlat(output: &str) -> HashMap<u32, Vec<u64>> {
    let mut hists: HashMap<u32, Vec<u64>> = HashMap::new();
    let mut current = None;
    for line in output.lines() {
        if let Some(rest) = line.trim().strip_prefix("tid = ") {
            current = rest.split_whitespace().next().and_then(|t| t.parse().ok());
            continue;
        }
        let (Some(tid), Some((range, count))) = (current, line.split_once(':')) else {
            continue;
        };
        let (Some(low), Some(count)) = (
            range
                .split("->")
                .next()
                .and_then(|l| l.trim().parse::<u64>().ok()),
            count
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let slot = if low == 0 { 0 } else { low.ilog2() as usize };
        let hist = hists.entry(tid).or_default();
        hist.resize(hist.len().max(slot + 1), 0);
        hist[slot] += count;
    }
    hists
}

/// runqlat's usec slot of a wait: `floor(log2(ns / 1000))`, 0 and 1 µs in slot 0.
fn usec_slot(ns: u64) -> usize {
    let usec = ns / 1000;
    if usec == 0 { 0 } else { usec.ilog2() as usize }
}

/// kvmtop's ns buckets as (slot of the floor, slot of the top, count). A bucket
/// [2^b, 2^(b+1)) ns straddles a usec slot boundary, 1000 not being a power of two: 95 % of it
/// ([2^b, 1.95 × 2^b) ns) is in slot b − 10, the rest in slot b − 9.
fn bucket_slots(buckets: &[Value]) -> Vec<(usize, usize, u64)> {
    buckets
        .iter()
        .map(|bucket| {
            let floor = bucket["floor_ns"].as_u64().unwrap();
            let top = floor.max(1) * 2 - 1;
            (
                usec_slot(floor),
                usec_slot(top),
                bucket["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The usec slots that can hold the median of kvmtop's ns histogram: from every wait in the
/// slot of its bucket's floor (the slot covering 95 % of the bucket, kvmtop's own estimate) to
/// every straddling wait in the next slot.
pub fn median_slot_range(buckets: &[Value]) -> std::ops::RangeInclusive<usize> {
    let waits = bucket_slots(buckets);
    let total: u64 = waits.iter().map(|w| w.2).sum();
    let median = |upper: bool| -> usize {
        let mut counts = vec![0u64; 64];
        for &(low, high, n) in &waits {
            counts[if upper { high } else { low }] += n;
        }
        median_slot(&counts, total)
    };
    median(false)..=median(true)
}

/// Checks runqlat's whole histogram against kvmtop's: for every slot, the waits at or below it
/// per runqlat must lie between those kvmtop's buckets put there for sure and those they can.
/// `slack` allows for a wait the two programs timed a few hundred ns apart across a boundary.
pub fn assert_same_distribution(what: &str, buckets: &[Value], runqlat: &[u64], slack: u64) {
    let waits = bucket_slots(buckets);
    let mut theirs = 0;
    for (slot, n) in runqlat.iter().enumerate() {
        theirs += n;
        let surely: u64 = waits.iter().filter(|w| w.1 <= slot).map(|w| w.2).sum();
        let possibly: u64 = waits.iter().filter(|w| w.0 <= slot).map(|w| w.2).sum();
        assert!(
            surely.saturating_sub(slack) <= theirs && theirs <= possibly + slack,
            "{what}: runqlat has {theirs} waits up to slot {slot}, kvmtop {surely}..={possibly}"
        );
    }
}

/// The first slot whose cumulative count reaches half of `total` (runqlat's slots, or kvmtop's
/// mapped onto them).
pub fn median_slot(counts: &[u64], total: u64) -> usize {
    let mut below = 0;
    for (slot, n) in counts.iter().enumerate() {
        below += n;
        if 2 * below >= total {
            return slot;
        }
    }
    counts.len() - 1
}
