use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// What a guest does, and so which signal it produces on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// QEMU with a 64 KiB `-bios` that loops on `out 0x80, al`: ~10^5 `kvm_userspace_exit`
    /// (reason IO) per second from vCPU 0. Other vCPUs stay parked waiting for a SIPI.
    PortIo,
    /// QEMU + `SeaBIOS` booting a sector that loops on `sti; hlt`: the vCPU sleeps in the kernel and
    /// `kvm_vcpu_wakeup` fires with the BIOS timer tick (~18/s); almost no userspace exits.
    Idle,
    /// QEMU + `SeaBIOS` booting a sector that reads the disk forever with INT 13h AH=42h: thousands
    /// of block requests per second from QEMU's threads (with `cache=none`), plus IO/MMIO exits.
    DiskReader,
    /// The crate's own `minivmm` binary: N vCPU threads named `vcpuN`, each looping on port I/O.
    MiniVmm,
}

impl GuestKind {
    pub const ALL: [Self; 4] = [Self::PortIo, Self::Idle, Self::DiskReader, Self::MiniVmm];

    pub(crate) fn uses_qemu(self) -> bool {
        self != Self::MiniVmm
    }

    pub(crate) fn boots_from_disk(self) -> bool {
        matches!(self, Self::Idle | Self::DiskReader)
    }
}

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PortIo => "port-io",
            Self::Idle => "idle",
            Self::DiskReader => "disk-reader",
            Self::MiniVmm => "minivmm",
        })
    }
}

/// How the boot disk is attached to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskInterface {
    /// `-drive …,if=virtio` (virtio-blk).
    Virtio,
    /// `-drive …,if=ide` (the PIIX IDE controller of the `pc` machine).
    Ide,
    /// A `virtio-scsi-pci` controller with a `scsi-hd` on it. QEMU 7.2's `pc` machine rejects
    /// `-drive if=scsi`, and virtio-scsi is what libvirt and `OpenStack` use for SCSI anyway.
    Scsi,
}

/// The `cache=` option of `-drive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskCache {
    /// `cache=none`: `O_DIRECT`, every guest read reaches the host block device.
    None,
    /// `cache=writeback`: through the host page cache, so repeated reads stop being block I/O.
    Writeback,
    Writethrough,
    Directsync,
    Unsafe,
}

impl DiskCache {
    /// Whether QEMU opens the image with `O_DIRECT`, which `aio=native` requires.
    #[must_use]
    pub fn is_direct(self) -> bool {
        matches!(self, Self::None | Self::Directsync)
    }

    fn as_qemu(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Writeback => "writeback",
            Self::Writethrough => "writethrough",
            Self::Directsync => "directsync",
            Self::Unsafe => "unsafe",
        }
    }
}

/// The `aio=` option of `-drive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskAio {
    /// Linux native AIO (`io_submit`); QEMU refuses it unless the cache mode is direct.
    Native,
    /// A pool of worker threads doing `preadv`.
    Threads,
    IoUring,
}

impl DiskAio {
    fn as_qemu(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Threads => "threads",
            Self::IoUring => "io_uring",
        }
    }
}

/// Disk attachment for the boot-sector guests ([`GuestKind::Idle`], [`GuestKind::DiskReader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskOptions {
    pub interface: DiskInterface,
    pub cache: DiskCache,
    /// `None` picks `native` when the cache mode is direct and `threads` otherwise, since QEMU
    /// refuses `aio=native` without `O_DIRECT`.
    pub aio: Option<DiskAio>,
}

impl Default for DiskOptions {
    /// `if=virtio,cache=none,aio=native`: the configuration tuning guides recommend.
    fn default() -> Self {
        Self {
            interface: DiskInterface::Virtio,
            cache: DiskCache::None,
            aio: None,
        }
    }
}

impl DiskOptions {
    /// The `aio=` value QEMU will be given.
    #[must_use]
    pub fn effective_aio(self) -> DiskAio {
        self.aio.unwrap_or(if self.cache.is_direct() {
            DiskAio::Native
        } else {
            DiskAio::Threads
        })
    }

    /// QEMU arguments attaching `image` as the guest's only disk.
    pub(crate) fn qemu_args(self, image: &str) -> Vec<String> {
        let backend = format!(
            "file={},format=raw,cache={},aio={}",
            escape_option_value(image),
            self.cache.as_qemu(),
            self.effective_aio().as_qemu()
        );
        match self.interface {
            DiskInterface::Virtio => vec!["-drive".into(), format!("{backend},if=virtio")],
            DiskInterface::Ide => vec!["-drive".into(), format!("{backend},if=ide")],
            DiskInterface::Scsi => vec![
                "-device".into(),
                "virtio-scsi-pci,id=scsi0".into(),
                "-drive".into(),
                format!("{backend},if=none,id=disk0"),
                "-device".into(),
                "scsi-hd,drive=disk0,bus=scsi0.0".into(),
            ],
        }
    }
}

/// QEMU option strings separate keys with commas; a literal comma is written twice.
fn escape_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// Everything needed to start one guest. Build it with [`GuestSpec::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    pub(crate) kind: GuestKind,
    pub(crate) name: Option<String>,
    pub(crate) debug_threads: bool,
    pub(crate) vcpus: u32,
    pub(crate) memory_mib: u32,
    pub(crate) disk: DiskOptions,
    pub(crate) uuid: Option<String>,
    pub(crate) extra_args: Vec<String>,
    pub(crate) work_dir: Option<PathBuf>,
    pub(crate) pid: Option<u32>,
    pub(crate) nice: Option<i32>,
}

impl GuestSpec {
    /// One vCPU, 32 MiB, no name, default disk options.
    #[must_use]
    pub fn new(kind: GuestKind) -> Self {
        Self {
            kind,
            name: None,
            debug_threads: false,
            vcpus: 1,
            memory_mib: 32,
            disk: DiskOptions::default(),
            uuid: None,
            extra_args: Vec::new(),
            work_dir: None,
            pid: None,
            nice: None,
        }
    }

    /// `-name NAME` for QEMU; `--name NAME` for the mini VMM.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds `debug-threads=on` to `-name`, so QEMU names its vCPU threads `CPU n/KVM`
    /// (libvirt always does this). Without it every QEMU thread is called `qemu-system-x86`.
    #[must_use]
    pub fn debug_threads(mut self, on: bool) -> Self {
        self.debug_threads = on;
        self
    }

    /// Number of vCPUs (`-smp`); at least 1.
    #[must_use]
    pub fn vcpus(mut self, vcpus: u32) -> Self {
        self.vcpus = vcpus;
        self
    }

    /// Guest memory in MiB (`-m`).
    #[must_use]
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// How the boot disk of [`GuestKind::Idle`] and [`GuestKind::DiskReader`] is attached.
    #[must_use]
    pub fn disk(mut self, disk: DiskOptions) -> Self {
        self.disk = disk;
        self
    }

    /// `-uuid UUID` for QEMU.
    #[must_use]
    pub fn uuid(mut self, uuid: impl Into<String>) -> Self {
        self.uuid = Some(uuid.into());
        self
    }

    /// Appended verbatim to the VMM's command line.
    #[must_use]
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Where the assembled images are cached and each guest's private directory (disk image,
    /// QMP socket, stderr log) is created. The default is `/var/tmp` (falling back to the system
    /// temp dir) because `/tmp` is a tmpfs on many systems, and a disk image on tmpfs produces no
    /// block requests at all.
    #[must_use]
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Asks for this pid: the kernel's last allocated pid (`/proc/sys/kernel/ns_last_pid`) is
    /// set to `pid - 1` just before the VMM is forked, so the fork gets `pid` if it is free and
    /// nothing else forks in between. Not a promise: compare [`crate::Guest::pid`]. Needs
    /// `CAP_SYS_ADMIN` (root); tests use it to make a new VM reuse an exited VM's pid, as
    /// happens by itself on a busy host once pids wrap.
    #[must_use]
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// The VMM's nice value (-20 to 19), set before it execs, so every thread it starts has it.
    #[must_use]
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = Some(nice);
        self
    }

    #[must_use]
    pub fn kind(&self) -> GuestKind {
        self.kind
    }

    #[must_use]
    pub fn vcpu_count(&self) -> u32 {
        self.vcpus
    }

    pub(crate) fn resolved_work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| {
            let var_tmp = PathBuf::from("/var/tmp");
            if var_tmp.is_dir() {
                var_tmp
            } else {
                std::env::temp_dir()
            }
        })
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.vcpus == 0 {
            return Err(Error::InvalidSpec("vcpus must be at least 1".into()));
        }
        if self.memory_mib == 0 {
            return Err(Error::InvalidSpec("memory_mib must be at least 1".into()));
        }
        if self.pid.is_some_and(|pid| pid < 2) {
            return Err(Error::InvalidSpec(
                "pid must be at least 2 (1 is init's)".into(),
            ));
        }
        if let Some(nice) = self.nice
            && !(-20..=19).contains(&nice)
        {
            return Err(Error::InvalidSpec(format!(
                "nice {nice} is outside -20..=19"
            )));
        }
        if let Some(name) = &self.name
            && (name.is_empty() || name.contains(','))
        {
            return Err(Error::InvalidSpec(format!(
                "name \"{name}\" must be non-empty and contain no comma"
            )));
        }
        let disk = &self.disk;
        if self.kind.boots_from_disk()
            && disk.effective_aio() == DiskAio::Native
            && !disk.cache.is_direct()
        {
            return Err(Error::InvalidSpec(format!(
                "aio=native needs cache=none or cache=directsync (QEMU refuses it with cache={})",
                disk.cache.as_qemu()
            )));
        }
        if self.kind == GuestKind::MiniVmm {
            let qemu_only = [
                (self.debug_threads, "debug_threads"),
                (self.uuid.is_some(), "uuid"),
                (self.disk != DiskOptions::default(), "disk"),
            ];
            if let Some((_, option)) = qemu_only.iter().find(|(set, _)| *set) {
                return Err(Error::InvalidSpec(format!(
                    "\"{option}\" is a QEMU option; the mini VMM has no equivalent"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_disk_is_virtio_direct_native() {
        let args = DiskOptions::default().qemu_args("/d/disk.img");
        assert_eq!(
            args,
            [
                "-drive",
                "file=/d/disk.img,format=raw,cache=none,aio=native,if=virtio"
            ]
        );
    }

    #[test]
    fn writeback_defaults_to_threads() {
        let disk = DiskOptions {
            interface: DiskInterface::Ide,
            cache: DiskCache::Writeback,
            aio: None,
        };
        assert_eq!(disk.effective_aio(), DiskAio::Threads);
        assert_eq!(
            disk.qemu_args("/d/x,y.img")[1],
            "file=/d/x,,y.img,format=raw,cache=writeback,aio=threads,if=ide"
        );
    }

    #[test]
    fn scsi_uses_a_virtio_scsi_controller() {
        let disk = DiskOptions {
            interface: DiskInterface::Scsi,
            ..DiskOptions::default()
        };
        let args = disk.qemu_args("/d.img").join(" ");
        assert!(args.contains("-device virtio-scsi-pci,id=scsi0"), "{args}");
        assert!(args.contains("if=none,id=disk0"), "{args}");
        assert!(
            args.contains("-device scsi-hd,drive=disk0,bus=scsi0.0"),
            "{args}"
        );
    }

    #[test]
    fn native_aio_without_direct_cache_is_rejected_before_qemu_runs() {
        let spec = GuestSpec::new(GuestKind::DiskReader).disk(DiskOptions {
            interface: DiskInterface::Ide,
            cache: DiskCache::Writeback,
            aio: Some(DiskAio::Native),
        });
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("aio=native needs cache=none"), "{err}");
    }

    #[test]
    fn qemu_only_options_are_rejected_for_the_mini_vmm() {
        let spec = GuestSpec::new(GuestKind::MiniVmm).uuid("00000000-0000-0000-0000-000000000001");
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("\"uuid\""), "{err}");
        assert!(
            GuestSpec::new(GuestKind::MiniVmm)
                .name("vm1")
                .vcpus(3)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn zero_vcpus_and_bad_names_are_rejected() {
        assert!(
            GuestSpec::new(GuestKind::PortIo)
                .vcpus(0)
                .validate()
                .is_err()
        );
        assert!(
            GuestSpec::new(GuestKind::PortIo)
                .name("a,b")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn pids_below_two_and_nice_values_out_of_range_are_rejected() {
        let spec = || GuestSpec::new(GuestKind::MiniVmm);
        assert!(spec().pid(1).validate().is_err());
        assert!(spec().nice(20).validate().is_err());
        assert!(spec().nice(-21).validate().is_err());
        assert!(spec().pid(4000).nice(19).validate().is_ok());
    }
}
