//! The signal families, each a folder implementing [`Family`], and the one list of them.
//!
//! [`Families`] holds one value of each family plus the kernel state several share (the
//! watched-VMM bitmap, the CPU places), and runs every step — loading, following the VMs,
//! sampling, windowing — over all of them in list order. Order matters only for windows: a
//! family may read what an earlier one filled in (numa reads the vCPU placement sched found).

pub mod by_pid;
pub mod places;
pub mod small_map;
pub mod vmms;

use anyhow::Context as _;
use monitor_common::histogram::LatencyHist;

use std::collections::HashMap;

use self::{
    places::CpuPlaces,
    vmms::{VmmChanges, VmmWatch},
};
use crate::{
    bpf::{
        Kernel,
        hooks::{Global, SourceSpec, Sources},
    },
    discovery::Vmm,
    family::{Family, HostView, Pair, VcpuSighting, VmSpan, Vms},
    model::Attachment,
    model::{Histogram, Snapshot},
};

/// Declares the families: their modules, [`Families`] and [`Totals`], and the loops over them.
macro_rules! families {
    ($($name:ident: $family:ty),+ $(,)?) => {
        $(pub mod $name;)+

        /// One value of each family.
        pub struct Families {
            $(pub $name: $family,)+
            vmm_watch: VmmWatch,
            vmm_changes: VmmChanges,
            places: CpuPlaces,
        }

        /// Every family's running totals at one instant.
        #[derive(Clone, Debug, Default)]
        pub struct Totals {
            $(pub $name: <$family as Family>::Totals,)+
        }

        impl Families {
            /// Loads the kernel programs with every family's load-time constants, attaches every
            /// source of every hook table, and starts each family.
            pub fn open(host: &HostView) -> anyhow::Result<(Kernel, Self)> {
                struct Tables {
                    $($name: Vec<SourceSpec>,)+
                }
                let tables = Tables {
                    $($name: <$family as Family>::sources(host),)+
                };
                let mut globals: Vec<Global> = Vec::new();
                $(
                    globals.extend(tables.$name.iter().flat_map(|s| s.globals().cloned()));
                    globals.extend(<$family as Family>::globals(host));
                )+
                let mut kernel = Kernel::load(&globals, &host.hook_kinds)?;
                let places = CpuPlaces::open(&mut kernel, host.topology.as_ref())?;
                let mut families = Self {
                    $($name: {
                        let (family, table) = (<$family as Family>::NAME, &tables.$name);
                        let sources = if <$family as Family>::SOURCES_RUN_AS_ONE_KIND {
                            kernel.attach_alike(family, table)
                        } else {
                            kernel.attach_all(family, table)
                        };
                        <$family as Family>::start(&mut kernel, sources, host).with_context(
                            || format!("starting the {} family", <$family as Family>::NAME),
                        )?
                    },)+
                    vmm_watch: VmmWatch::start(&mut kernel)?,
                    vmm_changes: VmmChanges::start(&mut kernel)?,
                    places,
                };
                let live = families.discovery_sources_live();
                if let Err(why) = &live {
                    log::info!("discovery reads every VMM on every scan: {why}");
                }
                families.vmm_changes.set_live(live);
                Ok((kernel, families))
            }

            /// `Ok` when every family's discovery sources are attached (and there are some),
            /// else why not.
            fn discovery_sources_live(&self) -> Result<(), String> {
                let mut any = false;
                $(
                    for name in <$family as Family>::DISCOVERY_SOURCES {
                        any = true;
                        match self.$name.sources_attached().get(name).map(|s| &s.attachment) {
                            Some(Attachment::Attached) => {}
                            Some(Attachment::Unavailable(why)) => {
                                return Err(format!(
                                    "{}/{name} unavailable: {why}",
                                    <$family as Family>::NAME
                                ));
                            }
                            None => {
                                return Err(format!(
                                    "{}/{name} not in the hook table",
                                    <$family as Family>::NAME
                                ));
                            }
                        }
                    }
                )+
                if any {
                    Ok(())
                } else {
                    Err("no family counts process lifecycle events".to_owned())
                }
            }

            /// The lifecycle counters of those of `pids` the programs watch (the others are
            /// counted for nobody until the next follow), for discovery; `None` when they do not
            /// count.
            pub fn vmm_changes(
                &mut self,
                pids: impl IntoIterator<Item = u32>,
            ) -> Option<HashMap<u32, u64>> {
                let watched = self.vmm_watch.watched();
                let pids: Vec<u32> = pids.into_iter().filter(|pid| watched.contains(pid)).collect();
                self.vmm_changes.read(pids)
            }

            /// The processes that exec'd since the last call, for discovery; `None` when some
            /// may be missing.
            pub fn process_execs(&mut self) -> Option<Vec<u32>> {
                self.vmm_changes.execs()
            }

            /// The watched-VMM bitmap, e.g. for tests that add synthetic processes.
            pub fn vmm_watch_mut(&mut self) -> &mut VmmWatch {
                &mut self.vmm_watch
            }

            /// The lifecycle counters, e.g. for tests that read a process's slot watched or not.
            pub fn vmm_changes_mut(&mut self) -> &mut VmmChanges {
                &mut self.vmm_changes
            }

            /// The CPU places, e.g. for tests that describe a fixture topology.
            pub fn places_mut(&mut self) -> &mut CpuPlaces {
                &mut self.places
            }

            /// Each family's name and sources.
            #[must_use]
            pub fn sources(&self) -> Vec<(&'static str, &Sources)> {
                vec![$((<$family as Family>::NAME, self.$name.sources_attached()),)+]
            }

            /// Keeps every family's kernel state in step with the VMs; returns what could not be
            /// done.
            pub fn follow(&mut self, vms: &Vms<'_>) -> Vec<String> {
                let mut problems = self.vmm_watch.follow(vms.vmms);
                $(problems.extend(self.$name.follow(vms));)+
                problems
            }

            /// Reads every family's running totals.
            pub fn sample(&mut self, vms: &Vms<'_>) -> Totals {
                Totals {
                    $($name: self.$name.sample(vms),)+
                }
            }

            /// The vCPU threads the totals reveal about `vmms`.
            #[must_use]
            pub fn vcpu_threads(totals: &Totals, vmms: &[Vmm]) -> Vec<VcpuSighting> {
                let mut seen = Vec::new();
                $(seen.extend(<$family as Family>::vcpu_threads(&totals.$name, vmms));)+
                seen
            }

            /// Processes the totals show running a vCPU that discovery does not know.
            #[must_use]
            pub fn unknown_vmms(totals: &Totals) -> Vec<u32> {
                let mut pids = Vec::new();
                $(pids.extend(<$family as Family>::unknown_vmms(&totals.$name));)+
                pids
            }

            /// Fills every family's part of the window `[before, now]`.
            pub fn window(
                &self,
                (before, now): (&Totals, &Totals),
                vms: &[VmSpan<'_>],
                seconds: f64,
                snapshot: &mut Snapshot,
            ) {
                $(self.$name.window(
                    &Pair { now: &now.$name, before: &before.$name, vms, seconds },
                    snapshot,
                );)+
            }
        }
    };
}

families! {
    exits: exits::Exits,
    sched: sched::Sched,
    numa: numa::Numa,
    tlb: tlb::Tlb,
    block: block::Block,
}

/// A kernel histogram as a domain value.
impl From<&LatencyHist> for Histogram {
    fn from(raw: &LatencyHist) -> Self {
        Self {
            count: raw.count,
            sum_ns: raw.sum_ns,
            max_ns: raw.max_ns,
            buckets: raw.buckets,
        }
    }
}
