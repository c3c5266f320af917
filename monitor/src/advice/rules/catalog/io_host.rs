//! I1–I4 (I/O) and H1–H3 (host facts).

use crate::model::advice::{RuleFamily, RuleInfo, Source, StaticChange};

const RHEL7_VTOG_7: Source = Source {
    title: "RHEL 7 Virtualization Tuning and Optimization Guide",
    section: "ch. 7 Block I/O",
};

pub const I1: RuleInfo = RuleInfo {
    id: "I1",
    family: RuleFamily::Io,
    title: "Data disk on emulated storage",
    checks: "Guest disks (not CD-ROMs) on IDE/AHCI, or on an LSI or MegaRAID SCSI controller.",
    diagnosis: "Emulated storage controllers: many port-I/O and MMIO exits per request (see E1, \
                E2).",
    change: StaticChange {
        libvirt: Some(
            "<target dev='vda' bus='virtio'/>, or <controller type='scsi' \
                       model='virtio-scsi'/>",
        ),
        qemu: Some("-device virtio-blk-pci or virtio-scsi-pci with scsi-hd"),
        host: None,
    },
    effect: "Fewer exits and more IOPS.",
    sources: &[RHEL7_VTOG_7],
};

pub const I2: RuleInfo = RuleInfo {
    id: "I2",
    family: RuleFamily::Io,
    title: "Host page cache or thread pool in the disk path",
    checks: "Raw images and host block devices with cache=writeback, writethrough or unsafe \
             (including QEMU's default), or with aio=threads.",
    diagnosis: "Double caching in guest and host page cache; thread-pool overhead per request. \
                cache=unsafe ignores flushes: a host crash loses data.",
    change: StaticChange {
        libvirt: Some(
            "<driver name='qemu' type='raw' cache='none' io='native' iothread='1'/> \
                       (io='io_uring' where supported)",
        ),
        qemu: Some("cache.direct=on,aio=native (aio=native requires cache.direct=on)"),
        host: None,
    },
    effect: "Predictable latency; cache=none is also the mode that supports live migration.",
    sources: &[
        Source {
            title: "RHEL 7 Virtualization Tuning and Optimization Guide",
            section: "§7.2–7.3 Caching and I/O mode",
        },
        Source {
            title: "RHEL 10 Configuring and managing virtualization",
            section: "Configure virtual disk caching",
        },
        Source {
            title: "QEMU source",
            section: "block/file-posix.c (aio=native requires cache.direct=on)",
        },
    ],
};

pub const I3: RuleInfo = RuleInfo {
    id: "I3",
    family: RuleFamily::Io,
    title: "Slow or monopolised block device",
    checks: "The 99th percentile of block request latency per VM drive (against the SSD \
             threshold for devices known to be solid-state, the HDD one otherwise), and the \
             share of the device's busy time one VM takes.",
    diagnosis: "A saturated device or a noisy neighbour.",
    change: StaticChange {
        libvirt: Some("<iotune> per disk, <blkiotune> per domain, dedicated <iothreads>"),
        qemu: None,
        host: Some(
            "I/O scheduler mq-deadline on the host (none for NVMe); none in guests (not for \
             passthrough, SR-IOV or iSCSI)",
        ),
    },
    effect: "Latency isolation between VMs.",
    sources: &[
        Source {
            title: "RHEL 7 Virtualization Tuning and Optimization Guide",
            section: "ch. 6 I/O scheduling",
        },
        Source {
            title: "libvirt Domain XML format",
            section: "Block I/O Tuning",
        },
    ],
};

pub const I4: RuleInfo = RuleInfo {
    id: "I4",
    family: RuleFamily::Io,
    title: "Network packets processed in QEMU",
    checks: "NICs of model e1000, e1000e or rtl8139, and virtio NICs on a tap backend without \
             vhost.",
    diagnosis: "Every packet goes through QEMU's userspace device model.",
    change: StaticChange {
        libvirt: Some(
            "<interface><model type='virtio'/><driver name='vhost' queues='N'/>\
                       </interface> (N ≤ vCPUs; ethtool -L in the guest)",
        ),
        qemu: Some("-netdev tap,vhost=on,queues=N -device virtio-net-pci,mq=on"),
        host: Some("macvtap or SR-IOV for line rate"),
    },
    effect: "Higher throughput and less host CPU per packet.",
    sources: &[
        Source {
            title: "RHEL 7 Virtualization Deployment and Administration Guide",
            section: "§6.2 Network configuration",
        },
        Source {
            title: "RHEL 7 Virtualization Tuning and Optimization Guide",
            section: "§5.4.2 vhost-net",
        },
    ],
};

pub const H1: RuleInfo = RuleInfo {
    id: "H1",
    family: RuleFamily::Host,
    title: "Software emulation instead of KVM",
    checks: "No vmx/svm flag in /proc/cpuinfo, the kvm module or /dev/kvm missing, or a VM \
             whose preferred accelerator is tcg.",
    diagnosis: "TCG translates every guest instruction: the whole VM is slow, not just its boot.",
    change: StaticChange {
        libvirt: Some("<domain type='kvm'>"),
        qemu: Some("-accel kvm"),
        host: Some("enable VT-x/AMD-V in the firmware; modprobe kvm_intel or kvm_amd"),
    },
    effect: "Native-speed guest execution.",
    sources: &[
        Source {
            title: "QEMU documentation",
            section: "Accelerators (-accel)",
        },
        Source {
            title: "libvirt Domain XML format",
            section: "Element and attribute overview (domain type)",
        },
    ],
};

pub const H2: RuleInfo = RuleInfo {
    id: "H2",
    family: RuleFamily::Host,
    title: "Shadow paging: EPT/NPT disabled",
    checks: "kvm_intel.ept=N or kvm_amd.npt=0.",
    diagnosis: "KVM shadows guest page tables: CR3 writes, page faults and INVLPG all exit.",
    change: StaticChange {
        libvirt: Some("no <hap state='off'/> in <features>"),
        qemu: None,
        host: Some("load kvm_intel with ept=1 (kvm_amd with npt=1)"),
    },
    effect: "Removes the CR3, #PF and INVLPG exits of shadow paging.",
    sources: &[Source {
        title: "libvirt Domain XML format",
        section: "Hypervisor features (hap)",
    }],
};

pub const H3: RuleInfo = RuleInfo {
    id: "H3",
    family: RuleFamily::Host,
    title: "Old or generic CPU model",
    checks: "A VM whose -cpu model is qemu64, qemu32, kvm64, kvm32 or another old named model, \
             or that gives none on x86-64 (QEMU then uses qemu64).",
    diagnosis: "The guest misses x2apic, tsc-deadline, pcid and similar features (feeds E4, E5).",
    change: StaticChange {
        libvirt: Some("<cpu mode='host-model'/> (migratable) or <cpu mode='host-passthrough'/>"),
        qemu: Some("-cpu host"),
        host: None,
    },
    effect: "Guests use the host CPU's virtualisation-friendly features.",
    sources: &[
        Source {
            title: "RHEL 9 Configuring and managing virtualization",
            section: "Optimizing virtual machine CPU performance",
        },
        Source {
            title: "libvirt Domain XML format",
            section: "CPU model and topology",
        },
    ],
};
