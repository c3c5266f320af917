//! The kernel sources of scheduling and NUMA figures, and attaching them one by one so that a
//! missing tracepoint or hook costs only the figures that need it.

use std::collections::BTreeMap;

use monitor_common::{
    numa::{NUMA_FAULT_FUNCTION, PROG_NUMA_FAULT_FENTRY, PROG_NUMA_FAULT_KPROBE},
    sched::{
        GLOBAL_MIGRATE_LAYOUT, GLOBAL_SCHED_WAKEUP_LAYOUT, GLOBAL_SWITCH_LAYOUT, MigrateLayout,
        PROG_SCHED_MIGRATE, PROG_SCHED_SWITCH, PROG_SCHED_WAKEUP, SchedWakeupLayout, SwitchLayout,
        WatchedEvent,
    },
};
use serde::Serialize;

use super::layout;
use crate::{bpf::Kernel, host::tracefs::TraceFs, model::Attachment};

/// One kernel source of scheduling figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedProbe {
    /// `sched:sched_switch`: on-CPU time, switches, the end of every wait.
    Switch,
    /// `sched:sched_wakeup`: the start of a wait after sleeping.
    Wakeup,
    /// `sched:sched_migrate_task`: migrations.
    Migrate,
    /// `task_numa_fault()`: NUMA hinting faults.
    NumaFault,
}

impl SchedProbe {
    pub const ALL: [Self; 4] = [Self::Switch, Self::Wakeup, Self::Migrate, Self::NumaFault];

    /// Short name, as in snapshots.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Switch => "sched_switch",
            Self::Wakeup => "sched_wakeup",
            Self::Migrate => "sched_migrate_task",
            Self::NumaFault => "numa_fault",
        }
    }

    /// The slot of [`monitor_common::sched::SCHED_WATCHED_EVENTS_MAP`] this source counts in.
    #[must_use]
    pub fn watched_event(self) -> WatchedEvent {
        match self {
            Self::Switch => WatchedEvent::Switch,
            Self::Wakeup => WatchedEvent::Wakeup,
            Self::Migrate => WatchedEvent::Migrate,
            Self::NumaFault => WatchedEvent::NumaFault,
        }
    }

    /// The kernel program(s) behind the source, as `bpftool prog show` names them.
    #[must_use]
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Self::Switch => &[PROG_SCHED_SWITCH],
            Self::Wakeup => &[PROG_SCHED_WAKEUP],
            Self::Migrate => &[PROG_SCHED_MIGRATE],
            Self::NumaFault => &[PROG_NUMA_FAULT_FENTRY, PROG_NUMA_FAULT_KPROBE],
        }
    }
}

/// What the scheduler programs need from this kernel, decided before loading.
pub struct SchedPlan {
    switch: Result<SwitchLayout, String>,
    wakeup: Result<SchedWakeupLayout, String>,
    migrate: Result<MigrateLayout, String>,
}

/// Where each source is hooked once attached (`sched:sched_switch`, `fentry:task_numa_fault`…).
pub type Hooks = BTreeMap<SchedProbe, &'static str>;

impl SchedPlan {
    #[must_use]
    pub fn read(tracefs: &TraceFs) -> Self {
        Self {
            switch: layout::switch(tracefs),
            wakeup: layout::wakeup(tracefs),
            migrate: layout::migrate(tracefs),
        }
    }

    /// Hands the record layouts to the programs.
    pub fn configure<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) {
        if let Ok(layout) = &self.switch {
            loader.override_global(GLOBAL_SWITCH_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.wakeup {
            loader.override_global(GLOBAL_SCHED_WAKEUP_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.migrate {
            loader.override_global(GLOBAL_MIGRATE_LAYOUT, layout, true);
        }
    }

    /// Attaches every source this kernel has; says for each whether it runs, and where.
    pub(super) fn attach(&self, kernel: &mut Kernel) -> (BTreeMap<SchedProbe, Attachment>, Hooks) {
        let mut states = BTreeMap::new();
        let mut hooks = Hooks::new();
        let tracepoints = [
            (SchedProbe::Switch, "sched_switch", ready(&self.switch)),
            (SchedProbe::Wakeup, "sched_wakeup", ready(&self.wakeup)),
            (
                SchedProbe::Migrate,
                "sched_migrate_task",
                ready(&self.migrate),
            ),
        ];
        for (probe, event, ready) in tracepoints {
            let attached =
                ready.and_then(|()| kernel.attach_tracepoint(probe.programs()[0], "sched", event));
            hooks.insert(probe, tracepoint_name(probe));
            states.insert(probe, state(probe, attached));
        }
        // fentry first: it needs no kprobe support and costs less per call. The kprobe is the
        // fallback on kernels without BPF trampolines.
        let numa = kernel
            .attach_fentry(PROG_NUMA_FAULT_FENTRY, NUMA_FAULT_FUNCTION)
            .map(|()| "fentry:task_numa_fault")
            .or_else(|fentry| {
                kernel
                    .attach_kprobe(PROG_NUMA_FAULT_KPROBE, NUMA_FAULT_FUNCTION)
                    .map(|()| "kprobe:task_numa_fault")
                    .map_err(|kprobe| format!("{fentry}; {kprobe}"))
            });
        hooks.insert(
            SchedProbe::NumaFault,
            *numa.as_ref().unwrap_or(&"task_numa_fault"),
        );
        let numa = numa.map(drop);
        states.insert(SchedProbe::NumaFault, state(SchedProbe::NumaFault, numa));
        (states, hooks)
    }
}

fn tracepoint_name(probe: SchedProbe) -> &'static str {
    match probe {
        SchedProbe::Switch => "sched:sched_switch",
        SchedProbe::Wakeup => "sched:sched_wakeup",
        SchedProbe::Migrate => "sched:sched_migrate_task",
        SchedProbe::NumaFault => "task_numa_fault",
    }
}

fn ready<T>(layout: &Result<T, String>) -> Result<(), String> {
    layout.as_ref().map(drop).map_err(Clone::clone)
}

fn state(probe: SchedProbe, attached: Result<(), String>) -> Attachment {
    match attached {
        Ok(()) => Attachment::Attached,
        Err(why) => {
            log::warn!("scheduling source {}: unavailable: {why}", probe.name());
            Attachment::Unavailable(why)
        }
    }
}
