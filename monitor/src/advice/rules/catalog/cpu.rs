//! C1–C9: CPU and scheduling.

use crate::model::advice::{RuleFamily, RuleInfo, Source, StaticChange};

const RHEL7_VDAG_7_3: Source = Source {
    title: "RHEL 7 Virtualization Deployment and Administration Guide",
    section: "§7.3 Overcommitting virtualized CPUs",
};
const RHEL7_VTOG_9_3: Source = Source {
    title: "RHEL 7 Virtualization Tuning and Optimization Guide",
    section: "§9.3 libvirt NUMA tuning",
};
const HALT_POLLING: Source = Source {
    title: "Linux kernel documentation",
    section: "virt/kvm/halt-polling.rst",
};

pub const C1: RuleInfo = RuleInfo {
    id: "C1",
    family: RuleFamily::Cpu,
    title: "vCPU threads wait for a host CPU (steal time)",
    checks: "The share of wall time each vCPU thread spent runnable but waiting in the host \
             run queue (the growth of run_delay in /proc/PID/task/TID/schedstat).",
    diagnosis: "CPU contention on the host. KVM adds exactly this wait to the guest's steal-time \
                page, so the guest sees it as steal.",
    change: StaticChange {
        libvirt: Some(
            "<cputune><vcpupin vcpu='0' cpuset='N'/>…<emulatorpin cpuset='H'/>\
             <iothreadpin iothread='1' cpuset='H'/></cputune>; <cputune><shares>…</shares> \
             for priority",
        ),
        qemu: None,
        host: Some("reduce CPU overcommit: move or shrink VMs so runnable vCPUs fit the cores"),
    },
    effect: "Steal falls towards zero; lower tail latency inside the guest.",
    sources: &[
        Source {
            title: "Linux kernel source",
            section: "arch/x86/kvm/x86.c, record_steal_time",
        },
        RHEL7_VDAG_7_3,
    ],
};

pub const C2: RuleInfo = RuleInfo {
    id: "C2",
    family: RuleFamily::Cpu,
    title: "More vCPUs than the host's cores can carry",
    checks: "A VM with more vCPUs than the host has physical cores; or all VMs' vCPUs per \
             physical core above the busy limit while the host is busy; or above the absolute \
             limit.",
    diagnosis: "SMP overcommit: vCPUs of one guest time-share the same cores, so spinning and \
                IPIs between them stall.",
    change: StaticChange {
        libvirt: Some("<vcpu>N</vcpu> with N at most the host's physical cores"),
        qemu: Some("-smp N"),
        host: Some("spread VMs over more hosts or resize them"),
    },
    effect: "Avoids the significant performance degradation Red Hat documents for \
             overcommitted SMP guests.",
    sources: &[
        Source {
            title: "RHEL 6 Virtualization Administration Guide",
            section: "§6.2 Overcommitting virtualized CPUs",
        },
        RHEL7_VDAG_7_3,
        Source {
            title: "RHEL 9 Configuring and managing virtualization",
            section: "Optimizing virtual machine CPU performance",
        },
    ],
};

pub const C3: RuleInfo = RuleInfo {
    id: "C3",
    family: RuleFamily::Cpu,
    title: "vCPU threads migrate between host CPUs",
    checks: "Migrations of each vCPU thread between host CPUs per second, and migrations to \
             another NUMA node per minute.",
    diagnosis: "The load balancer moves an unpinned vCPU: caches go cold and its memory becomes \
                remote.",
    change: StaticChange {
        libvirt: Some(
            "<cputune><vcpupin vcpu='0' cpuset='N'/>…</cputune> together with \
             <numatune><memory mode='strict' nodeset='X'/></numatune> (both), or \
             <vcpu placement='auto'> with numad",
        ),
        qemu: None,
        host: None,
    },
    effect: "Warm caches and local memory; Red Hat measures NUMA misses at 10 % or more.",
    sources: &[Source {
        title: "RHEL 7 Virtualization Tuning and Optimization Guide",
        section: "§9.3.2 NUMA vCPU pinning",
    }],
};

pub const C4: RuleInfo = RuleInfo {
    id: "C4",
    family: RuleFamily::Cpu,
    title: "A VM that fits one NUMA node is spread over several",
    checks: "Whether the VM's vCPUs fit one node's physical cores and its RAM fits one node's \
             memory, while the CPUs its vCPU threads may run on, or its resident memory, span \
             more than one node.",
    diagnosis: "An avoidable split: remote memory accesses and cross-node cache traffic.",
    change: StaticChange {
        libvirt: Some(
            "<vcpupin> to CPUs of one node plus <numatune><memory mode='strict' \
             nodeset='N'/></numatune>; for VMs larger than a node, a guest NUMA topology \
             (<cpu><numa><cell …/></numa></cpu>) with <numatune><memnode cellid=… \
             nodeset=…/>",
        ),
        qemu: None,
        host: None,
    },
    effect: "Local last-level cache and local memory for the whole VM.",
    sources: &[RHEL7_VTOG_9_3],
};

pub const C5: RuleInfo = RuleInfo {
    id: "C5",
    family: RuleFamily::Cpu,
    title: "Emulator and I/O threads share the vCPUs' CPUs",
    checks: "Whether QEMU's main loop, IOThreads or vhost workers may run on CPUs that also run \
             the VM's vCPUs, while a vCPU waits for CPU.",
    diagnosis: "Emulation and I/O work steal time from the vCPUs of the same VM.",
    change: StaticChange {
        libvirt: Some(
            "<cputune><emulatorpin cpuset='H'/><iothreadpin iothread='1' cpuset='H'/>\
             </cputune> and <iothreads>1</iothreads>, with H housekeeping CPUs not in any \
             <vcpupin>",
        ),
        qemu: None,
        host: None,
    },
    effect: "Removes the VM's interference with itself.",
    sources: &[Source {
        title: "libvirt Domain XML format",
        section: "CPU Tuning",
    }],
};

pub const C6: RuleInfo = RuleInfo {
    id: "C6",
    family: RuleFamily::Cpu,
    title: "Rapid halt/wake cycles that polling would absorb",
    checks: "HLT exits per second of each vCPU, its median time halted against the host's \
             halt_poll_ns (the x86 default of 200000 ns when polling is off), and that the \
             vCPU is not waiting for CPU.",
    diagnosis: "Idle/wake ping-pong (RPC, I/O completion): each wakeup pays a scheduler round \
                trip that halt polling would save.",
    change: StaticChange {
        libvirt: Some(
            "with dedicated pCPUs: guest cpuidle-haltpoll plus <features><kvm>\
             <hint-dedicated state='on'/></kvm></features>",
        ),
        qemu: Some("at the extreme, -overcommit cpu-pm=on (guest HLT/MWAIT no longer exit)"),
        host: Some("keep or raise kvm.halt_poll_ns (x86 default 200000)"),
    },
    effect: "Saves a scheduler round trip on each wakeup.",
    sources: &[
        HALT_POLLING,
        Source {
            title: "Linux kernel documentation",
            section: "virt/guest-halt-polling.rst",
        },
        Source {
            title: "QEMU qemu-options.hx",
            section: "-overcommit cpu-pm",
        },
    ],
};

pub const C7: RuleInfo = RuleInfo {
    id: "C7",
    family: RuleFamily::Cpu,
    title: "Halt polling burns CPU the host needs",
    checks: "The share of halt-polling time that ended without a wakeup, per vCPU, while the \
             host CPU is busy.",
    diagnosis: "Polling spins for wakeups that do not come, taking CPU from other work.",
    change: StaticChange {
        libvirt: Some("guest-side: <features><kvm><poll-control state='on'/></kvm></features>"),
        qemu: None,
        host: Some("lower kvm.halt_poll_ns (per VM: KVM_CAP_HALT_POLL)"),
    },
    effect: "Gives the polled CPU time back to runnable work.",
    sources: &[HALT_POLLING],
};

pub const C8: RuleInfo = RuleInfo {
    id: "C8",
    family: RuleFamily::Cpu,
    title: "Pause-loop exits: spinning on a preempted lock holder",
    checks: "PAUSE exits (VMX PAUSE_INSTRUCTION, SVM pause) per second of each vCPU, with its \
             run-queue wait when known.",
    diagnosis: "Lock-holder preemption under overcommit: the guest spins on a lock whose holder's \
                vCPU is not running.",
    change: StaticChange {
        libvirt: Some(
            "pin vCPUs and keep <features><pvspinlock state='on'/></features>; when pinned \
             1:1, <kvm><hint-dedicated state='on'/></kvm>",
        ),
        qemu: Some("when pinned 1:1: -overcommit cpu-pm=on"),
        host: Some(
            "fix the overcommit; when pinned 1:1: kvm_intel.ple_gap=0 or \
             kvm_amd.pause_filter_count=0",
        ),
    },
    effect: "Fewer futile spins and exits.",
    sources: &[
        Source {
            title: "KVM commit 4b8d54f9",
            section: "pause-loop exiting (ple_gap 128, ple_window 4096)",
        },
        Source {
            title: "Linux kernel documentation",
            section: "virt/kvm/x86/cpuid.rst (KVM_FEATURE_PV_UNHALT)",
        },
    ],
};

pub const C9: RuleInfo = RuleInfo {
    id: "C9",
    family: RuleFamily::Cpu,
    title: "Frequency scaling adds latency to latency-bound VMs",
    checks: "The cpufreq governor of the CPUs the VM's vCPUs may run on, when a latency rule \
             (C6 or I3) fires for the VM.",
    diagnosis: "The CPU ramps its frequency up only after the work has arrived.",
    change: StaticChange {
        libvirt: None,
        qemu: None,
        host: Some(
            "tuned-adm profile virtual-host on the host (virtual-guest in the guests), or \
             cpupower frequency-set -g performance",
        ),
    },
    effect: "Steadier latency.",
    sources: &[Source {
        title: "RHEL 7 Virtualization Tuning and Optimization Guide",
        section: "ch. 4 tuned and tuned-adm",
    }],
};
