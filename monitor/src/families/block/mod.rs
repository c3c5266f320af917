//! Block I/O per VM, per host device and per operation: requests, bytes, issue → completion and
//! queue-time histograms, requests in flight, and which device each of the VM's drives sits on
//! (with its cache and AIO modes).
//!
//! A request is attributed to its VM when it is created, in the submitting thread (see
//! `monitor_common::block`), with the device it is on; issue and completion find it by its
//! address, or by its device and start sector on classic tracepoints
//! (`monitor_common::block::RequestKey`). All the family's sources run as one kind of hook, so
//! that every event of a request names it alike.

mod counters;
pub mod devices;
pub mod expiry;
pub mod sources;
mod window;

pub use crate::host::block::{DevId, SysBlock};

pub use self::{
    counters::{BlockCounterKey, BlockCounters, BlockOp, BlockTotals, DriveDevices, OpTotals},
    sources::Submission,
};
use crate::{
    bpf::{
        Kernel,
        hooks::{Global, SourceSpec, Sources},
    },
    family::{Family, HostView, Pair, Vms},
    model::Snapshot,
};

/// The block family.
pub struct Block {
    counters: BlockCounters,
    sources: Sources,
}

impl Block {
    /// The block maps, e.g. for tests that drive the harness.
    pub fn counters_mut(&mut self) -> &mut BlockCounters {
        &mut self.counters
    }
}

impl Family for Block {
    const NAME: &'static str = "block";
    type Totals = BlockTotals;

    fn sources(host: &HostView) -> Vec<SourceSpec> {
        sources::table(host)
    }

    /// Requests are keyed by address on raw arguments and by start sector on classic records.
    const SOURCES_RUN_AS_ONE_KIND: bool = true;

    fn globals(host: &HostView) -> Vec<Global> {
        vec![Submission::on(&host.tracefs).global()]
    }

    fn start(kernel: &mut Kernel, sources: Sources, host: &HostView) -> anyhow::Result<Self> {
        Ok(Self {
            counters: BlockCounters::open(
                kernel,
                Submission::on(&host.tracefs),
                &host.proc_root,
                &host.sys_root,
            )?,
            sources,
        })
    }

    fn sources_attached(&self) -> &Sources {
        &self.sources
    }

    fn follow(&mut self, _vms: &Vms<'_>) -> Vec<String> {
        self.counters.age_if_due();
        Vec::new()
    }

    fn sample(&mut self, vms: &Vms<'_>) -> BlockTotals {
        self.counters.read_retaining(|pid| vms.keeps(pid), vms.vmms)
    }

    fn window(&self, pair: &Pair<'_, BlockTotals>, snapshot: &mut Snapshot) {
        window::fill(pair, &self.sources, snapshot);
    }
}
