//! Hand-written command lines and malformed input that must not panic.

use super::*;

#[test]
fn plain_test_machine_guest() {
    let cmd = parse("plain-test-machine.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.name.as_deref(), Some("kvmtop-probe"));
    assert!(cmd.debug_threads);
    assert_eq!(cmd.accel, ["kvm"]);
    assert_eq!(cmd.memory.as_ref().unwrap().size_bytes, Some(64 << 20));
    let disks = cmd.disks();
    assert_eq!(
        disk_summary(&cmd),
        owned(&[("", "virtio", "none", "native")])
    );
    assert_eq!(disks[0].frontend, None);
    assert_eq!(disks[0].file.as_deref(), Some("disk.img"));
}

#[test]
fn plain_forum_script() {
    let cmd = parse("plain-forum-q35-vfio.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(
        cmd.machine.as_ref().unwrap().machine_type.as_deref(),
        Some("q35")
    );
    assert_eq!(
        cmd.cpu.as_ref().unwrap().features,
        [CpuFeature {
            name: "kvm".into(),
            enabled: false
        }]
    );
    // Drives claimed by a -device are not counted twice.
    let disks = cmd.disks();
    assert_eq!(disks.len(), 2);
    assert_eq!(disks[0].format.as_deref(), Some("qcow2"));
    assert!(disks[1].cdrom);
    let usbdevice: Vec<_> = cmd
        .unknown
        .iter()
        .filter(|o| o.name == "usbdevice")
        .collect();
    assert_eq!(usbdevice.len(), 2);
    assert_eq!(usbdevice[0].value.as_deref(), Some("host:046d:c24a"));
}

#[test]
fn plain_keyval_corners() {
    let cmd = parse("plain-keyval-everything.args");
    assert_eq!(cmd.warnings, Vec::<String>::new());
    assert_eq!(cmd.name.as_deref(), Some("web,01"));
    assert!(cmd.debug_threads);
    assert_eq!(
        cmd.uuid.as_deref(),
        Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    );
    let machine = cmd.machine.as_ref().unwrap();
    assert_eq!(machine.machine_type.as_deref(), Some("q35"));
    assert_eq!(machine.accel, ["kvm", "tcg"]);
    assert_eq!(machine.props.get("kernel-irqchip"), Some("split"));
    assert_eq!(cmd.accel, ["kvm", "tcg"]);
    let cpu = cmd.cpu.as_ref().unwrap();
    let on: Vec<_> = cpu
        .features
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(on, ["vmx", "kvm-pv-eoi", "x2apic"]);
    assert_eq!(cpu.props.get("phys-bits"), Some("43"));
    let smp = cmd.smp.as_ref().unwrap();
    assert_eq!(
        (smp.cpus, smp.maxcpus, smp.threads),
        (Some(6), Some(8), Some(2))
    );
    let memory = cmd.memory.as_ref().unwrap();
    assert_eq!(
        (memory.size_bytes, memory.maxmem_bytes),
        (Some(4 << 30), Some(16 << 30))
    );
    let memfd = &cmd.memory_backends[0];
    assert_eq!(
        (memfd.hugetlb, memfd.share, memfd.prealloc),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(memfd.host_nodes, [0, 1]);
    assert_eq!(memfd.props.get("hugetlbsize"), Some("2M"));
    let overcommit = cmd.overcommit.as_ref().unwrap();
    assert_eq!(
        (overcommit.mem_lock.as_deref(), overcommit.cpu_pm),
        (Some("on-fault"), Some(true))
    );
    assert_eq!(cmd.iothreads[0].props.get("poll-max-ns"), Some("32768"));

    let disks = cmd.disks();
    assert_eq!(
        disk_summary(&cmd),
        owned(&[
            ("vd0", "virtio", "directsync", "io_uring"),
            ("", "scsi", "writeback", "threads"),
            ("", "virtio", "unsafe", "threads"),
        ])
    );
    assert_eq!(
        disks[0].file.as_deref(),
        Some("/var/lib/images/web,01.qcow2")
    );
    assert_eq!(disks[0].iothread.as_deref(), Some("io0"));
    assert_eq!(
        (disks[1].protocol.as_deref(), disks[1].file.as_deref()),
        (Some("nbd"), None)
    );
    assert!(disks[1].cdrom && disks[1].read_only);

    let nics = cmd.nics();
    let backends: Vec<_> = nics
        .iter()
        .map(|n| (n.backend.as_deref(), n.vhost))
        .collect();
    assert_eq!(
        backends,
        [
            (Some("tap"), Some(false)),
            (Some("vhost-user"), None),
            (None, None)
        ]
    );
    assert_eq!(nics[0].ifname.as_deref(), Some("tap-web"));
    let positional = cmd.unknown.iter().find(|o| o.name.is_empty()).unwrap();
    assert_eq!(positional.value.as_deref(), Some("extra.img"));

    let json = serde_json::to_value(&cmd).unwrap();
    assert_eq!(json["machine"]["type"], "q35");
    assert_eq!(
        json["blockdevs"][0]["file"]["filename"],
        "/var/lib/images/web,01.qcow2"
    );
    assert_eq!(json["blockdevs"][0]["file"]["aio"], "io_uring");
    assert_eq!(json["netdevs"][0]["type"], "tap");
}

#[test]
fn malformed_missing_arguments() {
    let cmd = parse("malformed-missing-arg.args");
    assert_eq!(cmd.name.as_deref(), Some("vm1"));
    assert_eq!(cmd.smp, None);
    assert_eq!(cmd.memory.as_ref().unwrap().size_bytes, Some(4 << 30));
    assert_eq!(cmd.accel, ["kvm"]);
    assert_eq!(cmd.cpu, None);
    assert_eq!(
        cmd.warnings,
        [
            "option -smp is missing its argument",
            "option -uuid is missing its argument",
            "option -cpu is missing its argument",
        ]
    );
}

#[test]
fn malformed_garbage_keeps_the_rest() {
    let cmd = parse("malformed-garbage-json.args");
    assert_eq!(cmd.name.as_deref(), Some("broken"));
    let has = |needle: &str| cmd.warnings.iter().any(|w| w.contains(needle));
    assert!(has("-device: invalid JSON"), "{:?}", cmd.warnings);
    assert!(has("-blockdev: invalid JSON"));
    assert!(has("-netdev: JSON argument is not an object"));
    assert!(has("size \"lots\""));
    assert!(has("sockets=\"two\""));
    assert!(has("-m: size=\"99999999999999T\""));
    assert!(has("-uuid"));
    assert!(has("host-nodes"));
    assert!(has("option -machine is missing its argument"));
    assert_eq!(cmd.uuid, None);
    let smp = cmd.smp.as_ref().unwrap();
    assert_eq!((smp.cpus, smp.sockets, smp.cores), (Some(4), None, Some(2)));
    assert_eq!(cmd.devices.len(), 2);
    assert_eq!(cmd.memory_backends.len(), 2);
    assert!(cmd.memory_backends[1].host_nodes.is_empty());
    let disks = cmd.disks();
    assert_eq!(disks.len(), 1);
    assert!(disks[0].unresolved);
    assert_eq!(
        unknown_names(&cmd),
        ["device", "blockdev", "netdev", "machine"]
    );
}

#[test]
fn malformed_truncated_cmdline() {
    let cmd = parse("malformed-truncated.cmdline");
    assert_eq!(cmd.name.as_deref(), Some("fedora"));
    assert_eq!(cmd.boot_cpus(), 4);
    assert_eq!(cmd.devices.len(), 16);
    assert_eq!(cmd.blockdevs.len(), 1);
    assert_eq!(cmd.warnings.len(), 1);
    assert!(cmd.warnings[0].starts_with("-blockdev: invalid JSON"));
}

#[test]
fn malformed_non_utf8() {
    let cmd = parse("malformed-non-utf8.cmdline");
    assert_eq!(cmd.warnings.len(), 2, "{:?}", cmd.warnings);
    assert!(cmd.warnings[0].starts_with("argument 2 is not valid UTF-8"));
    assert_eq!(cmd.name.as_deref(), Some("caf\u{fffd}"));
    assert!(cmd.debug_threads);
    assert_eq!(
        cmd.disks()[0].file.as_deref(),
        Some("/img/\u{fffd}\u{fffd}.raw")
    );
}

#[test]
fn empty_and_degenerate_inputs() {
    let cmd = QemuCommandLine::parse::<&[u8]>(&[]);
    assert_eq!(cmd.warnings, ["the command line is empty"]);
    let cmd = QemuCommandLine::parse(&["qemu", "-", "--", "-1", "--name", "x"]);
    assert_eq!(cmd.name.as_deref(), Some("x"));
    assert_eq!(cmd.unknown.len(), 3);
}

#[test]
fn every_fixture_serializes_to_json() {
    for name in all_fixtures() {
        let cmd = parse(&name);
        let json = serde_json::to_string(&cmd).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(json.starts_with('{'), "{name}");
        serde_json::to_string(&cmd.disks()).unwrap();
        serde_json::to_string(&cmd.nics()).unwrap();
    }
}

/// Every prefix of every fixture, and deterministic byte corruptions, parse without panicking.
#[test]
fn truncations_and_corruptions_never_panic() {
    const NASTY: &[u8] = b",={}[]\"\\-\0\xff";
    let pick = |n: u64, len: usize| usize::try_from(n % len as u64).unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in all_fixtures() {
        let joined: Vec<u8> = fixture_args(&name).join(&0u8);
        let step = (joined.len() / 400).max(1);
        for cut in (0..joined.len()).step_by(step) {
            let args: Vec<&[u8]> = joined[..cut].split(|&b| b == 0).collect();
            let cmd = QemuCommandLine::parse(&args);
            let _ = (cmd.disks(), cmd.nics(), cmd.boot_cpus());
        }
        for _ in 0..200 {
            let mut bytes = joined.clone();
            for _ in 0..8 {
                let at = pick(next(), bytes.len());
                bytes[at] = NASTY[pick(next(), NASTY.len())];
            }
            let args: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
            let cmd = QemuCommandLine::parse(&args);
            let _ = (
                cmd.disks(),
                cmd.nics(),
                serde_json::to_string(&cmd).unwrap(),
            );
        }
    }
}
