//! Each VM's memory placement, read again once it is [`REFRESH_PERIOD`] old: placement changes
//! slowly, and reading it walks the guest's page tables (see [`crate::host::proc::memory`]).
//!
//! A VM is read as soon as it is found; after that the readings that come due are spread over
//! the period, so VMs found together (kvmtop's start, a host booting its guests) are not all
//! read again in the same window every period, which would make that window's sampling slow.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

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
    /// When the last pass ran: a pass re-reads its share of the VMs for the time since.
    last_pass: Option<Instant>,
}

impl MemoryReader {
    /// Reads the placement of each VM not read yet, and of the oldest of those whose reading is
    /// older than [`REFRESH_PERIOD`] — as many as keep every VM within about the period over
    /// passes at this pace, at least one; forgets the VMs that are gone and returns what could
    /// not be read.
    pub fn refresh(&mut self, proc_root: &Path, vmms: &[Vmm]) -> Vec<String> {
        self.cache.retain(|id, _| vmms.iter().any(|v| v.id == *id));
        let now = Instant::now();
        let since_last = self
            .last_pass
            .replace(now)
            .map_or(REFRESH_PERIOD, |at| now.duration_since(at).min(REFRESH_PERIOD));
        let mut due: Vec<(Option<Instant>, &Vmm)> = vmms
            .iter()
            .map(|vmm| (self.cache.get(&vmm.id).map(|p| p.read_at), vmm))
            .filter(|(at, _)| at.is_none_or(|at| now.duration_since(at) >= REFRESH_PERIOD))
            .collect();
        // Never read first, then the oldest readings.
        due.sort_by_key(|(at, vmm)| (*at, vmm.id.pid));
        let unread = due.iter().filter(|(at, _)| at.is_none()).count();
        let share = (vmms.len() as u128 * since_last.as_millis())
            .div_ceil(REFRESH_PERIOD.as_millis())
            .max(1);
        let budget = unread.saturating_add(usize::try_from(share).unwrap_or(usize::MAX));
        let mut problems = Vec::new();
        for (_, vmm) in due.into_iter().take(budget) {
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::advice::testutil::qemu;

    /// A `/proc` with `count` VMs whose placement files are the two-node fixture's.
    fn host(count: u32) -> (tempfile::TempDir, Vec<Vmm>) {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/numa");
        let vmms = (0..count)
            .map(|i| {
                let pid = 1000 + i;
                let process = dir.path().join(pid.to_string());
                std::fs::create_dir_all(&process).unwrap();
                for file in ["numa_maps", "smaps_rollup"] {
                    std::fs::copy(
                        fixtures.join(format!("dual-node-thp.{file}")),
                        process.join(file),
                    )
                    .unwrap();
                }
                qemu(pid, &["-m", "1024"], &[pid + 1])
            })
            .collect();
        (dir, vmms)
    }

    #[test]
    fn readings_that_come_due_together_are_spread_over_the_period() {
        let (proc_root, all) = host(61);
        let (vmms, newcomer) = all.split_at(60);
        let mut reader = MemoryReader::default();
        assert!(reader.refresh(proc_root.path(), vmms).is_empty());
        assert_eq!(reader.cache.len(), 60, "every VM read when found");
        // A period later, every reading is due at once; the last pass was a second ago.
        let ago = |d: Duration| Instant::now().checked_sub(d).expect("a machine up for a minute");
        let long_ago = ago(REFRESH_PERIOD + Duration::from_secs(1));
        for placement in reader.cache.values_mut() {
            placement.read_at = long_ago;
        }
        reader.last_pass = Some(ago(Duration::from_secs(1)));
        reader.refresh(proc_root.path(), vmms);
        let read_again = |reader: &MemoryReader| {
            reader
                .cache
                .values()
                .filter(|p| p.read_at > long_ago)
                .count()
        };
        // 60 VMs over 30 s, a pass a second: two a pass (three when the second rounds up).
        let first = read_again(&reader);
        assert!((2..=3).contains(&first), "{first} read again");
        // A VM found now is read now, beside the pass's share of the due ones.
        reader.last_pass = Some(ago(Duration::from_secs(1)));
        reader.refresh(proc_root.path(), &all);
        assert!(reader.cache.contains_key(&newcomer[0].id));
        let second = read_again(&reader) - first - 1;
        assert!((2..=3).contains(&second), "{second} read again");
    }
}
