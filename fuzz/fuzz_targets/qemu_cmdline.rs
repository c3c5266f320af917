//! QEMU command lines, as `/proc/PID/cmdline` holds them (arguments separated by NUL bytes),
//! through the parser discovery uses: both option syntaxes (key=value and the JSON form libvirt
//! passes to `-blockdev`, `-device`, `-netdev`, `-object`), sizes, CPU lists, and the disk and NIC
//! views built on top. Nothing may panic, and what it makes must serialise.
#![no_main]

use kvmtop::discovery::qemu::QemuCommandLine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let cmdline = QemuCommandLine::parse(&args);
    let _ = cmdline.boot_cpus();
    let _ = cmdline.wants_kvm();
    for disk in cmdline.disks() {
        let _ = serde_json::to_string(&disk).expect("a disk serialises");
    }
    for nic in cmdline.nics() {
        let _ = serde_json::to_string(&nic).expect("a NIC serialises");
    }
    if let Some(uuid) = &cmdline.uuid {
        assert!(
            uuid.len() == 36 && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "a UUID kept in canonical form only: {uuid:?}"
        );
    }
    serde_json::to_string(&cmdline).expect("a command line serialises");
});
