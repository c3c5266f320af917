use std::{
    fs,
    path::{Path, PathBuf},
};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/topology")
        .join(name)
}

fn read_fixture(name: &str) -> Topology {
    Topology::read(&fixture(name)).unwrap()
}

fn set(ids: &[u32]) -> CpuSet {
    ids.iter().copied().collect()
}

/// A writable copy of a fixture, to break in one place.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    crate::testing::copy_tree(&fixture(name), &root);
    (dir, root)
}

fn write(root: &Path, rel: &str, text: &str) {
    fs::write(root.join(rel), text).unwrap();
}

/// Reads `root`, expecting an error about the file `rel`.
fn error_about(root: &Path, rel: &str) -> TopologyError {
    let err = Topology::read(root).unwrap_err();
    assert_eq!(err.path(), root.join(rel), "{err}");
    assert!(
        err.to_string().contains(rel),
        "message names the file: {err}"
    );
    err
}

#[test]
fn single_node_fixture() {
    let t = read_fixture("single-node");
    assert_eq!(t.cpus().len(), 2);
    assert_eq!(t.online(), &set(&[0, 1]));
    assert!(t.isolated().is_empty());
    assert_eq!(t.cores(), 2);
    assert_eq!(t.packages(), 1);
    assert!(!t.smt_active());
    assert_eq!(t.llcs().len(), 1);
    let llc = &t.llcs()[0];
    assert_eq!((llc.level, llc.size_kib), (3, Some(491_520)));
    assert_eq!(llc.cpus, set(&[0, 1]));
    assert_eq!(t.nodes().len(), 1);
    let node = &t.nodes()[0];
    assert_eq!(node.cpus, set(&[0, 1]));
    assert_eq!(node.mem_total_kib, Some(11_757_344));
    assert_eq!(t.distance(0, 0), Some(10));
    let sizes: Vec<u64> = node.hugepages.iter().map(|h| h.page_size_kib).collect();
    assert_eq!(sizes, [2048, 1_048_576]);
    assert!(node.hugepages.iter().all(|h| h.total == 0 && h.free == 0));

    assert_eq!(t.classify_migration(0, 0), MigrationClass::SameCpu);
    assert_eq!(t.classify_migration(0, 1), MigrationClass::SameLlc);
    assert_eq!(t.classify_migration(0, 2), MigrationClass::Unknown);
    assert_eq!(t.classify_migration(7, 7), MigrationClass::Unknown);
}

#[test]
fn dual_socket_fixture() {
    let t = read_fixture("dual-socket");
    assert_eq!(t.cpus().len(), 16);
    assert_eq!(t.online().len(), 15);
    assert_eq!(t.isolated(), &set(&[3]));
    assert!(t.cpu(3).unwrap().isolated);
    assert!(!t.cpu(4).unwrap().isolated);
    assert_eq!(t.packages(), 2);
    assert_eq!(t.cores(), 8);
    assert!(t.smt_active());
    assert_eq!(t.cpu(0).unwrap().smt_siblings, set(&[0, 8]));
    assert_eq!(t.cpu(12).unwrap().core_id, Some(0));
    assert_eq!(t.cpu(12).unwrap().package_id, Some(1));
    // The offline CPU's sibling runs alone.
    assert_eq!(t.cpu(7).unwrap().smt_siblings, set(&[7]));

    let llcs: Vec<&CpuSet> = t.llcs().iter().map(|l| &l.cpus).collect();
    assert_eq!(
        llcs,
        [
            &set(&[0, 1, 2, 3, 8, 9, 10, 11]),
            &set(&[4, 5, 6, 7, 12, 13, 14])
        ]
    );
    assert_eq!(t.llc_of(9).unwrap().id, 0);
    assert_eq!(t.llc_of(13).unwrap().size_kib, Some(16_896));

    assert_eq!(t.nodes().len(), 2);
    assert_eq!(t.node_of(8), Some(0));
    assert_eq!(t.node_of(12), Some(1));
    assert_eq!(t.distance(0, 1), Some(21));
    assert_eq!(t.distance(1, 1), Some(10));
    assert_eq!(t.distance(0, 2), None);
    assert_eq!(t.nodes()[0].mem_total_kib, Some(65_822_288));
    assert_eq!(t.nodes()[1].mem_total_kib, Some(66_036_428));
    let gig = |n: usize| {
        t.nodes()[n]
            .hugepages
            .iter()
            .find(|h| h.page_size_kib == 1_048_576)
            .copied()
    };
    assert_eq!(gig(0).map(|h| (h.total, h.free)), Some((4, 2)));
    assert_eq!(gig(1).map(|h| (h.total, h.free)), Some((4, 4)));

    assert_eq!(t.classify_migration(0, 8), MigrationClass::SameCore);
    assert_eq!(t.classify_migration(8, 0), MigrationClass::SameCore);
    assert_eq!(t.classify_migration(0, 1), MigrationClass::SameLlc);
    assert_eq!(t.classify_migration(0, 9), MigrationClass::SameLlc);
    assert_eq!(t.classify_migration(0, 4), MigrationClass::CrossNode);
    assert_eq!(t.classify_migration(11, 12), MigrationClass::CrossNode);
}

#[test]
fn offline_cpu_without_topology_dir_is_placed_by_its_node_link() {
    let t = read_fixture("dual-socket");
    let cpu = t.cpu(15).unwrap();
    assert!(!cpu.online);
    assert!(cpu.smt_siblings.is_empty());
    assert_eq!((cpu.core_id, cpu.package_id, cpu.llc), (None, None, None));
    assert_eq!(cpu.node, Some(1));
    assert!(!t.nodes()[1].cpus.contains(&15));
    // Another node is known to be remote; within its own node the cache is unknown.
    assert_eq!(t.classify_migration(0, 15), MigrationClass::CrossNode);
    assert_eq!(t.classify_migration(7, 15), MigrationClass::Unknown);
}

#[test]
fn offline_cpu_without_node_link_has_no_node() {
    let (_dir, root) = scratch("dual-socket");
    fs::remove_file(root.join("devices/system/cpu/cpu15/node1")).unwrap();
    let t = Topology::read(&root).unwrap();
    assert_eq!(t.node_of(15), None);
    assert_eq!(t.classify_migration(0, 15), MigrationClass::Unknown);
}

#[test]
fn chiplet_fixture() {
    let t = read_fixture("chiplet-snc");
    assert_eq!(t.cpus().len(), 16);
    assert_eq!(t.online().len(), 16);
    assert_eq!(t.packages(), 1);
    assert_eq!(t.cores(), 16);
    assert!(!t.smt_active());
    assert_eq!(t.llcs().len(), 4);
    for (i, llc) in t.llcs().iter().enumerate() {
        let first = u32::try_from(i).unwrap() * 4;
        assert_eq!(llc.cpus, (first..first + 4).collect::<CpuSet>());
        assert_eq!((llc.level, llc.size_kib), (3, Some(16_384)));
    }
    assert_eq!(t.nodes().len(), 2);
    assert_eq!(t.nodes()[0].cpus, (0..8).collect::<CpuSet>());
    assert_eq!(t.distance(0, 1), Some(12));
    assert_eq!(t.distance(1, 0), Some(12));
    assert_eq!(t.node_of(9), Some(1));
    assert_eq!(t.llc_of(5).unwrap().cpus, set(&[4, 5, 6, 7]));
    let twomeg = t.nodes()[1].hugepages[0];
    assert_eq!(
        (twomeg.page_size_kib, twomeg.total, twomeg.free),
        (2048, 1024, 1024)
    );

    assert_eq!(t.classify_migration(0, 1), MigrationClass::SameLlc);
    assert_eq!(t.classify_migration(0, 4), MigrationClass::CrossLlc);
    assert_eq!(t.classify_migration(3, 4), MigrationClass::CrossLlc);
    assert_eq!(t.classify_migration(0, 8), MigrationClass::CrossNode);
    assert_eq!(t.classify_migration(15, 7), MigrationClass::CrossNode);
    assert_eq!(t.classify_migration(0, 99), MigrationClass::Unknown);
}

#[test]
fn node_is_checked_before_llc() {
    // Sub-NUMA clustering: one L3 spans both nodes.
    let (_dir, root) = scratch("chiplet-snc");
    for cpu in 0..16 {
        write(
            &root,
            &format!("devices/system/cpu/cpu{cpu}/cache/index3/shared_cpu_list"),
            "0-15\n",
        );
    }
    let t = Topology::read(&root).unwrap();
    assert_eq!(t.llcs().len(), 1);
    assert_eq!(t.classify_migration(0, 4), MigrationClass::SameLlc);
    assert_eq!(t.classify_migration(0, 8), MigrationClass::CrossNode);
}

#[test]
fn live_sysfs_parses() {
    let root = Path::new(DEFAULT_SYS_ROOT);
    if !root.join("devices/system/cpu").is_dir() {
        eprintln!("no sysfs here; skipping");
        return;
    }
    let t = Topology::read(root).unwrap();
    assert!(!t.online().is_empty());
    assert!(!t.nodes().is_empty());
    assert!(t.cores() >= 1);
    for &id in t.online() {
        let cpu = t.cpu(id).unwrap();
        assert!(cpu.online);
        assert!(cpu.smt_siblings.contains(&id));
        assert!(cpu.node.is_some(), "CPU {id} has a node");
        assert_eq!(t.classify_migration(id, id), MigrationClass::SameCpu);
    }
    serde_json::to_string(&t).unwrap();
}

#[test]
fn serialises_for_snapshots() {
    let t = read_fixture("dual-socket");
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["isolated"], serde_json::json!([3]));
    assert_eq!(json["cpus"][0]["smt_siblings"], serde_json::json!([0, 8]));
    assert_eq!(json["cpus"][15]["llc"], serde_json::Value::Null);
    assert_eq!(json["nodes"][0]["distances"]["1"], 21);
    assert_eq!(
        serde_json::to_value(MigrationClass::CrossLlc).unwrap(),
        "cross_llc"
    );
}

#[test]
fn no_node_dir_is_one_node() {
    let (_dir, root) = scratch("dual-socket");
    fs::remove_dir_all(root.join("devices/system/node")).unwrap();
    let t = Topology::read(&root).unwrap();
    assert_eq!(t.nodes().len(), 1);
    assert_eq!(t.nodes()[0].id, 0);
    assert_eq!(t.nodes()[0].cpus, (0..16).collect::<CpuSet>());
    assert!(t.nodes()[0].distances.is_empty());
    assert_eq!(t.node_of(15), Some(0));
    assert_eq!(t.classify_migration(0, 4), MigrationClass::CrossLlc);
}

#[test]
fn missing_online_list_is_an_error() {
    let (_dir, root) = scratch("single-node");
    fs::remove_file(root.join("devices/system/cpu/online")).unwrap();
    let err = error_about(&root, "devices/system/cpu/online");
    assert!(matches!(err, TopologyError::Missing { .. }));
}

#[test]
fn missing_sysfs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = error_about(dir.path(), "devices/system/cpu/online");
    assert!(matches!(err, TopologyError::Missing { .. }));
}

#[test]
fn corrupt_lists_are_errors_naming_the_file() {
    for rel in [
        "devices/system/cpu/online",
        "devices/system/cpu/isolated",
        "devices/system/node/node1/cpulist",
        "devices/system/cpu/cpu5/topology/thread_siblings_list",
        "devices/system/cpu/cpu5/cache/index3/shared_cpu_list",
    ] {
        let (_dir, root) = scratch("dual-socket");
        write(&root, rel, "0-3,x\n");
        let err = error_about(&root, rel);
        assert!(
            matches!(err, TopologyError::Malformed { .. }),
            "{rel}: {err}"
        );
    }
}

#[test]
fn corrupt_numbers_are_errors_naming_the_file() {
    for (rel, text) in [
        ("devices/system/cpu/cpu2/topology/core_id", "two\n"),
        ("devices/system/cpu/cpu2/cache/index3/level", "\n"),
        ("devices/system/cpu/cpu2/cache/index3/size", "16896\n"),
        ("devices/system/node/node0/distance", "10 x\n"),
        ("devices/system/node/node0/distance", "10\n"),
        (
            "devices/system/node/node1/meminfo",
            "Node 1 MemTotal:  lots kB\n",
        ),
        (
            "devices/system/node/node1/meminfo",
            "Node 1 MemTotal:  1024 MB\n",
        ),
        (
            "devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages",
            "-1\n",
        ),
    ] {
        let (_dir, root) = scratch("dual-socket");
        write(&root, rel, text);
        let err = error_about(&root, rel);
        assert!(
            matches!(err, TopologyError::Malformed { .. }),
            "{rel}: {err}"
        );
    }
}

#[test]
fn non_utf8_file_is_an_error() {
    let (_dir, root) = scratch("single-node");
    let rel = "devices/system/node/node0/cpulist";
    fs::write(root.join(rel), b"0-\xff\n").unwrap();
    let err = error_about(&root, rel);
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn online_cpu_without_topology_is_an_error() {
    let (_dir, root) = scratch("dual-socket");
    fs::remove_dir_all(root.join("devices/system/cpu/cpu6/topology")).unwrap();
    let err = error_about(
        &root,
        "devices/system/cpu/cpu6/topology/thread_siblings_list",
    );
    assert!(matches!(err, TopologyError::Missing { .. }));
}

#[test]
fn core_cpus_list_stands_in_for_thread_siblings_list() {
    let (_dir, root) = scratch("dual-socket");
    let topo = root.join("devices/system/cpu/cpu1/topology");
    fs::remove_file(topo.join("thread_siblings_list")).unwrap();
    fs::write(topo.join("core_cpus_list"), "1,9\n").unwrap();
    let t = Topology::read(&root).unwrap();
    assert_eq!(t.classify_migration(1, 9), MigrationClass::SameCore);
}

#[test]
fn lists_that_omit_their_own_cpu_are_errors() {
    for rel in [
        "devices/system/cpu/cpu2/topology/thread_siblings_list",
        "devices/system/cpu/cpu2/cache/index3/shared_cpu_list",
    ] {
        let (_dir, root) = scratch("dual-socket");
        write(&root, rel, "4-5\n");
        let err = error_about(&root, rel);
        assert!(err.to_string().contains("CPU 2"), "{err}");
    }
}

#[test]
fn optional_files_degrade() {
    let (_dir, root) = scratch("dual-socket");
    let cpu = root.join("devices/system/cpu");
    let node0 = root.join("devices/system/node/node0");
    fs::remove_file(cpu.join("isolated")).unwrap();
    fs::remove_dir_all(cpu.join("cpu2/cache")).unwrap();
    fs::write(cpu.join("cpu3/topology/physical_package_id"), "-1\n").unwrap();
    fs::remove_file(cpu.join("cpu3/topology/core_id")).unwrap();
    fs::remove_file(node0.join("meminfo")).unwrap();
    fs::remove_file(node0.join("distance")).unwrap();
    fs::remove_dir_all(node0.join("hugepages")).unwrap();
    fs::write(
        root.join("devices/system/node/node1/meminfo"),
        "Node 1 MemFree: 1 kB\n",
    )
    .unwrap();

    let t = Topology::read(&root).unwrap();
    assert!(t.isolated().is_empty());
    assert_eq!(t.cpu(2).unwrap().llc, None);
    assert_eq!(t.classify_migration(1, 2), MigrationClass::Unknown);
    assert_eq!(t.classify_migration(2, 12), MigrationClass::CrossNode);
    assert_eq!(t.cpu(3).unwrap().package_id, None);
    assert_eq!(t.cpu(3).unwrap().core_id, None);
    assert_eq!(t.nodes()[0].mem_total_kib, None);
    assert!(t.nodes()[0].distances.is_empty());
    assert!(t.nodes()[0].hugepages.is_empty());
    assert_eq!(t.nodes()[1].mem_total_kib, None);
    assert_eq!(t.distance(1, 0), Some(21));
}

#[test]
fn l1_only_caches_pick_the_data_cache() {
    let (_dir, root) = scratch("single-node");
    for cpu in 0..2 {
        let cache = root.join(format!("devices/system/cpu/cpu{cpu}/cache"));
        fs::remove_dir_all(cache.join("index2")).unwrap();
        fs::remove_dir_all(cache.join("index3")).unwrap();
        // Make the instruction cache look shared so picking it would show.
        fs::write(cache.join("index1/shared_cpu_list"), "0-1\n").unwrap();
    }
    let t = Topology::read(&root).unwrap();
    assert_eq!(t.llcs().len(), 2);
    assert!(
        t.llcs()
            .iter()
            .all(|l| l.level == 1 && l.size_kib == Some(48))
    );
    assert_eq!(t.classify_migration(0, 1), MigrationClass::CrossLlc);
}
