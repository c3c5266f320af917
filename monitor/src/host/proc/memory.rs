//! Where a process's memory sits: bytes per NUMA node from `/proc/PID/numa_maps`, and how much
//! of it is backed by transparent huge pages or hugetlbfs from `/proc/PID/smaps_rollup`.
//!
//! Both files walk the process's page tables when read, which takes a while for a large guest:
//! callers read them rarely (see `crate::families::numa::memory`).

use std::{collections::BTreeMap, fs, path::Path, time::Instant};

/// One reading of a VMM process's memory placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlacement {
    /// Resident bytes per node id, every mapping of the process (guest RAM dominates).
    pub by_node: BTreeMap<u32, u64>,
    /// `Anonymous` of `smaps_rollup`: private memory, which is guest RAM unless it is file- or
    /// hugetlbfs-backed.
    pub anon_bytes: u64,
    /// `AnonHugePages`: the part of it mapped with transparent huge pages.
    pub thp_bytes: u64,
    /// `Shared_Hugetlb` + `Private_Hugetlb`: hugetlbfs-backed memory (not in `Anonymous`).
    pub hugetlb_bytes: u64,
    pub read_at: Instant,
}

impl MemoryPlacement {
    #[must_use]
    pub fn resident_bytes(&self) -> u64 {
        self.by_node
            .values()
            .fold(0, |sum, &bytes| sum.saturating_add(bytes))
    }
}

/// Sums `N<node>=<pages>` × `kernelpagesize_kB` over the lines of a `numa_maps` file. A line
/// whose bytes do not fit in a u64 is corrupt and skipped; the sums saturate.
#[must_use]
pub fn parse_numa_maps(text: &str) -> BTreeMap<u32, u64> {
    let mut by_node: BTreeMap<u32, u64> = BTreeMap::new();
    for line in text.lines() {
        for (node, bytes) in numa_maps_line(line).unwrap_or_default() {
            let total = by_node.entry(node).or_default();
            *total = total.saturating_add(bytes);
        }
    }
    by_node
}

/// The bytes per node of one `numa_maps` line, or `None` when they overflow.
fn numa_maps_line(line: &str) -> Option<Vec<(u32, u64)>> {
    let mut page_kib: u64 = 4;
    let mut pages: Vec<(u32, u64)> = Vec::new();
    for token in line.split_ascii_whitespace() {
        if let Some(kib) = token.strip_prefix("kernelpagesize_kB=") {
            page_kib = kib.parse().unwrap_or(page_kib);
        } else if let Some((node, n)) = token
            .strip_prefix('N')
            .and_then(|rest| rest.split_once('='))
            && let (Ok(node), Ok(n)) = (node.parse(), n.parse::<u64>())
        {
            pages.push((node, n));
        }
    }
    let page_bytes = page_kib.checked_mul(1024)?;
    pages
        .into_iter()
        .map(|(node, n)| Some((node, n.checked_mul(page_bytes)?)))
        .collect()
}

/// The fields of `smaps_rollup` kvmtop uses, in bytes: (anonymous, THP, hugetlbfs). A field
/// whose bytes do not fit in a u64 is corrupt and counts as absent (0).
#[must_use]
pub fn parse_smaps_rollup(text: &str) -> (u64, u64, u64) {
    let bytes = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                let kib = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
                kib.checked_mul(1024)
            })
            .unwrap_or(0)
    };
    (
        bytes("Anonymous"),
        bytes("AnonHugePages"),
        bytes("Shared_Hugetlb").saturating_add(bytes("Private_Hugetlb")),
    )
}

/// Reads one process's placement.
pub fn read(proc_root: &Path, pid: u32) -> Result<MemoryPlacement, String> {
    let dir = proc_root.join(pid.to_string());
    let read = |name: &str| {
        fs::read_to_string(dir.join(name)).map_err(|e| format!("reading {pid}/{name}: {e}"))
    };
    let by_node = parse_numa_maps(&read("numa_maps")?);
    let (anon_bytes, thp_bytes, hugetlb_bytes) = parse_smaps_rollup(&read("smaps_rollup")?);
    Ok(MemoryPlacement {
        by_node,
        anon_bytes,
        thp_bytes,
        hugetlb_bytes,
        read_at: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/numa")
            .join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn numa_maps_of_a_guest_split_over_two_nodes() {
        let by_node = parse_numa_maps(&fixture("dual-node-thp.numa_maps"));
        // 8 GiB of guest RAM, 6 GiB on node 0 and 2 GiB on node 1 (THP areas count 4 KiB pages),
        // plus small file and anonymous mappings on node 0.
        let gib = 1 << 30;
        assert_eq!(by_node.len(), 2);
        assert!(by_node[&0] >= 6 * gib && by_node[&0] < 6 * gib + (64 << 20));
        assert_eq!(by_node[&1], 2 * gib);
    }

    #[test]
    fn hugetlbfs_pages_count_at_their_size() {
        let by_node = parse_numa_maps(&fixture("hugetlb-1g.numa_maps"));
        // 16 × 1 GiB pages, 8 per node, and a few 4 KiB pages.
        assert_eq!(by_node[&1], 8 << 30);
        assert_eq!(by_node[&0], (8 << 30) + 12 * 4096);
        let (anon, thp, hugetlb) = parse_smaps_rollup(&fixture("hugetlb-1g.smaps_rollup"));
        assert_eq!(hugetlb, 16 << 30);
        assert_eq!(thp, 0);
        assert_eq!(anon, 48 << 20);
    }

    #[test]
    fn smaps_rollup_fields() {
        let (anon, thp, hugetlb) = parse_smaps_rollup(&fixture("dual-node-thp.smaps_rollup"));
        assert_eq!(anon, 8_421_376 * 1024);
        assert_eq!(thp, 7_340_032 * 1024);
        assert_eq!(hugetlb, 0);
        assert_eq!(parse_smaps_rollup("garbage\nAnonymous: x kB\n"), (0, 0, 0));
    }

    #[test]
    fn absurd_values_are_skipped_not_overflowed() {
        let max = u64::MAX;
        let numa_maps = format!(
            "7f00 default anon=1 N0=1 kernelpagesize_kB={max}\n\
             7f01 default anon=2 N0=1 N1={max} kernelpagesize_kB=4\n\
             7f02 default anon=3 N0={} kernelpagesize_kB=4\n\
             7f03 default anon=4 N0={} kernelpagesize_kB=4\n\
             7f04 default anon=5 N1=2 kernelpagesize_kB=4\n",
            max / 4096,
            max / 4096,
        );
        let by_node = parse_numa_maps(&numa_maps);
        // The first two lines overflow and are skipped whole; node 0 saturates.
        assert_eq!(by_node[&0], max);
        assert_eq!(by_node[&1], 8192);
        let placement = MemoryPlacement {
            by_node,
            anon_bytes: 0,
            thp_bytes: 0,
            hugetlb_bytes: 0,
            read_at: Instant::now(),
        };
        assert_eq!(placement.resident_bytes(), max);

        let rollup = format!(
            "Anonymous:      {max} kB\n\
             AnonHugePages:  {} kB\n\
             Shared_Hugetlb: {} kB\n\
             Private_Hugetlb: {} kB\n",
            max / 1024,
            max / 1024,
            max / 1024,
        );
        let (anon, thp, hugetlb) = parse_smaps_rollup(&rollup);
        assert_eq!((anon, thp, hugetlb), (0, max / 1024 * 1024, max));
    }

    #[test]
    fn this_process_can_be_read() {
        let placement = read(Path::new("/proc"), std::process::id()).unwrap();
        assert!(placement.resident_bytes() > 0, "{placement:?}");
    }
}
