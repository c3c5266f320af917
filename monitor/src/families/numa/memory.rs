//! Each VM's memory placement, read again once it is [`REFRESH_PERIOD`] old: placement changes
//! slowly, and reading it walks the guest's page tables (see [`crate::host::proc::memory`]).

use std::{collections::HashMap, path::Path, time::Duration};

pub use crate::host::proc::memory::MemoryPlacement;
use crate::{
    discovery::{Vmm, VmmId},
    host::proc::memory::read,
};

pub const REFRESH_PERIOD: Duration = Duration::from_secs(30);

/// The latest placement of every VM, read again once it is [`REFRESH_PERIOD`] old.
#[derive(Debug, Default)]
pub struct MemoryReader {
    cache: HashMap<VmmId, MemoryPlacement>,
}

impl MemoryReader {
    /// Reads the placement of each VM whose reading is older than [`REFRESH_PERIOD`], forgets
    /// the VMs that are gone, and returns what could not be read.
    pub fn refresh(&mut self, proc_root: &Path, vmms: &[Vmm]) -> Vec<String> {
        self.cache.retain(|id, _| vmms.iter().any(|v| v.id == *id));
        let mut problems = Vec::new();
        for vmm in vmms {
            let fresh = self
                .cache
                .get(&vmm.id)
                .is_some_and(|p| p.read_at.elapsed() < REFRESH_PERIOD);
            if fresh {
                continue;
            }
            match read(proc_root, vmm.id.pid) {
                Ok(placement) => {
                    self.cache.insert(vmm.id, placement);
                }
                // A VM exiting between discovery and here is not a problem.
                Err(_) if !proc_root.join(vmm.id.pid.to_string()).exists() => {}
                Err(e) => problems.push(format!("memory placement of VM {}: {e}", vmm.name)),
            }
        }
        problems
    }

    /// The latest placement of each VM, by pid.
    #[must_use]
    pub fn placements(&self) -> HashMap<u32, MemoryPlacement> {
        self.cache
            .iter()
            .map(|(id, placement)| (id.pid, placement.clone()))
            .collect()
    }
}

