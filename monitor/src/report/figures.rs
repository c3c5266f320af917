//! The figures a report compares between the baseline and the incident: the ones an operator
//! asks about first, per VM, vCPU and host block device. Each has a floor: the smallest change
//! that means something for it, so that a figure going from nothing to almost nothing does not
//! outrank a real rise elsewhere. And each has a weight: symptoms (steal, latencies, exits)
//! count fully, while figures that mostly echo another (time on a CPU falls as steal rises;
//! preemptions follow contention) count half, so the cause ranks above its echo.

use serde::Serialize;

use crate::model::{Snapshot, Untrusted, Vm};

/// What a figure is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Entity {
    Vm {
        vm: Untrusted,
        pid: u32,
        /// With `pid`, tells a VM from a later one on the same pid.
        start_time: u64,
    },
    Vcpu {
        vm: Untrusted,
        pid: u32,
        start_time: u64,
        vcpu: u32,
    },
    /// A host block device as one VM uses it.
    Device {
        vm: Untrusted,
        pid: u32,
        start_time: u64,
        device: String,
    },
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vm { vm, pid, .. } => write!(f, "VM {vm} (pid {pid})"),
            Self::Vcpu { vm, pid, vcpu, .. } => write!(f, "VM {vm} (pid {pid}) vCPU {vcpu}"),
            Self::Device {
                vm, pid, device, ..
            } => write!(
                f,
                "VM {vm} (pid {pid}) device {}",
                Untrusted::new(device.clone())
            ),
        }
    }
}

/// One kind of figure; figures are the same when their names are.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figure {
    /// Stable name, for scripts.
    pub name: &'static str,
    /// What it is, for people.
    pub title: &'static str,
    pub unit: &'static str,
    /// The smallest change that matters.
    #[serde(skip)]
    pub floor: f64,
    /// How much a change of this figure counts in the ranking.
    #[serde(skip)]
    pub weight: f64,
}

impl PartialEq for Figure {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Figure {}

impl PartialOrd for Figure {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Figure {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

impl std::hash::Hash for Figure {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

pub const STEAL: Figure = Figure {
    name: "steal",
    title: "vCPU steal (share of time runnable but waiting for a host CPU)",
    unit: "share",
    floor: 0.02,
    weight: 1.0,
};
pub const ON_CPU: Figure = Figure {
    name: "on_cpu",
    title: "vCPU time on a host CPU",
    unit: "share",
    floor: 0.05,
    weight: 0.5,
};
pub const PREEMPTIONS: Figure = Figure {
    name: "preemptions_per_second",
    title: "vCPU threads preempted",
    unit: "1/s",
    floor: 20.0,
    weight: 0.5,
};
pub const MIGRATIONS: Figure = Figure {
    name: "migrations_per_second",
    title: "vCPU thread migrations between host CPUs",
    unit: "1/s",
    floor: 2.0,
    weight: 1.0,
};
/// A busy vCPU waits a few dozen times a second, so its p99 is nearly its longest wait:
/// noisy, and steal already says how much time the waits cost.
pub const WAIT_P99: Figure = Figure {
    name: "run_queue_wait_p99_seconds",
    title: "run-queue wait, 99th percentile",
    unit: "s",
    floor: 0.005,
    weight: 0.5,
};
pub const EXITS: Figure = Figure {
    name: "exits_per_second",
    title: "VM exits",
    unit: "1/s",
    floor: 200.0,
    weight: 1.0,
};
pub const USERSPACE_EXITS: Figure = Figure {
    name: "userspace_exits_per_second",
    title: "exits to the VMM (userspace)",
    unit: "1/s",
    floor: 100.0,
    weight: 1.0,
};
pub const TLB_RECEIVED: Figure = Figure {
    name: "tlb_shootdowns_received_per_second",
    title: "TLB shootdowns received by the VM's threads",
    unit: "1/s",
    floor: 50.0,
    weight: 1.0,
};
pub const REMOTE_FAULTS: Figure = Figure {
    name: "numa_remote_fault_share",
    title: "NUMA hinting faults on another node's memory",
    unit: "share",
    floor: 0.1,
    weight: 1.0,
};
pub const IOPS: Figure = Figure {
    name: "iops",
    title: "block requests",
    unit: "1/s",
    floor: 50.0,
    weight: 1.0,
};
pub const IO_P99: Figure = Figure {
    name: "io_latency_p99_seconds",
    title: "block request latency, 99th percentile",
    unit: "s",
    floor: 0.001,
    weight: 1.0,
};
pub const IN_FLIGHT: Figure = Figure {
    name: "io_in_flight",
    title: "block requests in flight (mean)",
    unit: "requests",
    floor: 1.0,
    weight: 1.0,
};

/// One figure of one entity in one window.
pub type Value = (Entity, Figure, f64);

/// Every figure of one window.
#[must_use]
pub fn of_window(snapshot: &Snapshot) -> Vec<Value> {
    let seconds = snapshot.window.duration_seconds;
    let mut out = Vec::new();
    for vm in &snapshot.vms {
        vm_figures(vm, seconds, &mut out);
    }
    out
}

fn ns_to_s(ns: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let ns = ns as f64;
    ns / 1e9
}

#[allow(clippy::cast_precision_loss)]
fn per_second(count: u64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| count as f64 / seconds)
}

fn vm_figures(vm: &Vm, seconds: f64, out: &mut Vec<Value>) {
    let entity = Entity::Vm {
        vm: vm.name.clone(),
        pid: vm.pid,
        start_time: vm.start_time,
    };
    let mut push = |entity: &Entity, figure: Figure, value: Option<f64>| {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            out.push((entity.clone(), figure, value));
        }
    };
    let sched = &vm.families.sched.vcpus;
    push(&entity, STEAL, sched.steal);
    push(&entity, ON_CPU, sched.on_cpu);
    push(
        &entity,
        PREEMPTIONS,
        per_second(sched.involuntary_switches, seconds),
    );
    push(
        &entity,
        MIGRATIONS,
        sched.migrations.as_ref().map(|m| m.rate),
    );
    push(&entity, WAIT_P99, sched.wait.map(|w| ns_to_s(w.p99_ns)));
    let exits = &vm.families.exits;
    // Hardware exits only where the host reports them (not on nested or PVM hosts).
    if exits
        .by_reason
        .iter()
        .any(|r| r.source == crate::model::ExitSource::KvmExit)
    {
        push(&entity, EXITS, per_second(exits.total, seconds));
    }
    push(
        &entity,
        USERSPACE_EXITS,
        per_second(exits.userspace_total, seconds),
    );
    push(&entity, TLB_RECEIVED, Some(vm.families.tlb.received.rate));
    if let Some(faults) = &vm.families.numa.faults {
        #[allow(clippy::cast_precision_loss)]
        let share = (faults.pages > 0).then(|| faults.remote_pages as f64 / faults.pages as f64);
        push(&entity, REMOTE_FAULTS, share);
    }
    for vcpu in &vm.vcpus {
        let (Some(index), Some(sched)) = (vcpu.index, &vcpu.sched) else {
            continue;
        };
        let entity = Entity::Vcpu {
            vm: vm.name.clone(),
            pid: vm.pid,
            start_time: vm.start_time,
            vcpu: index,
        };
        push(&entity, STEAL, sched.figures.steal);
        push(
            &entity,
            MIGRATIONS,
            sched.figures.migrations.as_ref().map(|m| m.rate),
        );
    }
    for device in &vm.families.block.devices {
        let entity = Entity::Device {
            vm: vm.name.clone(),
            pid: vm.pid,
            start_time: vm.start_time,
            device: device.device.clone(),
        };
        push(&entity, IOPS, Some(device.iops));
        push(&entity, IO_P99, device.latency.map(|l| ns_to_s(l.p99_ns)));
        push(&entity, IN_FLIGHT, Some(device.avg_in_flight));
    }
}
