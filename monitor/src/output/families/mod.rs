//! What each signal family shows outside the live view: its Prometheus metrics and its lines in
//! the text report, one [`Presenter`] per family with the same three functions.
//!
//! The live view is organised by screen rather than by family (see `crate::tui`).

use std::io::Write;

use crate::{
    model::{Snapshot, Vcpu, Vm},
    output::series::{Context, histograms, plain::Gathered},
};

/// A family's presentation.
pub trait Presenter {
    /// Registers the family's counters and gauges of `snapshot` at `context`'s level with
    /// `gathered`, and returns its histogram families, which are assembled directly (see
    /// `crate::output::metrics`).
    fn metrics(
        gathered: &mut Gathered,
        snapshot: &Snapshot,
        context: Context<'_>,
    ) -> anyhow::Result<Vec<histograms::Family>>;

    /// The family's lines about a VM in the text report.
    fn text_vm(_out: &mut dyn Write, _vm: &Vm) -> std::io::Result<()> {
        Ok(())
    }

    /// The family's lines about one of the VM's vCPUs, after the VM's.
    fn text_vcpu(_out: &mut dyn Write, _vcpu: &Vcpu) -> std::io::Result<()> {
        Ok(())
    }
}

/// Declares the presenters — a module each, named as the family — in the order their lines and
/// metric families appear.
macro_rules! presenters {
    ($($name:ident: $family:ident),+ $(,)?) => {
        $(mod $name;)+

        /// Every family's metrics; the histogram families in list order.
        pub fn metrics(
            gathered: &mut Gathered,
            snapshot: &Snapshot,
            context: Context<'_>,
        ) -> anyhow::Result<Vec<histograms::Family>> {
            let mut histograms = Vec::new();
            $(histograms.extend(<$name::$family as Presenter>::metrics(gathered, snapshot, context)?);)+
            Ok(histograms)
        }

        /// Each family's metric families apart, by family name in list order: the metrics
        /// reference (`docs/metrics.md`) says which family serves each metric.
        #[cfg(test)]
        pub fn metrics_by_family(
            snapshot: &Snapshot,
            context: Context<'_>,
        ) -> anyhow::Result<Vec<(&'static str, crate::output::series::exposition::Exposition)>> {
            let mut by_family = Vec::new();
            $({
                let mut gathered = Gathered::default();
                let histograms = <$name::$family as Presenter>::metrics(&mut gathered, snapshot, context)?;
                by_family.push((stringify!($name), crate::output::series::exposition::Exposition { plain: gathered.into_families(), histograms }));
            })+
            Ok(by_family)
        }

        /// Every family's lines about `vm` and its vCPUs.
        pub fn text(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
            $(<$name::$family as Presenter>::text_vm(out, vm)?;)+
            for vcpu in &vm.vcpus {
                $(<$name::$family as Presenter>::text_vcpu(out, vcpu)?;)+
            }
            Ok(())
        }
    };
}

presenters! {
    exits: Exits,
    sched: Sched,
    numa: Numa,
    tlb: Tlb,
    block: Block,
}
