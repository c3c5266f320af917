//! Each rule fires on input past its threshold and stays quiet just short of it; plus the
//! engine's hysteresis and the catalogue.

mod catalog;
mod cpu;
mod engine;
mod exits;
mod host;
mod io;
mod memory;

use std::collections::BTreeMap;

use super::*;
use crate::advice::facts::{HostFacts, VcpuThread, VmFacts};
use crate::advice::inputs::{
    BlockObservation, ByReason, HostObservations, Inputs, VcpuObservations, VmInputs,
    VmObservations,
};
use crate::advice::testutil::{fixture, qemu};

/// The `defaults` fixture host: one node, 2 cores / 4 CPUs, 16 GiB, Intel.
fn host() -> HostFacts {
    HostFacts::read(&fixture("defaults"))
}

/// The `thp-never-ksm-on` fixture host: two nodes of 2 cores and 8 GiB, AMD.
fn numa_host() -> HostFacts {
    HostFacts::read(&fixture("thp-never-ksm-on"))
}

/// A QEMU VM with `args` and `vcpus` vCPUs (tids pid+1…), each with empty observations.
fn vm(pid: u32, args: &[&str], vcpus: u32) -> VmInputs {
    let tids: Vec<u32> = (1..=vcpus).map(|i| pid + i).collect();
    let facts = VmFacts::from_vmm(&qemu(pid, args, &tids));
    let observations = VmObservations {
        vcpus: (0..vcpus)
            .map(|index| VcpuObservations {
                index,
                ..VcpuObservations::default()
            })
            .collect(),
        ..VmObservations::default()
    };
    VmInputs {
        facts,
        observations,
    }
}

/// A plain 2-vCPU, 1 GiB VM.
fn small_vm(pid: u32) -> VmInputs {
    vm(
        pid,
        &[
            "-name",
            "guest=small",
            "-m",
            "1024",
            "-smp",
            "2",
            "-cpu",
            "host",
        ],
        2,
    )
}

/// Sets every vCPU's allowed CPUs.
fn pin(vm: &mut VmInputs, cpus: &[&[u32]]) {
    vm.facts.vcpu_threads = cpus
        .iter()
        .zip(0u32..)
        .map(|(c, index)| VcpuThread {
            index,
            tid: Some(vm.facts.pid + index + 1),
            allowed_cpus: Some(c.to_vec()),
        })
        .collect();
}

fn inputs(host: HostFacts, vms: Vec<VmInputs>) -> Inputs {
    Inputs {
        window_seconds: Some(60.0),
        host,
        host_observations: HostObservations::default(),
        vms,
    }
}

/// A rate map for the `Option` fields of the observations.
#[expect(clippy::unnecessary_wraps, reason = "assigned to Option fields")]
fn rates(pairs: &[(&str, f64)]) -> Option<ByReason> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned().into(), *v))
            .collect(),
    )
}

/// The recommendations of rule `id`.
fn found(inputs: &Inputs, id: &str) -> Vec<Recommendation> {
    let eval = evaluate(inputs, &Thresholds::default());
    for rec in &eval.recommendations {
        assert!(
            !rec.evidence().is_empty() && !rec.source.is_empty(),
            "{rec:?}"
        );
    }
    eval.recommendations
        .into_iter()
        .filter(|r| r.id == id)
        .collect()
}

fn fires(inputs: &Inputs, id: &str) -> Recommendation {
    let mut recs = found(inputs, id);
    assert_eq!(recs.len(), 1, "{id} should fire once: {recs:#?}");
    recs.remove(0)
}

fn quiet(inputs: &Inputs, id: &str) {
    let recs = found(inputs, id);
    assert!(recs.is_empty(), "{id} should be quiet: {recs:#?}");
}

fn unavailable(inputs: &Inputs, id: &str) -> Vec<String> {
    evaluate(inputs, &Thresholds::default())
        .unavailable
        .into_iter()
        .filter(|u| u.rule == id)
        .map(|u| u.input)
        .collect()
}

#[test]
fn no_inputs_no_advice_and_no_panic() {
    let eval = evaluate(&Inputs::default(), &Thresholds::default());
    assert!(eval.recommendations.is_empty(), "{eval:#?}");
}

#[test]
fn missing_observations_are_listed_not_guessed() {
    let i = inputs(host(), vec![small_vm(100)]);
    let eval = evaluate(&i, &Thresholds::default());
    let ids: Vec<&str> = eval.recommendations.iter().map(|r| r.id).collect();
    assert!(
        ids.is_empty(),
        "a well-configured VM without observations: {ids:?}"
    );
    for rule in ["C1", "C3", "C6", "E1", "E3", "E7", "E8", "E9", "M3", "I3"] {
        assert!(
            eval.unavailable.iter().any(|u| u.rule == rule),
            "{rule} should list a missing input: {:#?}",
            eval.unavailable
        );
    }
    assert!(unavailable(&i, "C1").contains(&"per-vCPU run-queue wait share".to_owned()));
}

#[test]
fn recommendations_serialise_with_their_evidence() {
    let mut v = small_vm(100);
    v.observations.vcpus[0].run_delay_share = Some(0.5);
    let rec = fires(&inputs(host(), vec![v]), "C1");
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["id"], "C1");
    assert_eq!(json["severity"], "critical");
    assert_eq!(json["target"]["kind"], "vcpu");
    assert_eq!(json["target"]["tid"], 101);
    assert_eq!(json["evidence"][0]["threshold"], 0.2);
    assert_eq!(json["evidence"][0]["window_seconds"], 60.0);
    assert!(json["source"][0]["title"].is_string());
}
