//! Host and VM facts against fixture trees and against the live machine.

use super::*;
use crate::advice::testutil::{fixture, qemu};

#[test]
fn defaults_fixture() {
    let h = HostFacts::read(&fixture("defaults"));
    assert_eq!(h.thp.enabled.as_deref(), Some("madvise"));
    assert_eq!(h.thp.defrag.as_deref(), Some("madvise"));
    assert_eq!(h.ksm.run, Some(0));
    assert_eq!(h.ksm.merge_across_nodes, Some(1));
    assert_eq!(h.numa_balancing, Some(1));
    assert_eq!(h.kvm.halt_poll_ns, Some(200_000));
    assert_eq!(h.kvm.halt_poll_ns_grow, Some(2));
    assert_eq!(h.kvm.halt_poll_ns_shrink, Some(0));
    assert_eq!(h.kvm.nx_huge_pages.as_deref(), Some("N"));
    let intel = h.kvm.intel.as_ref().unwrap();
    assert_eq!(
        (
            intel.enable_apicv,
            intel.ple_gap,
            intel.enable_ipiv,
            intel.ept
        ),
        (Some(true), Some(128), Some(true), Some(true))
    );
    assert!(h.kvm.amd.is_none());
    assert_eq!(h.virtualization.cpu_flag, Some(HwVirt::Vmx));
    assert_eq!(h.virtualization.kvm_loaded, Some(true));
    assert_eq!(h.virtualization.kvm_device, Some(true));
    assert_eq!(h.online_cpus, Some(vec![0, 1, 2, 3]));
    assert_eq!(h.smt_active, Some(true));
    assert_eq!(h.physical_cores(), Some(2));
    assert_eq!(h.governor(3), Some("performance"));
    assert_eq!(h.node_count(), Some(1));
    let node = &h.nodes.as_ref().unwrap()[0];
    assert_eq!(node.cpus, Some(vec![0, 1, 2, 3]));
    assert_eq!(node.mem_total, Some(16_777_216 * 1024));
    let sizes: Vec<u64> = node.hugepages.iter().map(|p| p.size_bytes).collect();
    assert_eq!(sizes, [2 << 20, 1 << 30]);
    assert_eq!(h.meminfo.mem_total, Some(16_777_216 * 1024));
    assert_eq!(h.meminfo.swap_total, Some(2_097_152 * 1024));
    assert_eq!(h.meminfo.swap_free, Some(2_097_152 * 1024));
    assert_eq!(h.meminfo.hugepages_total, Some(0));
    assert_eq!(h.meminfo.hugepagesize, Some(2 << 20));
    assert_eq!(h.vmstat.pswpin, Some(10));
    assert_eq!(h.vmstat.pswpout, Some(20));
    assert_eq!(h.vmstat.numa_hint_faults, Some(1000));
    assert_eq!(h.vmstat.numa_hint_faults_local, Some(900));
}

#[test]
fn thp_never_ksm_on_fixture() {
    let h = HostFacts::read(&fixture("thp-never-ksm-on"));
    assert_eq!(h.thp.enabled.as_deref(), Some("never"));
    assert_eq!(h.thp.defrag.as_deref(), Some("always"));
    assert_eq!(
        (
            h.ksm.run,
            h.ksm.pages_shared,
            h.ksm.pages_sharing,
            h.ksm.pages_unshared
        ),
        (Some(1), Some(40), Some(100), Some(5000))
    );
    assert_eq!(h.kvm.halt_poll_ns, Some(0));
    assert_eq!(h.kvm.nx_huge_pages.as_deref(), Some("never"));
    assert!(h.kvm.intel.is_none());
    let amd = h.kvm.amd.as_ref().unwrap();
    assert_eq!(
        (amd.avic, amd.pause_filter_count, amd.npt),
        (Some(false), Some(3000), Some(true))
    );
    assert_eq!(h.virtualization.cpu_flag, Some(HwVirt::Svm));
    assert_eq!(h.smt_active, Some(false));
    assert_eq!(h.physical_cores(), Some(4));
    assert_eq!(h.node_count(), Some(2));
    assert_eq!(h.node_of_cpu(3), Some(1));
    assert_eq!(h.cores_among(Some(&[2, 3])), Some(2));
    let free: u64 = h.hugepage_pools().filter_map(|(_, p)| p.free).sum();
    assert_eq!(free, 768);
    assert_eq!(h.meminfo.swap_total, Some(0));
    assert_eq!(h.meminfo.hugepages_free, Some(768));
}

#[test]
fn garbage_is_unknown_not_a_panic() {
    let h = HostFacts::read(&fixture("garbage"));
    assert_eq!(h.thp, Thp::default());
    assert_eq!(h.ksm, Ksm::default());
    assert_eq!(h.numa_balancing, None);
    assert_eq!(h.kvm.halt_poll_ns, None);
    assert_eq!(h.kvm.nx_huge_pages, None);
    assert_eq!(h.kvm.intel.as_ref().unwrap().enable_apicv, None);
    // A CPU list running backwards and unparsable topology files: the topology is unknown.
    assert_eq!(h.online_cpus, None);
    assert_eq!(h.smt_active, None);
    assert_eq!(h.cpus, None);
    assert_eq!(h.physical_cores(), None);
    assert_eq!(h.nodes, None);
    assert_eq!(h.meminfo, MemInfo::default());
    assert_eq!(h.vmstat, VmStat::default());
}

#[test]
fn missing_roots_are_all_unknown() {
    let h = HostFacts::read(&Roots::under("/nonexistent/kvmtop"));
    assert_eq!(h, HostFacts::default());
}

#[test]
fn live_host_does_not_panic() {
    // Whatever this machine has: only consistency is checked.
    let h = HostFacts::read(&Roots::default());
    if let Some(total) = h.meminfo.mem_total {
        assert!(total > 0);
    }
    if let Some(cores) = h.physical_cores() {
        let cpus = h.cpus.as_ref().map_or(0, Vec::len);
        assert!(cores >= 1 && cores as usize <= cpus);
    }
    let _ = serde_json::to_string(&h).unwrap();

    // This test process stands in for a VMM: its own threads' affinities are readable.
    let pid = std::process::id();
    let vmm = qemu(pid, &["-smp", "1", "-m", "64"], &[pid]);
    let facts = VmFacts::collect(&vmm, &Roots::default());
    if let Some(cpus) = &facts.vcpu_threads[0].allowed_cpus {
        assert!(!cpus.is_empty());
    }

    // The rules take the live facts without panicking.
    let inputs = crate::advice::Inputs {
        host: h,
        vms: vec![crate::advice::VmInputs {
            facts,
            observations: crate::advice::VmObservations::default(),
        }],
        ..crate::advice::Inputs::default()
    };
    let eval = crate::advice::evaluate(&inputs, &crate::advice::Thresholds::default());
    assert!(
        eval.recommendations
            .iter()
            .all(|r| !r.evidence().is_empty())
    );
}

const HUGE_VM: &[&str] = &[
    "-name",
    "guest=db,debug-threads=on",
    "-machine",
    "q35,accel=kvm",
    "-cpu",
    "host",
    "-m",
    "2048",
    "-smp",
    "2",
    "-overcommit",
    "mem-lock=on",
    "-object",
    r#"{"qom-type":"memory-backend-file","id":"ram-node0","mem-path":"/dev/hugepages/libvirt/qemu/1-db","prealloc":true,"size":2147483648,"host-nodes":[0],"policy":"bind"}"#,
    "-device",
    "lsi53c895a,id=scsi0",
    "-drive",
    "file=/dev/vg/db,format=raw,if=none,id=drive-scsi0-0-0,cache=none,aio=native",
    "-device",
    "scsi-hd,bus=scsi0.0,drive=drive-scsi0-0-0,id=scsi0-0-0",
    "-netdev",
    "tap,id=hostnet0,vhost=on",
    "-device",
    "virtio-net-pci,netdev=hostnet0,id=net0,mac=52:54:00:00:00:01",
];

#[test]
fn vm_facts_from_the_command_line_and_proc() {
    let vmm = qemu(4242, HUGE_VM, &[4243, 4244]);
    let roots = fixture("thp-never-ksm-on");
    let facts = VmFacts::collect(&vmm, &roots);
    assert_eq!(facts.name, "db");
    assert!(facts.qemu);
    assert_eq!(facts.vcpus, Some(2));
    assert_eq!(facts.memory_bytes, Some(2 << 30));
    assert!(facts.memory.hugetlb && facts.memory.prealloc && facts.memory.locked);
    assert!(facts.memory.bind);
    assert_eq!(facts.memory.host_nodes, [0]);
    assert_eq!(facts.cpu_model.as_deref(), Some("host"));
    assert_eq!(facts.accelerators, ["kvm"]);
    assert_eq!(facts.disks.len(), 1);
    assert_eq!(facts.disks[0].controller.as_deref(), Some("lsi53c895a"));
    assert_eq!(facts.disks[0].label(0), "scsi0-0-0");
    assert_eq!(facts.nics[0].vhost, Some(true));
    assert_eq!(facts.vcpu_threads[0].allowed_cpus, Some(vec![0]));
    assert_eq!(facts.vcpu_threads[1].allowed_cpus, Some(vec![1]));
    assert_eq!(facts.vcpu_cpus(), Some(vec![0, 1]));
    assert_eq!(facts.vcpus_pinned(&[0, 1, 2, 3]), Some(true));
    assert!(facts.pinned_one_to_one());
    assert_eq!(facts.helper_threads.len(), 1);
    assert_eq!(facts.helper_threads[0].allowed_cpus, Some(vec![0, 1, 2, 3]));
    assert_eq!(facts.mems_allowed, Some(vec![0]));

    // Without /proc, affinities are unknown and hugetlbfs is judged by the path.
    let bare = VmFacts::from_vmm(&vmm);
    assert!(bare.memory.hugetlb);
    assert_eq!(bare.vcpu_cpus(), None);
    assert_eq!(bare.vcpus_pinned(&[0, 1]), None);
    assert!(!bare.pinned_one_to_one());

    // A file backend outside any hugetlbfs mount of the process is not huge, whatever the
    // path says.
    let args: Vec<&str> = HUGE_VM
        .iter()
        .map(|a| {
            if a.contains("memory-backend-file") {
                r#"{"qom-type":"memory-backend-file","id":"m","mem-path":"/var/hugepages-not-mounted/x","size":2147483648}"#
            } else {
                a
            }
        })
        .collect();
    let facts = VmFacts::collect(&qemu(4242, &args, &[4243, 4244]), &roots);
    assert!(!facts.memory.hugetlb);
    assert!(!facts.memory.bind);
}

#[test]
fn vm_facts_defaults_of_a_bare_command_line() {
    let vmm = qemu(7, &["-enable-kvm", "-hda", "/img.qcow2"], &[]);
    let facts = VmFacts::from_vmm(&vmm);
    assert_eq!(facts.vcpus, Some(1));
    assert_eq!(facts.memory_bytes, None);
    assert_eq!(facts.cpu_model, None);
    assert!(!facts.memory.hugetlb);
    assert!(facts.vcpu_threads.is_empty());
}
