//! The host topology as the kernel programs see it: one [`CpuPlace`] per CPU id, which
//! `monitor_common::places::classify_migration` compares when a watched thread migrates and the
//! NUMA programs read to name a faulting CPU's node. Written once, when the programs are loaded.
//!
//! Migrations are classified in the kernel rather than counted per (thread, from, to) and
//! classified here: the classes are a fixed five counters per thread, while the pairs grow with
//! the square of the CPU count on the large hosts where migrations matter most.

use std::collections::BTreeMap;

use aya::maps::{Array, MapData};
use monitor_common::places::{
    CPU_PLACES_MAP, CpuPlace, MAX_CPUS, MigrationClass as RawClass, PLACE_UNKNOWN,
};

use crate::{
    bpf::Kernel,
    host::topology::{CpuSet, MigrationClass, Topology},
};

/// The `CPU_PLACES` map.
pub struct CpuPlaces {
    map: Array<MapData, CpuPlace>,
}

impl CpuPlaces {
    /// Takes the map and describes the CPUs of `topology` in it (without a topology every CPU
    /// stays unknown). A CPU whose place cannot be written stays unknown: its migrations are
    /// still counted, as of unknown class, its faults under an unknown node.
    pub fn open(kernel: &mut Kernel, topology: Option<&Topology>) -> anyhow::Result<Self> {
        let mut places = Self {
            map: kernel.take_map(CPU_PLACES_MAP)?,
        };
        if let Some(topology) = topology
            && let Err(e) = places.write(topology)
        {
            log::warn!("describing the host CPUs to the kernel programs: {e:#}");
        }
        Ok(places)
    }

    /// Describes the CPUs of `topology`: every CPU that can be written is; the error names those
    /// that could not.
    pub fn write(&mut self, topology: &Topology) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        let mut first_error = None;
        for (cpu, place) in cpu_places(topology) {
            if let Err(e) = self.map.set(cpu, place, 0) {
                failed.push(cpu);
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(anyhow::Error::new(e).context(format!(
                "cannot write the place of {} CPU(s) (first: {}); their migrations are of \
                 unknown class",
                failed.len(),
                failed[0]
            ))),
        }
    }
}

/// `CPU_PLACES` entries for `topology`: every CPU it lists with an id below [`MAX_CPUS`].
///
/// Core ids number the distinct SMT sibling sets host-wide (`core_id` is only unique within a
/// package); LLC ids are [`Topology::llcs`] indexes; a fact sysfs does not give is
/// [`PLACE_UNKNOWN`], which classifies as unknown the way [`Topology::classify_migration`] does.
#[must_use]
pub fn cpu_places(topology: &Topology) -> Vec<(u32, CpuPlace)> {
    let mut cores: BTreeMap<&CpuSet, u32> = BTreeMap::new();
    for cpu in topology.cpus() {
        if !cpu.smt_siblings.is_empty() {
            let next = u32::try_from(cores.len()).unwrap_or(PLACE_UNKNOWN);
            cores.entry(&cpu.smt_siblings).or_insert(next);
        }
    }
    topology
        .cpus()
        .iter()
        .filter(|cpu| cpu.id < MAX_CPUS)
        .map(|cpu| {
            let place = CpuPlace {
                core: cores
                    .get(&cpu.smt_siblings)
                    .copied()
                    .unwrap_or(PLACE_UNKNOWN),
                llc: cpu
                    .llc
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(PLACE_UNKNOWN),
                node: cpu.node.unwrap_or(PLACE_UNKNOWN),
                known: 1,
            };
            (cpu.id, place)
        })
        .collect()
}

/// The kernel's class index → the topology's class.
#[must_use]
pub fn decode_class(index: usize) -> MigrationClass {
    match index {
        i if i == RawClass::SameCore as usize => MigrationClass::SameCore,
        i if i == RawClass::SameLlc as usize => MigrationClass::SameLlc,
        i if i == RawClass::CrossLlc as usize => MigrationClass::CrossLlc,
        i if i == RawClass::CrossNode as usize => MigrationClass::CrossNode,
        _ => MigrationClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use monitor_common::places::classify_migration;

    use super::*;

    fn fixture(name: &str) -> Topology {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/topology")
            .join(name);
        Topology::read(&root).unwrap()
    }

    /// What the kernel programs would count for a move `from` → `to`.
    fn kernel_class(places: &[(u32, CpuPlace)], from: u32, to: u32) -> MigrationClass {
        let place = |id: u32| {
            places
                .iter()
                .find(|(cpu, _)| *cpu == id)
                .map_or(CpuPlace::UNKNOWN, |(_, p)| *p)
        };
        decode_class(classify_migration(&place(from), &place(to)) as usize)
    }

    #[test]
    fn kernel_classification_agrees_with_the_topology_on_every_fixture() {
        for name in ["single-node", "dual-socket", "chiplet-snc"] {
            let topology = fixture(name);
            let places = cpu_places(&topology);
            let ids: Vec<u32> = topology.cpus().iter().map(|c| c.id).collect();
            for &from in &ids {
                for &to in ids.iter().filter(|&&to| to != from) {
                    assert_eq!(
                        kernel_class(&places, from, to),
                        topology.classify_migration(from, to),
                        "{name}: {from} → {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn named_moves_on_fixture_hosts() {
        let dual = cpu_places(&fixture("dual-socket"));
        // 0 and 8 are SMT siblings; 0-3 share socket 0's L3; 4 is on the other socket.
        assert_eq!(kernel_class(&dual, 0, 8), MigrationClass::SameCore);
        assert_eq!(kernel_class(&dual, 0, 1), MigrationClass::SameLlc);
        assert_eq!(kernel_class(&dual, 0, 4), MigrationClass::CrossNode);
        assert_eq!(kernel_class(&dual, 12, 1), MigrationClass::CrossNode);
        // CPU 15 is offline: its node is known from its link, its cache is not.
        assert_eq!(kernel_class(&dual, 7, 15), MigrationClass::Unknown);
        assert_eq!(kernel_class(&dual, 0, 15), MigrationClass::CrossNode);
        // A CPU the topology does not have.
        assert_eq!(kernel_class(&dual, 0, 99), MigrationClass::Unknown);

        let chiplet = cpu_places(&fixture("chiplet-snc"));
        // Four 4-core CCXs; nodes 0-7 and 8-15.
        assert_eq!(kernel_class(&chiplet, 0, 3), MigrationClass::SameLlc);
        assert_eq!(kernel_class(&chiplet, 0, 4), MigrationClass::CrossLlc);
        assert_eq!(kernel_class(&chiplet, 0, 8), MigrationClass::CrossNode);

        let single = cpu_places(&fixture("single-node"));
        assert_eq!(kernel_class(&single, 0, 1), MigrationClass::SameLlc);
    }
}
