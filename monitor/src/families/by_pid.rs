//! Each VM's entries of a map keyed by process, found without a pass over every VM's entries.

use foldhash::{HashMap, HashMapExt};

/// The entries of a map whose keys (or values) name a VMM process, grouped by that process
/// once a window, so that each VM's figures take only its own entries. Filtering the whole map
/// for every VM made a window's work grow with the square of the VMs: every VM's entries
/// visited once for each VM.
pub struct ByPid<'a, K, V> {
    groups: HashMap<u32, Vec<(&'a K, &'a V)>>,
}

impl<'a, K, V> ByPid<'a, K, V> {
    /// Groups `entries` by the process `pid` names for each.
    pub fn new(
        entries: impl IntoIterator<Item = (&'a K, &'a V)>,
        pid: impl Fn(&K, &V) -> u32,
    ) -> Self {
        let mut groups: HashMap<u32, Vec<(&'a K, &'a V)>> = HashMap::new();
        for (key, value) in entries {
            groups
                .entry(pid(key, value))
                .or_default()
                .push((key, value));
        }
        Self { groups }
    }

    /// The entries of process `pid`, in no particular order (none for a process without any).
    #[must_use]
    pub fn of(&self, pid: u32) -> &[(&'a K, &'a V)] {
        self.groups.get(&pid).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_gets_its_own_entries_and_only_those() {
        let map: HashMap<(u32, u8), u64> =
            HashMap::from_iter([((1, 0), 10), ((2, 0), 20), ((1, 1), 11)]);
        let by_pid = ByPid::new(&map, |key, _| key.0);
        let mut one: Vec<u64> = by_pid.of(1).iter().map(|(_, v)| **v).collect();
        one.sort_unstable();
        assert_eq!(one, [10, 11]);
        assert_eq!(by_pid.of(2).len(), 1);
        assert!(by_pid.of(3).is_empty());
    }
}
