//! What one scrape of `/metrics` must show, held against the ledger of VM lives: nothing of a VM
//! reaped more than [`GRACE`] before the scrape, every VM that has run for [`GRACE`] with all
//! its vCPUs, no pid or thread of the test under another name, and no vCPU with more context
//! switches than the kernel counted for its thread.
//!
//! kvmtop refreshes once a second, and a scrape returns the snapshot of the last refresh, so a
//! VM's arrival and departure show up to about a second late; [`GRACE`] allows two.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::{
    exposition::{Exposition, Sample},
    vms::{Ledger, Lifetime, VCPUS},
};

pub const GRACE: Duration = Duration::from_secs(2);

/// When a scrape was sent and when its answer was complete.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub sent: Instant,
    pub answered: Instant,
}

/// Everything wrong with one scrape; empty when it is right. Reads the kernel's counts of the
/// VMs still running, so it must be called with the ledger locked (no VM is killed meanwhile).
pub fn scrape(exposition: &Exposition, span: Span, ledger: &Ledger) -> Vec<String> {
    let mut problems = Vec::new();
    let since = span.sent.checked_sub(GRACE).unwrap_or(span.sent);
    for sample in &exposition.samples {
        series(sample, span, since, ledger, &mut problems);
    }
    for life in &ledger.lifetimes {
        present(exposition, life, span, &mut problems);
    }
    context_switches(exposition, ledger, &mut problems);
    problems.sort();
    problems.dedup();
    problems
}

/// `churn<n>-<pid>` as (n, pid).
fn parse_name(name: &str) -> Option<(usize, u32)> {
    let (n, pid) = name.strip_prefix("churn")?.split_once('-')?;
    Some((n.parse().ok()?, pid.parse().ok()?))
}

/// One series: a churn name must be a VM alive within the grace period, under its own pid; a
/// pid of the test must carry its VM's name; and no VM is named after a vCPU thread.
fn series(sample: &Sample, span: Span, since: Instant, ledger: &Ledger, out: &mut Vec<String>) {
    let vm = sample.label("vm");
    let pid: Option<u32> = sample.label("pid").and_then(|p| p.parse().ok());
    let show = || format!("{} {:?}", sample.name, sample.labels);
    if sample.label("pid").is_some_and(|p| !p.is_empty()) && vm == Some("") {
        out.push(format!("a series with a pid and no VM name: {}", show()));
    }
    if let Some((n, named_pid)) = vm.and_then(parse_name) {
        match ledger.lifetimes.get(n) {
            None => out.push(format!("a VM the test never started: {}", show())),
            Some(life) if life.pid.is_some_and(|p| p != named_pid) => {
                out.push(format!("churn{n} under another pid: {}", show()));
            }
            Some(life) if life.reaped.is_some_and(|r| r < since) => out.push(format!(
                "churn{n} reaped {:.1} s before the scrape: {}",
                span.sent.duration_since(life.reaped.unwrap()).as_secs_f64(),
                show()
            )),
            Some(_) if pid.is_some_and(|p| p != named_pid) => {
                out.push(format!("a name and pid that disagree: {}", show()));
            }
            Some(_) => {}
        }
    }
    // A vCPU thread taken for a VM of its own shows up under the thread's name.
    if vm.is_some_and(is_vcpu_thread_name) {
        out.push(format!("a vCPU thread taken for a VM: {}", show()));
    }
    let Some(pid) = pid else { return };
    // Ids that have been the test's since before the oldest snapshot the scrape can return,
    // and still were when it answered: no other process can have had them meanwhile.
    let owners: Vec<&Lifetime> = ledger
        .lifetimes
        .iter()
        .filter(|l| l.requested <= since && l.killed.is_none_or(|k| k > span.answered))
        .filter(|l| l.task_ids().any(|id| id == pid))
        .collect();
    if owners.is_empty() {
        return;
    }
    if !owners.iter().any(|l| l.name().as_deref() == vm) {
        out.push(format!(
            "pid {pid}, {}'s since {:.1} s before the scrape, under another name: {}",
            owners[0].name().unwrap_or_default(),
            span.sent
                .saturating_duration_since(owners[0].requested)
                .as_secs_f64(),
            show()
        ));
    }
}

fn is_vcpu_thread_name(vm: &str) -> bool {
    vm.strip_prefix("vcpu")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(index, pid)| index.parse::<u32>().is_ok() && pid.parse::<u32>().is_ok())
}

/// A VM that has run for the grace period and lived through the scrape is there, with every
/// vCPU.
fn present(exposition: &Exposition, life: &Lifetime, span: Span, out: &mut Vec<String>) {
    let since = span.sent.checked_sub(GRACE).unwrap_or(span.sent);
    let ran_long_enough = life.running.is_some_and(|r| r <= since);
    if !ran_long_enough || life.killed.is_some_and(|k| k <= span.answered) {
        return;
    }
    let (Some(pid), Some(name)) = (life.pid, life.name()) else {
        return;
    };
    let pid = pid.to_string();
    let of_vm = |s: &&Sample| s.label("pid") == Some(pid.as_str()) && s.label("vm") == Some(&name);
    let ran_for = span
        .sent
        .saturating_duration_since(life.running.unwrap())
        .as_secs_f64();
    if !exposition
        .samples
        .iter()
        .filter(of_vm)
        .any(|s| s.name == "kvmtop_vm_info")
    {
        out.push(format!("{name} missing after running {ran_for:.1} s"));
        return;
    }
    let vcpus = exposition
        .samples
        .iter()
        .filter(of_vm)
        .find(|s| s.name == "kvmtop_vm_vcpus")
        .map(|s| s.value);
    if vcpus != Some(f64::from(VCPUS)) {
        out.push(format!(
            "{name} shows {vcpus:?} vCPUs after running {ran_for:.1} s"
        ));
    }
}

/// kvmtop counts a vCPU thread's switches from when it starts watching it; the kernel from the
/// thread's birth. More in kvmtop means switches carried over from another thread or process
/// (a reused tid or pid). Run time is not compared: see the test's documentation.
fn context_switches(exposition: &Exposition, ledger: &Ledger, out: &mut Vec<String>) {
    let mut counted: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for s in exposition
        .samples
        .iter()
        .filter(|s| s.name == "kvmtop_vcpu_context_switches_total")
    {
        let label = |name| s.label(name).unwrap_or_default().to_owned();
        *counted
            .entry((label("vm"), label("pid"), label("vcpu")))
            .or_default() += s.value;
    }
    for life in ledger
        .lifetimes
        .iter()
        .filter(|l| l.running.is_some() && l.killed.is_none())
    {
        let (Some(pid), Some(name)) = (life.pid, life.name()) else {
            continue;
        };
        for vcpu in &life.vcpus {
            let key = (name.clone(), pid.to_string(), vcpu.index.to_string());
            let Some(&kvmtop) = counted.get(&key) else {
                continue;
            };
            // Read after the scrape, so the kernel's count can only be the larger.
            let Some(kernel) = kernel_switches(pid, vcpu.tid) else {
                out.push(format!(
                    "cannot read the switches of {name} thread {}",
                    vcpu.tid
                ));
                continue;
            };
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            if kvmtop > kernel as f64 {
                out.push(format!(
                    "{name} vCPU {} (tid {}): kvmtop counted {kvmtop} context switches, the \
                     kernel {kernel}",
                    vcpu.index, vcpu.tid
                ));
            }
        }
    }
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of a thread.
fn kernel_switches(pid: u32, tid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .parse()
            .ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}
