//! M1–M7: memory and NUMA.

use crate::model::advice::{RuleFamily, RuleInfo, Source, StaticChange};

const RHEL7_VTOG_9_3: Source = Source {
    title: "RHEL 7 Virtualization Tuning and Optimization Guide",
    section: "§9.3 libvirt NUMA tuning",
};

pub const M1: RuleInfo = RuleInfo {
    id: "M1",
    family: RuleFamily::Memory,
    title: "NUMA hinting faults find memory on the wrong node",
    checks: "The share of NUMA hinting faults whose page sits on another node than the \
             faulting CPU's, per VM when known, else host-wide, once there are enough faults \
             per minute to judge. Where task_numa_fault cannot be hooked, a VM's share is the \
             one of its threads' recent faults in NUMA balancing's own statistics (procfs), \
             judged once the host has enough faults per minute.",
    diagnosis: "vCPUs and their memory sit on different nodes.",
    change: StaticChange {
        libvirt: Some(
            "<vcpupin> plus <numatune><memory mode='strict' nodeset='N'/></numatune> on the \
             same node",
        ),
        qemu: None,
        host: Some("verify with numastat -p PID"),
    },
    effect: "Local memory: gains of the 10 % class.",
    sources: &[RHEL7_VTOG_9_3],
};

pub const M2: RuleInfo = RuleInfo {
    id: "M2",
    family: RuleFamily::Memory,
    title: "Automatic NUMA balancing on a host whose VMs are all bound",
    checks: "kernel.numa_balancing = 1 while every VM has both pinned vCPUs and strictly \
             bound memory (memory backends with policy=bind, or a cpuset limiting its \
             memory nodes).",
    diagnosis: "The balancer keeps scanning and unmapping pages it can never move.",
    change: StaticChange {
        libvirt: None,
        qemu: None,
        host: Some("sysctl -w kernel.numa_balancing=0 (persist in /etc/sysctl.d)"),
    },
    effect: "Fewer hinting faults, EPT violations and TLB shootdowns.",
    sources: &[Source {
        title: "Linux kernel documentation",
        section: "admin-guide/sysctl/kernel.rst (numa_balancing)",
    }],
};

pub const M3: RuleInfo = RuleInfo {
    id: "M3",
    family: RuleFamily::Memory,
    title: "VM memory drifted off its home node",
    checks: "The share of the VM's resident memory (numa_maps) outside the node holding most \
             of it.",
    diagnosis: "Placement drifted or was split from the start.",
    change: StaticChange {
        libvirt: Some(
            "<numatune><memory mode='strict' nodeset='N'/><memnode cellid='0' mode='strict' \
             nodeset='N'/></numatune> (virsh numatune, or restart)",
        ),
        qemu: None,
        host: None,
    },
    effect: "Local memory.",
    sources: &[RHEL7_VTOG_9_3],
};

pub const M4: RuleInfo = RuleInfo {
    id: "M4",
    family: RuleFamily::Memory,
    title: "Guest RAM without huge pages, or THP stalling allocations",
    checks: "Transparent huge pages enabled=never; THP defrag=always; or a VM without hugetlbfs \
             whose AnonHugePages cover too little of its RAM.",
    diagnosis: "Without huge pages every guest access pays 4 KiB TLB entries and 2-D page walks; \
                with defrag=always allocations stall in direct compaction.",
    change: StaticChange {
        libvirt: Some(
            "for large or latency-critical VMs: <memoryBacking><hugepages><page size='1' \
             unit='G'/></hugepages></memoryBacking>",
        ),
        qemu: None,
        host: Some(
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (QEMU madvises guest \
             RAM); echo madvise > …/defrag (or defer+madvise)",
        ),
    },
    effect: "Fewer TLB misses and shorter page walks.",
    sources: &[
        Source {
            title: "Linux kernel documentation",
            section: "admin-guide/mm/transhuge.rst",
        },
        Source {
            title: "QEMU source",
            section: "system/physmem.c, ram_block_add (qemu_madvise MADV_HUGEPAGE)",
        },
        Source {
            title: "RHEL 6 Virtualization Administration Guide",
            section: "§8.2 Huge page support",
        },
    ],
};

pub const M5: RuleInfo = RuleInfo {
    id: "M5",
    family: RuleFamily::Memory,
    title: "KSM costs more than it saves",
    checks: "KSM running while guest RAM is well below host RAM, scanning pages that do not \
             merge (pages_unshared per pages_sharing), ksmd using CPU, or merging across NUMA \
             nodes on a multi-node host.",
    diagnosis: "Deduplication cost without need: copy-on-write faults, ksmd CPU, and remote \
                memory when pages merge across nodes.",
    change: StaticChange {
        libvirt: Some("<memoryBacking><nosharepages/></memoryBacking>"),
        qemu: None,
        host: Some(
            "echo 0 > /sys/kernel/mm/ksm/run and stop ksmtuned; if KSM is needed, \
             echo 0 > /sys/kernel/mm/ksm/merge_across_nodes (after unmerging with run=2)",
        ),
    },
    effect: "Better runtime performance, unless memory is oversubscribed.",
    sources: &[
        Source {
            title: "RHEL 7 Virtualization Tuning and Optimization Guide",
            section: "§9.4 Kernel same-page merging",
        },
        Source {
            title: "Linux kernel documentation",
            section: "admin-guide/mm/ksm.rst (pages_unshared to pages_sharing ratio)",
        },
    ],
};

pub const M6: RuleInfo = RuleInfo {
    id: "M6",
    family: RuleFamily::Memory,
    title: "Memory overcommit without a safety net, or guests being swapped",
    checks: "Total guest RAM plus the host's reserve against host RAM and swap; and pages \
             swapped in or out per second.",
    diagnosis: "Unsafe overcommit (the OOM killer will pick a QEMU), or guest memory is already \
                being swapped.",
    change: StaticChange {
        libvirt: Some("shrink or balloon guests (<currentMemory>, virsh setmem)"),
        qemu: None,
        host: Some(
            "add RAM; size swap at least to the deficit, as OOM insurance only \
             (hugetlbfs-backed and <locked/> memory cannot be swapped)",
        ),
    },
    effect: "Avoids OOM kills of VMs.",
    sources: &[
        Source {
            title: "RHEL 6 Virtualization Administration Guide",
            section: "ch. 6 Overcommitting with KVM",
        },
        Source {
            title: "RHEL 5 Virtualization Guide",
            section: "§33.4 Overcommitting resources",
        },
    ],
};

pub const M7: RuleInfo = RuleInfo {
    id: "M7",
    family: RuleFamily::Memory,
    title: "Huge page pools do not match the VMs",
    checks: "Whether the huge page pools hold enough pages for the VMs backed by hugetlbfs, \
             and how much RAM sits in free huge pages.",
    diagnosis: "Too few pages: VMs fail to start or fall back; too many free pages: RAM nobody \
                else can use.",
    change: StaticChange {
        libvirt: Some("<hugepages><page size='…' nodeset='N'/></hugepages> per guest node"),
        qemu: None,
        host: Some(
            "size /sys/devices/system/node/nodeN/hugepages/hugepages-SIZE/nr_hugepages per node",
        ),
    },
    effect: "Predictable backing and no stranded RAM.",
    sources: &[Source {
        title: "libvirt Domain XML format",
        section: "Memory Backing (page nodeset)",
    }],
};
