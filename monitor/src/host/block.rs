//! Host block devices: a file's device number (`stat(2)`: `st_rdev` for a device node, `st_dev`
//! for an image file) → the whole disks whose requests the block tracepoints report (partitions
//! → their disk, device-mapper and MD devices → the disks below them), and their kernel names.
//!
//! Paths are resolved in the VMM's own mount namespace (through `/proc/PID/root`), since libvirt
//! gives each QEMU a private `/dev`. Roots are injected so tests can use fixture trees.

use std::{
    collections::BTreeSet,
    fmt, fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use serde::Serialize;

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DevId {
    pub major: u32,
    pub minor: u32,
}

impl DevId {
    /// From the kernel's internal `dev_t` (major << 20 | minor), as block tracepoints report it.
    #[must_use]
    pub fn from_kernel(dev: u32) -> Self {
        let (major, minor) = monitor_common::block::dev_parts(dev);
        Self { major, minor }
    }

    /// From a `dev_t` as `stat(2)` returns it.
    #[must_use]
    pub fn from_stat(dev: u64) -> Self {
        Self {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }

    /// Parses `MAJ:MIN`, as sysfs and mountinfo write it.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for DevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// `<sysfs>/dev/block`, where every block device is listed by number.
#[derive(Clone, Debug)]
pub struct SysBlock {
    root: PathBuf,
}

/// Device-mapper over device-mapper over … : deep enough for real stacks, and a cycle in a
/// broken tree stops here.
const MAX_STACK: usize = 8;

impl SysBlock {
    #[must_use]
    pub fn new(sys_root: &Path) -> Self {
        Self {
            root: sys_root.join("dev/block"),
        }
    }

    fn dir(&self, dev: DevId) -> PathBuf {
        self.root.join(dev.to_string())
    }

    /// The kernel's name of the device (`vda`, `nvme0n1`, `loop0`), when sysfs knows it.
    #[must_use]
    pub fn name(&self, dev: DevId) -> Option<String> {
        let target = fs::read_link(self.dir(dev)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The disks whose requests carry a request on `dev`: a partition's disk, the disks below a
    /// stacked device (device-mapper, MD), or `dev` itself.
    #[must_use]
    pub fn request_devices(&self, dev: DevId) -> BTreeSet<DevId> {
        let mut found = BTreeSet::new();
        self.collect(dev, 0, &mut found);
        found
    }

    fn collect(&self, dev: DevId, depth: usize, found: &mut BTreeSet<DevId>) {
        let dir = self.dir(dev);
        if depth < MAX_STACK
            && let Ok(slaves) = fs::read_dir(dir.join("slaves"))
        {
            let below: Vec<DevId> = slaves
                .filter_map(Result::ok)
                .filter_map(|e| fs::read_to_string(e.path().join("dev")).ok())
                .filter_map(|text| DevId::parse(&text))
                .collect();
            if !below.is_empty() {
                for slave in below {
                    self.collect(slave, depth + 1, found);
                }
                return;
            }
        }
        // A partition's directory sits inside its disk's, which has the disk's number.
        let whole = dir
            .join("partition")
            .exists()
            .then(|| fs::canonicalize(&dir).ok())
            .flatten()
            .and_then(|real| fs::read_to_string(real.parent()?.join("dev")).ok())
            .and_then(|text| DevId::parse(&text));
        found.insert(whole.unwrap_or(dev));
    }
}

/// The device number behind a drive's file, seen from the VMM process `pid`.
pub fn drive_device(proc_root: &Path, pid: u32, file: &str) -> Result<DevId, String> {
    let process = proc_root.join(pid.to_string());
    let path = match file.strip_prefix('/') {
        Some(absolute) => process.join("root").join(absolute),
        None => process.join("cwd").join(file),
    };
    let meta = fs::metadata(&path).map_err(|e| format!("cannot stat \"{file}\": {e}"))?;
    if meta.file_type().is_block_device() {
        return Ok(DevId::from_stat(meta.rdev()));
    }
    let dev = DevId::from_stat(meta.dev());
    if dev.major != 0 {
        return Ok(dev);
    }
    // Btrfs, overlayfs, NFS and tmpfs give files an anonymous device; the mount's source names
    // the real one where there is one.
    mount_source(&process, dev).ok_or_else(|| {
        format!("\"{file}\" is on a filesystem without a block device of its own ({dev})")
    })
}

/// The block device a mount with the anonymous device `dev` was made from, per the VMM's
/// `mountinfo`: `36 35 0:42 / /var … - btrfs /dev/nvme0n1p2 rw`.
fn mount_source(process: &Path, dev: DevId) -> Option<DevId> {
    let mountinfo = fs::read_to_string(process.join("mountinfo")).ok()?;
    let wanted = dev.to_string();
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.nth(2)? != wanted {
            return None;
        }
        let (_, tail) = line.split_once(" - ")?;
        let source = tail.split_whitespace().nth(1)?;
        let source = source.strip_prefix('/')?;
        let meta = fs::metadata(process.join("root").join(source)).ok()?;
        meta.file_type()
            .is_block_device()
            .then(|| DevId::from_stat(meta.rdev()))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A sysfs tree: vda with partition vda1, and dm-0 on top of vda1 and sdb.
    fn sysfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let devices = dir.path().join("devices/virtual/block");
        let write = |path: PathBuf, text: &str| {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        write(devices.join("vda/dev"), "254:0\n");
        write(devices.join("vda/vda1/dev"), "254:1\n");
        write(devices.join("vda/vda1/partition"), "1\n");
        write(devices.join("sdb/dev"), "8:16\n");
        write(devices.join("dm-0/dev"), "253:0\n");
        let slaves = devices.join("dm-0/slaves");
        fs::create_dir_all(&slaves).unwrap();
        symlink(devices.join("vda/vda1"), slaves.join("vda1")).unwrap();
        symlink(devices.join("sdb"), slaves.join("sdb")).unwrap();
        let by_number = dir.path().join("dev/block");
        fs::create_dir_all(&by_number).unwrap();
        for (number, path) in [
            ("254:0", "vda"),
            ("254:1", "vda/vda1"),
            ("8:16", "sdb"),
            ("253:0", "dm-0"),
        ] {
            symlink(devices.join(path), by_number.join(number)).unwrap();
        }
        dir
    }

    fn dev(major: u32, minor: u32) -> DevId {
        DevId { major, minor }
    }

    #[test]
    fn partitions_and_stacks_resolve_to_the_disks_that_see_requests() {
        let root = sysfs();
        let sys = SysBlock::new(root.path());
        assert_eq!(sys.request_devices(dev(254, 1)), [dev(254, 0)].into());
        assert_eq!(sys.request_devices(dev(254, 0)), [dev(254, 0)].into());
        assert_eq!(
            sys.request_devices(dev(253, 0)),
            [dev(8, 16), dev(254, 0)].into()
        );
        assert_eq!(sys.name(dev(254, 1)).as_deref(), Some("vda1"));
        assert_eq!(sys.name(dev(1, 1)), None);
        // Unknown to sysfs: taken as it is.
        assert_eq!(sys.request_devices(dev(7, 3)), [dev(7, 3)].into());
    }

    #[test]
    fn a_drive_file_is_stated_inside_the_vmm_root() {
        let proc = tempfile::tempdir().unwrap();
        let root = proc.path().join("42/root");
        fs::create_dir_all(root.join("images")).unwrap();
        fs::write(root.join("images/disk.img"), b"x").unwrap();
        symlink("/", proc.path().join("42/cwd")).unwrap();
        let found = drive_device(proc.path(), 42, "/images/disk.img").unwrap();
        let expected = DevId::from_stat(fs::metadata(root.join("images/disk.img")).unwrap().dev());
        assert_eq!(found, expected);
        let err = drive_device(proc.path(), 42, "/images/missing.img").unwrap_err();
        assert!(err.contains("cannot stat \"/images/missing.img\""), "{err}");
    }

    #[test]
    fn kernel_and_stat_numbers_agree() {
        assert_eq!(DevId::from_kernel((259 << 20) | 7), dev(259, 7));
        assert_eq!(DevId::from_stat(libc::makedev(259, 7)), dev(259, 7));
        assert_eq!(DevId::parse("8:16\n"), Some(dev(8, 16)));
        assert_eq!(DevId::parse("8"), None);
    }
}
