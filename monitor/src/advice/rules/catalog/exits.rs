//! E1–E9: VM exits.

use crate::model::advice::{RuleFamily, RuleInfo, Source, StaticChange};

const CPUID_RST: Source = Source {
    title: "Linux kernel documentation",
    section: "virt/kvm/x86/cpuid.rst",
};
const LIBVIRT_HYPERV: Source = Source {
    title: "libvirt Domain XML format",
    section: "Hypervisor features",
};

pub const E1: RuleInfo = RuleInfo {
    id: "E1",
    family: RuleFamily::Exits,
    title: "Emulated port I/O",
    checks: "Port I/O exits (VMX IO_INSTRUCTION, SVM io) per second of the VM, and which ports \
             they hit when known.",
    diagnosis: "The guest drives emulated hardware through I/O ports: IDE (0x1f0, 0x170), \
                rtl8139, legacy virtio notification, the PIT (0x40), the RTC (0x70), or the \
                ACPI PM timer (0xb008 on i440fx, 0x608 on q35: the guest's clocksource is \
                acpi_pm).",
    change: StaticChange {
        libvirt: Some(
            "<disk><target bus='virtio'/></disk> (or virtio-scsi), <interface><model \
             type='virtio'/></interface>",
        ),
        qemu: Some("virtio-blk-pci / virtio-scsi-pci and virtio-net-pci (modern, not legacy)"),
        host: Some("in the guest: clocksource kvm-clock"),
    },
    effect: "Exits move to in-kernel fast paths or disappear.",
    sources: &[Source {
        title: "RHEL 7 Virtualization Tuning and Optimization Guide",
        section: "ch. 5 Networking and ch. 7 Block I/O",
    }],
};

pub const E2: RuleInfo = RuleInfo {
    id: "E2",
    family: RuleFamily::Exits,
    title: "MMIO emulated in userspace",
    checks: "MMIO exits to QEMU per second of each vCPU, and EPT misconfiguration exits not \
             completed as fast MMIO.",
    diagnosis: "MMIO handled by QEMU (e1000, VGA, xAPIC) or virtio with ioeventfd off: each \
                access is a round trip to userspace.",
    change: StaticChange {
        libvirt: Some("virtio devices with <driver ioeventfd='on'/> (the default) and vhost"),
        qemu: Some("avoid e1000/rtl8139; virtio-*-pci,ioeventfd=on"),
        host: None,
    },
    effect: "An in-kernel eventfd signal instead of a userspace round trip.",
    sources: &[Source {
        title: "Linux kernel source",
        section: "arch/x86/kvm/vmx/vmx.c, handle_ept_misconfig (KVM_FAST_MMIO_BUS)",
    }],
};

pub const E3: RuleInfo = RuleInfo {
    id: "E3",
    family: RuleFamily::Exits,
    title: "Guest memory keeps being faulted in",
    checks: "EPT violations (SVM nested page faults) per second of each vCPU, once the VM has \
             run past its warm-up.",
    diagnosis: "Guest RAM is being (re)faulted: swap-in, KSM copy-on-write, THP splits, NUMA \
                balancing unmapping pages, dirty logging, or NX huge page splits.",
    change: StaticChange {
        libvirt: Some(
            "<memoryBacking><hugepages><page size='1' unit='G'/></hugepages>\
             <allocation mode='immediate'/><nosharepages/></memoryBacking>",
        ),
        qemu: None,
        host: Some(
            "sysctl kernel.numa_balancing=0 when VMs are pinned; for trusted guests on \
             affected CPUs, consider kvm.nx_huge_pages=off",
        ),
    },
    effect: "Fewer faults and TLB misses.",
    sources: &[
        Source {
            title: "RHEL 6 Virtualization Administration Guide",
            section: "§8.2 Huge page support",
        },
        Source {
            title: "Linux kernel documentation",
            section: "admin-guide/hw-vuln/multihit.rst",
        },
        Source {
            title: "libvirt Domain XML format",
            section: "Memory Backing",
        },
    ],
};

pub const E4: RuleInfo = RuleInfo {
    id: "E4",
    family: RuleFamily::Exits,
    title: "MSR writes: a timer or IPI storm",
    checks: "MSR write exits per second of each vCPU (VMX MSR_WRITE; on SVM the VM's MSR \
             writes by index averaged over its vCPUs), and which MSRs: 0x6e0 TSC_DEADLINE \
             (timers), 0x830 x2APIC ICR (IPIs), 0x80b EOI.",
    diagnosis: "Guest timers or IPIs trap to KVM because the APIC is not virtualized.",
    change: StaticChange {
        libvirt: Some(
            "<features><kvm><pv-ipi state='on'/></kvm></features>; Windows: <hyperv> \
             <stimer state='on'/><synic state='on'/><ipi state='on'/></hyperv>",
        ),
        qemu: None,
        host: Some("kvm_intel.enable_apicv=1 and enable_ipiv=1, or kvm_amd.avic=1; guest nohz"),
    },
    effect: "Fewer exits per IPI or timer.",
    sources: &[CPUID_RST, LIBVIRT_HYPERV],
};

pub const E5: RuleInfo = RuleInfo {
    id: "E5",
    family: RuleFamily::Exits,
    title: "xAPIC accesses are trapped",
    checks: "APIC access exits (VMX APIC_ACCESS, SVM avic_unaccelerated_access) per second of \
             each vCPU.",
    diagnosis: "The guest's xAPIC MMIO is not virtualized.",
    change: StaticChange {
        libvirt: Some(
            "<cpu mode='host-model'/> or host-passthrough (exposes x2apic); Windows: \
             <hyperv><vapic state='on'/></hyperv>",
        ),
        qemu: Some("-cpu host (or a model with x2apic)"),
        host: Some("kvm_intel.enable_apicv=1 or kvm_amd.avic=1"),
    },
    effect: "Removes trap-and-emulate for APIC accesses.",
    sources: &[
        Source {
            title: "QEMU documentation",
            section: "docs/system/i386/hyperv.rst (hv-vapic)",
        },
        LIBVIRT_HYPERV,
    ],
};

pub const E6: RuleInfo = RuleInfo {
    id: "E6",
    family: RuleFamily::Exits,
    title: "Host interrupts land on vCPU CPUs",
    checks: "External-interrupt exits (VMX EXTERNAL_INTERRUPT, SVM interrupt) per second of \
             each vCPU.",
    diagnosis: "Device interrupts, ticks or IPIs (reschedule, TLB) of the host arrive on CPUs \
                while they run guest code.",
    change: StaticChange {
        libvirt: None,
        qemu: None,
        host: Some(
            "isolate the vCPU CPUs: isolcpus/nohz_full, IRQ affinity away from them, tuned \
             profile realtime-virtual-host; posted interrupts for VFIO devices",
        ),
    },
    effect: "Less jitter for the guest.",
    sources: &[Source {
        title: "RHEL 9 for Real Time",
        section: "Configuring virtualization",
    }],
};

pub const E7: RuleInfo = RuleInfo {
    id: "E7",
    family: RuleFamily::Exits,
    title: "Host TLB shootdowns hit vCPU CPUs",
    checks: "Host TLB-shootdown IPIs per second to the CPUs running the VM's vCPUs, with the \
             host's NUMA balancing and KSM state.",
    diagnosis: "Host memory management (NUMA balancing, ksmd, compaction) changes QEMU's page \
                tables and flushes the TLBs of CPUs running the guest.",
    change: StaticChange {
        libvirt: Some("<memoryBacking><hugepages/><nosharepages/></memoryBacking>"),
        qemu: None,
        host: Some(
            "sysctl kernel.numa_balancing=0 for pinned VMs; echo 0 > /sys/kernel/mm/ksm/run",
        ),
    },
    effect: "Fewer external-interrupt and EPT exits.",
    sources: &[
        Source {
            title: "Linux kernel documentation",
            section: "admin-guide/sysctl/kernel.rst (numa_balancing)",
        },
        Source {
            title: "Linux kernel documentation",
            section: "admin-guide/mm/ksm.rst",
        },
    ],
};

pub const E8: RuleInfo = RuleInfo {
    id: "E8",
    family: RuleFamily::Exits,
    title: "Guest IPI storm under overcommit",
    checks: "IPIs sent by the guest per second, when the host is overcommitted (a vCPU waits \
             for CPU, or the host has more vCPUs than physical cores).",
    diagnosis: "Guest TLB-shootdown or reschedule IPIs target preempted vCPUs and wait for them.",
    change: StaticChange {
        libvirt: Some(
            "keep KVM PV TLB flush and PV IPI (<kvm><pv-ipi state='on'/></kvm>; \
             hint-dedicated turns PV TLB flush off); Windows: <hyperv><tlbflush \
             state='on'/><ipi state='on'/></hyperv>",
        ),
        qemu: None,
        host: Some("reduce CPU overcommit"),
    },
    effect: "Senders no longer wait on preempted vCPUs.",
    sources: &[
        Source {
            title: "Linux kernel documentation",
            section: "virt/kvm/x86/cpuid.rst (KVM_FEATURE_PV_TLB_FLUSH)",
        },
        LIBVIRT_HYPERV,
    ],
};

pub const E9: RuleInfo = RuleInfo {
    id: "E9",
    family: RuleFamily::Exits,
    title: "Slow exit handling",
    checks: "The 99th percentile of kvm_exit → kvm_entry per exit reason, and each vCPU's share \
             of time spent handling exits.",
    diagnosis: "Slow emulation, or the vCPU thread preempted while handling an exit.",
    change: StaticChange {
        libvirt: None,
        qemu: None,
        host: Some(
            "apply the rule for the slow reason; confirm with perf kvm stat record, then \
             perf kvm stat report --event=vmexit",
        ),
    },
    effect: "Targets the costly path.",
    sources: &[Source {
        title: "perf-kvm(1)",
        section: "perf kvm stat",
    }],
};
