//! I1–I4.

use super::*;

fn with_args(args: &[&str]) -> Inputs {
    let mut all = vec!["-m", "1024"];
    all.extend_from_slice(args);
    inputs(host(), vec![vm(100, &all, 1)])
}

#[test]
fn i1_emulated_storage() {
    let rec = fires(
        &with_args(&["-drive", "file=/img/a.qcow2,format=qcow2,if=ide,id=d0"]),
        "I1",
    );
    assert_eq!(
        rec.target,
        Target::Drive {
            pid: 100,
            drive: "d0".into()
        }
    );
    let rec = fires(
        &with_args(&[
            "-device",
            "lsi53c895a,id=scsi0",
            "-drive",
            "file=/img/a.qcow2,format=qcow2,if=none,id=drive0",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=drive0,id=disk0",
        ]),
        "I1",
    );
    assert_eq!(rec.evidence()[0].value, Value::Text("lsi53c895a".into()));
    quiet(
        &with_args(&[
            "-device",
            "virtio-scsi-pci,id=scsi0",
            "-drive",
            "file=/img/a.qcow2,format=qcow2,if=none,id=drive0",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=drive0,id=disk0",
        ]),
        "I1",
    );
    quiet(
        &with_args(&["-drive", "file=/img/a.qcow2,format=qcow2,if=virtio"]),
        "I1",
    );
    quiet(
        &with_args(&["-drive", "file=/img/boot.iso,media=cdrom,if=ide"]),
        "I1",
    );
}

#[test]
fn i2_host_cache_and_thread_pool() {
    let rec = fires(
        &with_args(&["-drive", "file=/dev/vg/lv,format=raw,if=virtio,id=d0"]),
        "I2",
    );
    assert_eq!(rec.severity, Severity::Warning);
    assert_eq!(
        rec.evidence().len(),
        2,
        "default cache=writeback and aio=threads"
    );
    let rec = fires(
        &with_args(&[
            "-drive",
            "file=/dev/vg/lv,format=raw,if=virtio,cache=unsafe,aio=native",
        ]),
        "I2",
    );
    assert_eq!(rec.severity, Severity::Critical);
    let rec = fires(
        &with_args(&["-drive", "file=/img/a.raw,format=raw,if=virtio,cache=none"]),
        "I2",
    );
    assert!(
        rec.change
            .qemu
            .as_ref()
            .unwrap()
            .exact()
            .contains("aio=native")
    );
    quiet(
        &with_args(&[
            "-drive",
            "file=/dev/vg/lv,format=raw,if=virtio,cache=none,aio=native",
        ]),
        "I2",
    );
    quiet(
        &with_args(&[
            "-drive",
            "file=/dev/vg/lv,format=raw,if=virtio,cache=directsync,aio=io_uring",
        ]),
        "I2",
    );
    // qcow2 images are not what the rule is about.
    quiet(
        &with_args(&["-drive", "file=/img/a.qcow2,format=qcow2,if=virtio"]),
        "I2",
    );
}

#[test]
fn i3_block_latency_and_share() {
    let block = |obs: BlockObservation| {
        let mut v = small_vm(100);
        v.observations.block = Some(BTreeMap::from([("virtio-disk0".to_owned(), obs)]));
        inputs(host(), vec![v])
    };
    let ssd = |p99: f64| BlockObservation {
        p99_ns: Some(p99),
        rotational: Some(false),
        ..BlockObservation::default()
    };
    let rec = fires(&block(ssd(10_000_001.0)), "I3");
    assert_eq!(
        rec.target,
        Target::Drive {
            pid: 100,
            drive: "virtio-disk0".into()
        }
    );
    quiet(&block(ssd(10_000_000.0)), "I3");
    // Kind unknown: only the HDD threshold applies.
    let unknown = |p99: f64| BlockObservation {
        p99_ns: Some(p99),
        ..BlockObservation::default()
    };
    quiet(&block(unknown(49_999_999.0)), "I3");
    fires(&block(unknown(50_000_001.0)), "I3");
    let share = |s: f64| BlockObservation {
        device_time_share: Some(s),
        ..BlockObservation::default()
    };
    fires(&block(share(0.51)), "I3");
    quiet(&block(share(0.5)), "I3");
}

#[test]
fn i4_userspace_networking() {
    let nic = |netdev: &str, device: &str| with_args(&["-netdev", netdev, "-device", device]);
    let rec = fires(&nic("tap,id=n0,vhost=on", "e1000,netdev=n0,id=net0"), "I4");
    assert_eq!(
        rec.target,
        Target::Nic {
            pid: 100,
            nic: "net0".into()
        }
    );
    fires(&nic("tap,id=n0", "virtio-net-pci,netdev=n0,id=net0"), "I4");
    quiet(
        &nic("tap,id=n0,vhost=on", "virtio-net-pci,netdev=n0,id=net0"),
        "I4",
    );
    quiet(
        &nic(
            "vhost-user,id=n0,chardev=c0",
            "virtio-net-pci,netdev=n0,id=net0",
        ),
        "I4",
    );
}
