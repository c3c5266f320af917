//! The rules engine: facts and observations in, evidence-backed recommendations out.
//!
//! [`evaluate`] applies every rule once. [`Engine`] adds hysteresis across evaluations so that
//! advice neither flickers nor lingers. Each rule lists the inputs it needed but did not get
//! in [`Evaluation::unavailable`], and stays quiet rather than guess.

mod apic;
mod catalog;
mod cpu;
mod engine;
mod exits;
mod halt;
mod host;
mod io;
mod memory;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde::Serialize;

use super::config::Thresholds;
use super::facts::VmFacts;
use super::inputs::{Inputs, VmInputs};
use catalog::{C5, E7, H2, I3, M6};
pub use catalog::{catalog, explain, rule};
pub use engine::Engine;

use crate::model::HostState;
pub use crate::model::advice::{
    Change, Comparison, Evidence, Recommendation, RuleFamily, RuleInfo, Severity, Source,
    StaticChange, Target, Unavailable, Value,
};

/// The result of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evaluation {
    /// In catalogue order, then by target.
    pub recommendations: Vec<Recommendation>,
    /// Inputs out of reach this time, one entry per rule and input.
    pub unavailable: Vec<Unavailable>,
    /// The host's capacity and memory management as the inputs read them, for the snapshot:
    /// the rules read these files every window anyway. Left unknown by the rules themselves;
    /// the [`super::Advisor`] fills it in.
    pub host: HostState,
}

/// A part of a rule that no input can decide, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutOfReach {
    pub rule: &'static str,
    pub part: &'static str,
    pub reason: &'static str,
}

/// The parts of the reference's rules that are not implemented. Every rule is implemented;
/// these are the conditions within them that the inputs cannot express.
pub const OUT_OF_REACH: &[OutOfReach] = &[
    OutOfReach {
        rule: H2.id,
        part: "<hap state='off'/> in the domain XML",
        reason: "leaves no trace on the QEMU command line of an x86 KVM guest; the host's \
                 kvm_intel.ept and kvm_amd.npt parameters, which are checked, decide paging",
    },
    OutOfReach {
        rule: C5.id,
        part: "threads observed running on vCPU CPUs",
        reason: "the rule uses the affinity in effect (Cpus_allowed_list), i.e. where the \
                 threads may run; the CPUs the scheduling programs saw them on are not an \
                 input of the rules yet",
    },
    OutOfReach {
        rule: M6.id,
        part: "swapping attributed to QEMU processes",
        reason: "swap traffic is collected host-wide (pswpin/pswpout), not per process",
    },
    OutOfReach {
        rule: E7.id,
        part: "correlation with numa_pte_updates, ksmd or compaction activity",
        reason: "only their configuration (numa_balancing, KSM run) is known; the rule \
                 reports it alongside the shootdown rate rather than proving causation",
    },
    OutOfReach {
        rule: I3.id,
        part: "host I/O scheduler and kind (rotational or not) of the backing device",
        reason: "drives are mapped to host block devices, but the device's queue settings \
                 are not read, so the HDD latency threshold applies and the recommendation \
                 states the target scheduler",
    },
];

/// What one rule function sees, and where it writes.
pub(crate) struct Ctx<'a> {
    pub inputs: &'a Inputs,
    pub t: &'a Thresholds,
    pub window: Option<f64>,
    out: Vec<Recommendation>,
    unavailable: Vec<Unavailable>,
}

impl<'a> Ctx<'a> {
    fn new(inputs: &'a Inputs, t: &'a Thresholds) -> Self {
        Self {
            inputs,
            t,
            window: inputs.window_seconds,
            out: Vec::new(),
            unavailable: Vec::new(),
        }
    }

    /// Adds a recommendation to this evaluation.
    pub fn push(&mut self, rec: Recommendation) {
        self.out.push(rec);
    }

    /// Records that `rule` lacked `input`.
    pub fn missing(&mut self, rule: &'static str, input: &str) {
        if !self
            .unavailable
            .iter()
            .any(|u| u.rule == rule && u.input == input)
        {
            self.unavailable.push(Unavailable {
                rule,
                input: input.to_owned(),
            });
        }
    }

    /// Recommendations already made in this evaluation.
    pub fn made(&self) -> &[Recommendation] {
        &self.out
    }

    /// A measurement over the window; a name written in the rule is kept without a copy.
    pub fn measured(
        &self,
        name: impl Into<Cow<'static, str>>,
        value: f64,
        cmp: Comparison,
        threshold: f64,
    ) -> Evidence {
        Evidence::measured(name, value, cmp, threshold, self.window)
    }
}

pub(crate) fn vm_target(facts: &VmFacts) -> Target {
    Target::Vm {
        pid: facts.pid,
        name: facts.name.clone(),
    }
}

pub(crate) fn vcpu_target(facts: &VmFacts, index: u32) -> Target {
    Target::Vcpu {
        pid: facts.pid,
        index,
        tid: facts.vcpu_tid(index),
    }
}

pub(crate) fn target_pid(target: &Target) -> Option<u32> {
    match target {
        Target::Host => None,
        Target::Vm { pid, .. }
        | Target::Vcpu { pid, .. }
        | Target::Drive { pid, .. }
        | Target::Nic { pid, .. } => Some(*pid),
    }
}

/// Calls `f` for each vCPU observation where `value` gives a number; records `input` as
/// missing for each VM where no vCPU has it.
pub(crate) fn per_vcpu(
    ctx: &mut Ctx<'_>,
    rule: &'static str,
    input: &str,
    value: impl Fn(&super::inputs::VcpuObservations) -> Option<f64>,
    mut f: impl FnMut(&mut Ctx<'_>, &VmInputs, u32, f64),
) {
    let inputs = ctx.inputs;
    for vm in &inputs.vms {
        let mut seen = false;
        for v in &vm.observations.vcpus {
            if let Some(x) = value(v) {
                seen = true;
                f(ctx, vm, v.index, x);
            }
        }
        if !seen {
            ctx.missing(rule, input);
        }
    }
}

/// `n` as a float, for evidence.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and sizes shown as evidence"
)]
pub(crate) fn num(n: u64) -> f64 {
    n as f64
}

fn order(id: &str) -> Option<usize> {
    catalog().iter().position(|r| r.id == id)
}

/// Catalogue order, then target order. Two stable sorts, so that a rule's place in the
/// catalogue (a search of it) is found once per recommendation, not twice per comparison:
/// a window of 100 VMs has some 300 recommendations.
pub(crate) fn sort_recommendations(recs: &mut [Recommendation]) {
    recs.sort_by(|a, b| a.target.cmp(&b.target));
    recs.sort_by_cached_key(|r| order(r.id));
}

/// Applies every rule once, without hysteresis.
#[must_use]
pub fn evaluate(inputs: &Inputs, thresholds: &Thresholds) -> Evaluation {
    let mut evaluation = evaluate_unsorted(inputs, thresholds);
    sort_recommendations(&mut evaluation.recommendations);
    evaluation
}

/// [`evaluate`], the recommendations in no particular order (the engine orders those it keeps).
pub(crate) fn evaluate_unsorted(inputs: &Inputs, thresholds: &Thresholds) -> Evaluation {
    let mut ctx = Ctx::new(inputs, thresholds);
    cpu::evaluate(&mut ctx);
    halt::evaluate(&mut ctx);
    exits::evaluate(&mut ctx);
    apic::evaluate(&mut ctx);
    memory::evaluate(&mut ctx);
    io::evaluate(&mut ctx);
    host::evaluate(&mut ctx);
    // C9 qualifies the latency rules, so it runs after them.
    halt::c9(&mut ctx);
    let recommendations = ctx.out;
    let mut unavailable = ctx.unavailable;
    unavailable.sort_by(|a, b| {
        order(a.rule)
            .cmp(&order(b.rule))
            .then(a.input.cmp(&b.input))
    });
    Evaluation {
        recommendations,
        unavailable,
        host: HostState::default(),
    }
}
