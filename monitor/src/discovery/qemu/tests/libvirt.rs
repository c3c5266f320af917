//! Command lines libvirt generated, from its key=value era to JSON.

use super::*;

#[test]
fn libvirt_old_keyval_disk_cache() {
    let cmd = parse("libvirt-old-disk-cache.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.binary.as_deref(), Some("/usr/bin/qemu-system-i686"));
    assert_eq!(cmd.name.as_deref(), Some("QEMUGuest1"));
    assert!(!cmd.debug_threads);
    assert_eq!(
        cmd.uuid.as_deref(),
        Some("c7a5fdbd-edaf-9455-926a-d65c16db1809")
    );
    let machine = cmd.machine.as_ref().unwrap();
    assert_eq!(machine.machine_type.as_deref(), Some("pc-i440fx-2.6"));
    assert_eq!(cmd.accel, ["tcg"]);
    assert_eq!(cmd.memory.as_ref().unwrap().size_bytes, Some(214 << 20));
    assert_eq!(cmd.boot_cpus(), 1);
    assert_eq!(
        disk_summary(&cmd),
        owned(&[
            ("ide0-0-0", "ide", "writeback", "threads"),
            ("scsi0-0-0", "scsi", "none", "threads"),
            ("virtio-disk0", "virtio", "writethrough", "threads"),
            ("usb-disk1", "usb", "directsync", "threads"),
        ])
    );
    let disk = &cmd.disks()[1];
    assert_eq!(disk.file.as_deref(), Some("/dev/HostVG/QEMUGuest1"));
    assert_eq!(disk.format.as_deref(), Some("qcow2"));
    assert_eq!(disk.bus.as_deref(), Some("scsi0.0"));
    // The argument libvirt wrapped mid-way is one argument again.
    let chardev = cmd.unknown.iter().find(|o| o.name == "chardev").unwrap();
    assert!(
        chardev
            .value
            .as_deref()
            .unwrap()
            .ends_with("monitor.sock,server,nowait")
    );
    assert!(unknown_names(&cmd).starts_with(&["S", "display", "no-user-config", "nodefaults"]));
}

#[test]
fn libvirt_old_keyval_netdev() {
    let cmd = parse("libvirt-old-net-virtio-netdev.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(
        cmd.overcommit.as_ref().unwrap().mem_lock.as_deref(),
        Some("off")
    );
    let nics = cmd.nics();
    assert_eq!(nics.len(), 1);
    assert_eq!(nics[0].model, "virtio-net-pci");
    assert_eq!(nics[0].backend.as_deref(), Some("user"));
    assert_eq!(nics[0].mac.as_deref(), Some("00:11:22:33:44:55"));
    assert_eq!(nics[0].vhost, None);
    assert_eq!(
        disk_summary(&cmd),
        owned(&[("ide0-0-0", "ide", "writeback", "threads")])
    );
}

#[test]
fn libvirt_mixed_json_blockdev_keyval_device() {
    let cmd = parse("libvirt-mixed-disk-aio.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.name.as_deref(), Some("QEMUGuest1"));
    assert!(cmd.debug_threads);
    assert_eq!(cmd.memory_backends.len(), 1);
    assert_eq!(cmd.memory_backends[0].size_bytes, Some(224_395_264));
    assert_eq!(
        cmd.machine.as_ref().unwrap().props.get("memory-backend"),
        Some("pc.ram")
    );
    let disks = cmd.disks();
    assert_eq!(
        disk_summary(&cmd),
        owned(&[
            ("ide0-0-0", "ide", "none", "native"),
            ("ide0-1-0", "ide", "writeback", "threads"),
        ])
    );
    assert_eq!(disks[0].format.as_deref(), Some("qcow2"));
    assert_eq!(disks[0].protocol.as_deref(), Some("host_device"));
    assert!(!disks[0].cdrom && !disks[0].read_only);
    assert!(disks[1].cdrom && disks[1].read_only);
    assert_eq!(disks[1].file.as_deref(), Some("/dev/HostVG/QEMUGuest2"));
    // The secret object is not modelled; it is kept.
    assert!(
        cmd.unknown
            .iter()
            .any(|o| o.name == "object" && o.value.as_deref().unwrap().contains("masterKey0"))
    );
}

#[test]
fn libvirt_json_cache_modes_from_blockdev_flags() {
    let cmd = parse("libvirt-json-disk-cache.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.memory.as_ref().unwrap().size_bytes, Some(219_136 << 10));
    assert_eq!(
        disk_summary(&cmd),
        owned(&[
            ("ide0-0-0", "ide", "writeback", "threads"),
            ("ide0-0-1", "ide", "unsafe", "threads"),
            ("scsi0-0-0", "scsi", "none", "threads"),
            ("virtio-disk0", "virtio", "writethrough", "threads"),
            ("usb-disk1", "usb", "directsync", "threads"),
        ])
    );
    let scsi = &cmd.devices[4];
    assert_eq!(scsi.driver, "scsi-hd");
    // Other properties keep their command-line order.
    let keys: Vec<&str> = scsi.props.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["scsi-id", "device_id", "write-cache"]);
}

#[test]
fn libvirt_json_iothreads() {
    let cmd = parse("libvirt-json-iothreads-disk.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    let ids: Vec<_> = cmd
        .iothreads
        .iter()
        .map(|t| t.id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["iothread1", "iothread2", "iothread3", "iothread4"]);
    let disks = cmd.disks();
    let threads: Vec<_> = disks.iter().map(|d| d.iothread.as_deref()).collect();
    assert_eq!(
        threads,
        [Some("iothread1"), Some("iothread2"), Some("iothread4")]
    );
    assert!(
        disks
            .iter()
            .all(|d| d.protocol.as_deref() == Some("file") && d.format.is_none())
    );
    assert_eq!(
        cmd.devices[2].props.get("iothread-vq-mapping.1.vqs.1"),
        Some("2")
    );
    assert_eq!(cmd.boot_cpus(), 2);
}

#[test]
fn libvirt_json_memory_hotplug() {
    let cmd = parse("libvirt-json-memory-hotplug-dimm.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    let memory = cmd.memory.as_ref().unwrap();
    assert_eq!(memory.size_bytes, Some(224_395_264));
    assert_eq!(memory.slots, Some(16));
    assert_eq!(memory.maxmem_bytes, Some(1 << 50));
    let smp = cmd.smp.as_ref().unwrap();
    assert_eq!(
        (smp.cpus, smp.sockets, smp.dies, smp.clusters),
        (Some(2), Some(2), Some(1), Some(1))
    );
    let ids: Vec<_> = cmd
        .memory_backends
        .iter()
        .map(|b| b.id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["ram-node0", "memdimm0", "memdimm1"]);
    let file = &cmd.memory_backends[2];
    assert_eq!(file.qom_type, "memory-backend-file");
    assert_eq!(file.host_nodes, [1, 2, 3]);
    assert_eq!(file.policy.as_deref(), Some("bind"));
    assert_eq!(file.prealloc, Some(true));
    assert!(file.uses_hugepages());
    assert!(!cmd.memory_backends[0].uses_hugepages());
}

#[test]
fn libvirt_json_hugepages_and_cpu_features() {
    let cmd = parse("libvirt-json-hugepages-numa.args");
    assert_eq!(cmd.name.as_deref(), Some("SomeDummyHugepagesGuest"));
    assert!(
        cmd.memory_backends
            .iter()
            .all(MemoryBackend::uses_hugepages)
    );
    let total: u64 = cmd
        .memory_backends
        .iter()
        .filter_map(|b| b.size_bytes)
        .sum();
    assert_eq!(Some(total), cmd.memory.as_ref().unwrap().size_bytes);

    let cmd = parse("libvirt-json-cpu-host-model-features.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.accel, ["kvm"]);
    assert!(cmd.wants_kvm());
    let cpu = cmd.cpu.as_ref().unwrap();
    assert_eq!(cpu.model, "EPYC-Turin");
    assert_eq!(cpu.features.len(), 18);
    assert!(cpu.features.contains(&CpuFeature {
        name: "pcid".into(),
        enabled: false
    }));
    assert!(cpu.props.is_empty());
}

#[test]
fn libvirt_2015_real_host() {
    let cmd = parse("libvirt-2015-win8-vfio.args");
    assert_eq!(cmd.name.as_deref(), Some("ssd-win8-uefi"));
    assert_eq!(cmd.uuid, None);
    assert_eq!(cmd.warnings, ["-uuid: \"<redacted>\" is not a UUID"]);
    assert_eq!(cmd.accel, ["kvm"]);
    let cpu = cmd.cpu.as_ref().unwrap();
    assert_eq!(cpu.model, "Haswell");
    assert_eq!(cpu.features.len(), 3);
    assert_eq!(cpu.props.get("hv_spinlocks"), Some("0x1000"));
    assert!(cmd.mem_prealloc);
    assert_eq!(cmd.mem_path.as_deref(), Some("/dev/hugepages/libvirt/qemu"));
    assert_eq!(cmd.memory.as_ref().unwrap().size_bytes, Some(6 << 30));
    assert_eq!(
        cmd.overcommit.as_ref().unwrap().mem_lock.as_deref(),
        Some("off")
    );
    assert_eq!(
        disk_summary(&cmd),
        owned(&[
            ("virtio-disk0", "virtio", "writeback", "threads"),
            ("virtio-disk1", "virtio", "none", "threads"),
            ("virtio-disk2", "virtio", "writeback", "threads"),
            ("ide0-1-0", "ide", "writeback", "threads"),
        ])
    );
    assert!(cmd.disks()[3].read_only && cmd.disks()[3].cdrom);
    let nics = cmd.nics();
    assert_eq!(
        (nics[0].backend.as_deref(), nics[0].vhost),
        (Some("tap"), Some(true))
    );
    assert_eq!(
        cmd.devices
            .iter()
            .filter(|d| d.driver == "vfio-pci")
            .count(),
        3
    );
}

#[test]
fn libvirt_real_fedora_cmdline() {
    let cmd = parse("libvirt-real-fedora-q35.cmdline");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.name.as_deref(), Some("fedora"));
    assert_eq!(
        cmd.uuid.as_deref(),
        Some("c03f3be3-afbc-4431-a7b1-007ba2df8f9f")
    );
    let machine = cmd.machine.as_ref().unwrap();
    assert_eq!(machine.machine_type.as_deref(), Some("pc-q35-7.2"));
    assert_eq!(cmd.accel, ["kvm"]);
    let cpu = cmd.cpu.as_ref().unwrap();
    assert_eq!((cpu.model.as_str(), cpu.features.len()), ("host", 1));
    assert_eq!(cmd.memory.as_ref().unwrap().size_bytes, Some(3048 << 20));
    assert_eq!(cmd.boot_cpus(), 4);
    let disks = cmd.disks();
    assert_eq!(disks.len(), 2);
    assert_eq!(disks[0].file.as_deref(), Some("/tmp/mkfedora/fedora.qcow2"));
    assert_eq!(disks[0].format.as_deref(), Some("qcow2"));
    assert_eq!(disks[0].cache, CacheMode::Writeback);
    assert!(disks[1].cdrom && disks[1].read_only);
    assert_eq!(cmd.nics()[0].vhost, Some(true));
    assert_eq!(cmd.blockdevs[1].props.get("backing"), Some("null"));
}
