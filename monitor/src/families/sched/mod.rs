//! Scheduling of VMM threads — run-queue wait (steal), on-CPU time, voluntary and involuntary
//! switches, migrations by topology class, the CPU each runs on, and which processes held the
//! CPU while they waited.
//!
//! Userspace decides which threads are watched (every thread of every VM discovery finds, and
//! the vhost kernel threads serving them) and tells the kernel through a bitmap; the scheduler
//! tracepoints fire for every task on the host, so each program tests it first.

pub mod contender_span;
pub mod contenders;
mod counters;
mod layout;
pub mod sources;
pub mod totals;
pub mod watch;
pub mod window;


pub use self::{
    contenders::{Contender, ContenderTotals},
    counters::{SchedCounters, SchedTotals},
    totals::{MigrationCounts, ThreadTotals},
    watch::WatchedThread,
};
use crate::{
    bpf::{
        Kernel,
        hooks::{SourceSpec, Sources},
    },
    family::{Family, HostView, Pair, Vms},
    host::topology::Topology,
    model::Snapshot,
};

/// The scheduling family.
pub struct Sched {
    counters: SchedCounters,
    sources: Sources,
    proc_root: std::path::PathBuf,
    topology: Option<Topology>,
    names: contenders::ProcessNames,
    /// Keeps exported times from stepping back (see [`totals::Monotonic`]).
    monotonic: totals::Monotonic,
}

impl Sched {
    /// The scheduler maps, e.g. for tests that watch synthetic threads.
    #[must_use]
    pub fn counters(&self) -> &SchedCounters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut SchedCounters {
        &mut self.counters
    }
}

impl Family for Sched {
    const NAME: &'static str = "sched";
    type Totals = SchedTotals;

    const DISCOVERY_SOURCES: &'static [&'static str] = &sources::LIFECYCLE;

    fn sources(host: &HostView) -> Vec<SourceSpec> {
        sources::table(host)
    }

    fn start(kernel: &mut Kernel, sources: Sources, host: &HostView) -> anyhow::Result<Self> {
        Ok(Self {
            counters: SchedCounters::open(kernel, &host.proc_root, host.contender_readings)?,
            sources,
            proc_root: host.proc_root.clone(),
            topology: host.topology.clone(),
            names: contenders::ProcessNames::default(),
            monotonic: totals::Monotonic::default(),
        })
    }

    fn sources_attached(&self) -> &Sources {
        &self.sources
    }

    /// Watches every thread of the VMs, and the vhost kernel threads serving them. A thread of a
    /// reused pid is a new thread: [`SchedCounters::watch`] compares VM identities.
    fn follow(&mut self, vms: &Vms<'_>) -> Vec<String> {
        let threads = watch::threads_of(vms.vmms, vms.vhost_workers);
        let proc_root = &self.proc_root;
        self.counters
            .watch(&threads, |thread| watch::is_runnable(proc_root, thread))
    }

    fn sample(&mut self, _vms: &Vms<'_>) -> SchedTotals {
        let mut totals = self.counters.read();
        self.monotonic.apply(&mut totals.threads);
        totals
    }

    fn window(&self, pair: &Pair<'_, SchedTotals>, snapshot: &mut Snapshot) {
        let context = window::Context {
            sources: &self.sources,
            topology: self.topology.as_ref(),
            proc_root: &self.proc_root,
            names: &self.names,
        };
        self.names.next_window();
        window::fill(pair, &context, snapshot);
    }
}
