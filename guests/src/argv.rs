//! Command lines of the VMMs.

use std::path::Path;

use crate::GuestSpec;

/// Guest-physical address of the "KVMT" magic the boot sectors write once they run
/// (keep in sync with `asm/idle.S` and `asm/diskreader.S`).
pub(crate) const MAGIC_ADDR: u64 = 0x500;
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"KVMT");
/// Guest-physical address of the boot sectors' loop counter.
pub(crate) const LOOP_COUNT_ADDR: u64 = 0x504;

/// What QEMU runs: a firmware image of its own, or `SeaBIOS` booting a raw disk.
pub(crate) enum Boot<'a> {
    Bios(&'a Path),
    Disk(&'a Path),
}

/// The full argv (program first) of a QEMU guest.
///
/// No window, no serial port or monitor on stdio, no default devices: QEMU must run without a
/// terminal or display, from a test harness or a service. `-no-reboot` turns a guest crash
/// (triple fault) into a QEMU exit instead of a silent reboot loop. The QMP socket is how the
/// harness learns vCPU thread ids and guest progress.
pub(crate) fn qemu(spec: &GuestSpec, program: &Path, boot: &Boot<'_>, qmp: &Path) -> Vec<String> {
    let mut argv: Vec<String> = vec![program.display().to_string()];
    let mut push = |args: &[&str]| argv.extend(args.iter().map(|a| (*a).to_owned()));
    push(&[
        "-enable-kvm",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&["-serial", "none", "-monitor", "none", "-parallel", "none"]);
    let name = match (&spec.name, spec.debug_threads) {
        (Some(name), true) => Some(format!("{name},debug-threads=on")),
        (Some(name), false) => Some(name.clone()),
        (None, true) => Some("debug-threads=on".to_owned()),
        (None, false) => None,
    };
    if let Some(name) = name {
        argv.extend(["-name".to_owned(), name]);
    }
    if let Some(uuid) = &spec.uuid {
        argv.extend(["-uuid".to_owned(), uuid.clone()]);
    }
    argv.extend([
        "-m".to_owned(),
        spec.memory_mib.to_string(),
        "-smp".to_owned(),
        spec.vcpus.to_string(),
        "-qmp".to_owned(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ]);
    match boot {
        Boot::Bios(image) => argv.extend(["-bios".to_owned(), image.display().to_string()]),
        Boot::Disk(image) => argv.extend(spec.disk.qemu_args(&image.display().to_string())),
    }
    argv.extend(spec.extra_args.iter().cloned());
    argv
}

/// The full argv (program first) of a mini VMM guest.
pub(crate) fn minivmm(spec: &GuestSpec, program: &Path, ready_file: &Path) -> Vec<String> {
    let mut argv = vec![
        program.display().to_string(),
        "--vcpus".to_owned(),
        spec.vcpus.to_string(),
        "--memory-mib".to_owned(),
        spec.memory_mib.to_string(),
    ];
    if let Some(name) = &spec.name {
        argv.extend(["--name".to_owned(), name.clone()]);
    }
    argv.extend(["--ready-file".to_owned(), ready_file.display().to_string()]);
    argv.extend(spec.extra_args.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestKind;

    #[test]
    fn port_io_command_line() {
        let spec = GuestSpec::new(GuestKind::PortIo)
            .name("vm-a")
            .debug_threads(true)
            .vcpus(2)
            .uuid("6a1f2a3c-1111-2222-3333-444455556666")
            .extra_args(["-cpu", "qemu64"]);
        let argv = qemu(
            &spec,
            Path::new("/usr/bin/qemu-system-x86_64"),
            &Boot::Bios(Path::new("/c/portio.bin")),
            Path::new("/g/qmp.sock"),
        )
        .join(" ");
        assert_eq!(
            argv,
            "/usr/bin/qemu-system-x86_64 -enable-kvm -nodefaults -display none -no-reboot \
             -serial none -monitor none -parallel none -name vm-a,debug-threads=on \
             -uuid 6a1f2a3c-1111-2222-3333-444455556666 -m 32 -smp 2 \
             -qmp unix:/g/qmp.sock,server=on,wait=off -bios /c/portio.bin -cpu qemu64"
        );
    }

    #[test]
    fn debug_threads_without_a_name() {
        let spec = GuestSpec::new(GuestKind::Idle).debug_threads(true);
        let argv = qemu(
            &spec,
            Path::new("qemu"),
            &Boot::Disk(Path::new("/g/disk.img")),
            Path::new("/g/qmp.sock"),
        );
        let name = argv.iter().position(|a| a == "-name").unwrap();
        assert_eq!(argv[name + 1], "debug-threads=on");
        assert!(
            argv.contains(&"file=/g/disk.img,format=raw,cache=none,aio=native,if=virtio".into())
        );
    }

    #[test]
    fn minivmm_command_line() {
        let spec = GuestSpec::new(GuestKind::MiniVmm).name("mv").vcpus(3);
        assert_eq!(
            minivmm(&spec, Path::new("/t/minivmm"), Path::new("/g/ready")).join(" "),
            "/t/minivmm --vcpus 3 --memory-mib 32 --name mv --ready-file /g/ready"
        );
    }

    #[test]
    fn magic_matches_the_assembly() {
        assert_eq!(MAGIC, 0x544d_564b);
        assert!(include_str!("../asm/idle.S").contains("0x544d564b"));
        assert!(include_str!("../asm/diskreader.S").contains("0x544d564b"));
    }
}
