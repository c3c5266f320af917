//! Writes the seed corpora of the fuzz targets (`fuzz/seeds/TARGET/`) from the fixtures the unit
//! tests use, so the fuzzer starts from real inputs. Run it when a fixture or an input format
//! changes:
//!
//! ```text
//! cargo test -p monitor --lib -- --ignored --exact testing::fuzz_seeds::write_fuzz_seeds
//! ```
//!
//! Tree inputs (`proc_tree`, `sysfs_topology`) use the record format documented in
//! `fuzz/src/lib.rs`, written here by [`encode_tree`].

use std::{
    fs,
    path::{Path, PathBuf},
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn seeds(target: &str) -> PathBuf {
    let dir = workspace().join("fuzz/seeds").join(target);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file and symbolic link under `root`, as tree records (paths relative to `root`).
fn encode_tree(root: &Path) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                entries.push((true, relative, target.to_str().unwrap().as_bytes().to_vec()));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                entries.push((false, relative, fs::read(&path).unwrap()));
            }
        }
    }
    entries.sort();
    let mut out = Vec::new();
    for (link, path, content) in entries {
        out.push(u8::from(link));
        out.extend_from_slice(&u16::try_from(path.len()).unwrap().to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&u32::try_from(content.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&content);
    }
    out
}

fn qemu_cmdline() {
    let dir = seeds("qemu_cmdline");
    let fixtures = workspace().join("monitor/tests/fixtures/qemu");
    for entry in fs::read_dir(&fixtures).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let extension = Path::new(&name).extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("args" | "cmdline")) {
            continue;
        }
        let args = crate::discovery::qemu::tests::fixture_args(&name);
        fs::write(dir.join(&name), args.join(&0u8)).unwrap();
    }
}

fn numa_memory() {
    let dir = seeds("numa_memory");
    let fixtures = workspace().join("monitor/tests/fixtures/numa");
    for entry in fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "numa_maps") {
            let mut seed = fs::read(&path).unwrap();
            seed.push(0);
            seed.extend(fs::read(path.with_extension("smaps_rollup")).unwrap_or_default());
            fs::write(dir.join(path.file_stem().unwrap()), seed).unwrap();
        }
    }
}

fn sysfs_topology() {
    let dir = seeds("sysfs_topology");
    let fixtures = workspace().join("monitor/tests/fixtures/topology");
    for entry in fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_owned();
            fs::write(dir.join(name), encode_tree(&path)).unwrap();
        }
    }
}

/// The format files of every event kvmtop hooks, from this host's tracefs (a seed is a real
/// kernel's file; hosts without some events give fewer seeds).
fn tracefs_format() {
    let dir = seeds("tracefs_format");
    let tracefs = Path::new("/sys/kernel/tracing/events");
    for event in [
        "kvm/kvm_exit",
        "kvm/kvm_entry",
        "kvm/kvm_userspace_exit",
        "kvm/kvm_pio",
        "kvm/kvm_mmio",
        "kvm/kvm_msr",
        "kvm/kvm_page_fault",
        "kvm/kvm_hypercall",
        "kvm/kvm_vcpu_wakeup",
        "kvm/kvm_pv_tlb_flush",
        "sched/sched_switch",
        "sched/sched_wakeup",
        "sched/sched_move_numa",
        "sched/sched_swap_numa",
        "sched/sched_stick_numa",
        "tlb/tlb_flush",
        "block/block_io_start",
        "block/block_rq_issue",
        "block/block_rq_complete",
        "kvm/kvm_fpu",
    ] {
        if let Ok(text) = fs::read(tracefs.join(event).join("format")) {
            fs::write(dir.join(event.replace('/', "-")), text).unwrap();
        }
    }
}

fn advice_toml() {
    let dir = seeds("advice_toml");
    let fixtures = workspace().join("monitor/tests/fixtures/advice");
    let mut n = 0;
    let mut stack = vec![fixtures];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                n += 1;
                fs::write(
                    dir.join(format!("fixture-{n}.toml")),
                    fs::read(&path).unwrap(),
                )
                .unwrap();
            }
        }
    }
    // Every key with its default value, as `kvmtop explain --thresholds` documents them.
    let defaults = crate::advice::Thresholds::default_toml();
    fs::write(dir.join("defaults.toml"), defaults).unwrap();
}

/// A QEMU with two vCPUs and an I/O thread, as its procfs showed it (the contents the discovery
/// tests use), plus the per-process files the host readers take, and a process that is no VMM.
#[expect(
    clippy::too_many_lines,
    reason = "one literal procfs tree, easier to read whole"
)]
fn proc_tree() {
    let dir = seeds("proc_tree");
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    let write = |path: &str, contents: &[u8]| {
        let path = p.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    };
    let link = |path: &str, target: &str| {
        let path = p.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    };
    let stat = |pid: u32, comm: &str, flags: u32| {
        format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0 0\n")
    };
    write(
        "4242/stat",
        stat(4242, "qemu-system-x86", 0x0840_0180).as_bytes(),
    );
    let cmdline = [
        "/usr/bin/qemu-system-x86_64",
        "-name",
        "guest=web-1,debug-threads=on",
        "-uuid",
        "c7a5fdbd-cdaf-9455-926a-d65c16db1809",
        "-machine",
        "q35,accel=kvm",
        "-smp",
        "2",
        "-m",
        "4096",
        "-drive",
        "file=/var/lib/libvirt/images/web-1.qcow2,if=virtio,cache=none,aio=native",
        "-device",
        r#"{"driver":"virtio-net-pci","netdev":"n0","id":"net0"}"#,
    ];
    write(
        "4242/cmdline",
        format!("{}\0", cmdline.join("\0")).as_bytes(),
    );
    write("4242/comm", b"qemu-system-x86\n");
    write(
        "4242/status",
        b"Name:\tqemu-system-x86\nTgid:\t4242\nPid:\t4242\nPPid:\t1\nCpus_allowed_list:\t0-1\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t10\n",
    );
    link("4242/exe", "/usr/bin/qemu-system-x86_64");
    link("4242/fd/3", "/dev/kvm");
    link("4242/fd/8", "anon_inode:kvm-vm");
    link("4242/fd/9", "anon_inode:kvm-vcpu:0");
    link("4242/fd/11", "anon_inode:kvm-vcpu:1");
    let kvm_run = "16 0x9 0xae80 0x0 0x0 0x55e80c909290 0xff 0x7f24aa33a530 0x7f24ab8e5d6b\n";
    for (tid, comm, flags, syscall) in [
        (
            4242,
            "qemu-system-x86",
            0x0840_0180,
            "271 0x564ae6749400 0x4 0x7fff08b271c0 0x0 0x8 0x0 0x7fff08b271a0 0x7f4a900ed366\n",
        ),
        (4250, "CPU 0/KVM", 0x0840_00c0, kvm_run),
        (
            4251,
            "CPU 1/KVM",
            0x0840_00c0,
            "16 0xb 0xae80 0x0 0x0 0x55e80c909290 0xff 0x7f24aa33a530 0x7f24ab8e5d6b\n",
        ),
        (
            4252,
            "IO iothread1",
            0x0840_0040,
            "202 0x564ae4c0a7a8 0x0 0xffffffff 0x0 0x0 0x0 0x7f4a8f3fe668 0x7f4a900f2829\n",
        ),
    ] {
        write(
            &format!("4242/task/{tid}/stat"),
            stat(tid, comm, flags).as_bytes(),
        );
        write(
            &format!("4242/task/{tid}/comm"),
            format!("{comm}\n").as_bytes(),
        );
        write(&format!("4242/task/{tid}/syscall"), syscall.as_bytes());
        write(
            &format!("4242/task/{tid}/schedstat"),
            b"123456789 2345678 900\n",
        );
        write(
            &format!("4242/task/{tid}/status"),
            format!("Name:\t{comm}\nTgid:\t4242\nPid:\t{tid}\nCpus_allowed_list:\t0-1\n")
                .as_bytes(),
        );
        // The two-node fixture's sched files (with NUMA balancing lines); its iothread is 4260.
        let sched = workspace()
            .join("monitor/tests/fixtures/numa/sched/two-node/4242/task")
            .join(if tid == 4252 { 4260 } else { tid }.to_string())
            .join("sched");
        write(&format!("4242/task/{tid}/sched"), &fs::read(sched).unwrap());
    }
    let numa = workspace().join("monitor/tests/fixtures/numa");
    write(
        "4242/numa_maps",
        &fs::read(numa.join("dual-node-thp.numa_maps")).unwrap(),
    );
    write(
        "4242/smaps_rollup",
        &fs::read(numa.join("dual-node-thp.smaps_rollup")).unwrap(),
    );
    write(
        "4242/mountinfo",
        b"25 1 0:22 / /dev/hugepages rw,relatime shared:13 - hugetlbfs hugetlbfs rw,pagesize=2M\n",
    );
    write("77/stat", stat(77, "sshd", 0x0040_0100).as_bytes());
    write("77/cmdline", b"sshd: /usr/sbin/sshd -D\0");
    link("77/fd/0", "/dev/null");
    write(
        "stat",
        b"cpu  10 0 20 300 4 0 1 0 0 0\ncpu0 5 0 10 150 2 0 1 0 0 0\n",
    );
    write("uptime", b"12345.67 23456.78\n");
    write("sys/kernel/hostname", b"hv1\n");
    write("sys/kernel/osrelease", b"6.18.0\n");
    fs::write(dir.join("qemu-two-vcpus"), encode_tree(p)).unwrap();
}

/// Pieces of a recording (see `fuzz/fuzz_targets/recording_replay.rs`): the fixture's window,
/// the same window a second later with a hostile VM name, and events with hostile texts.
fn recording_replay() {
    use crate::{
        model::Untrusted,
        recording::{events::Event, frames},
    };
    // Even picks a window, odd an event; never 0, which separates the pieces.
    const WINDOW: u8 = 2;
    const EVENT: u8 = 1;
    let hostile = Untrusted::new("evil\u{1b}]0;owned\u{7}\u{202e}vm");
    let first = crate::testing::fixture::snapshot();
    let mut second = first.clone();
    second.window.start_unix_seconds += second.window.duration_seconds;
    if let Some(vm) = second.vms.first_mut() {
        vm.name = hostile.clone();
    }
    let pieces = [
        (WINDOW, frames::encode_window(&first)),
        (
            EVENT,
            frames::encode_event(&Event::Mark {
                text: hostile.clone(),
            }),
        ),
        (WINDOW, frames::encode_window(&second)),
        (
            EVENT,
            frames::encode_event(&Event::VmStarted {
                pid: 4242,
                start_time: 1,
                name: hostile,
            }),
        ),
    ];
    let mut input = Vec::new();
    for (kind, payload) in pieces {
        if !input.is_empty() {
            input.push(0);
        }
        input.push(kind);
        input.extend_from_slice(&payload);
    }
    fs::write(
        seeds("recording_replay").join("two-windows-hostile-names"),
        input,
    )
    .unwrap();
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand when fixtures or input formats change"]
fn write_fuzz_seeds() {
    recording_replay();
    qemu_cmdline();
    numa_memory();
    sysfs_topology();
    tracefs_format();
    advice_toml();
    proc_tree();
    kernel_btf();
}

/// The unit tests' hand-built BTF (typedefs, qualifiers, an anonymous union, a bit field, enums,
/// a tracepoint typedef), whole and cut after its types.
fn kernel_btf() {
    let dir = seeds("kernel_btf");
    let whole = crate::host::btf::tests::synthetic();
    fs::write(dir.join("synthetic"), &whole).unwrap();
    fs::write(dir.join("without-strings"), &whole[..whole.len() / 2]).unwrap();
}
