//! Guest-visible disks: each `-device` resolved through its `-drive` or `-blockdev` chain,
//! with QEMU's defaults applied.

use serde::Serialize;

use super::QemuCommandLine;
use super::block::{AioMode, BlockChild, BlockDev, CacheMode, Drive};

/// A disk as the guest sees it, resolved through `-device` → `-drive`/`-blockdev` chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// The device id (libvirt's alias, e.g. `virtio-disk0`), or the drive id for a `-drive`
    /// with an implied device.
    pub id: Option<String>,
    /// The `-device` driver (`virtio-blk-pci`, `scsi-hd`, …); `None` for `-drive if=…`.
    pub frontend: Option<String>,
    /// `virtio`, `scsi`, `ide`, `usb`, `nvme`, `floppy`, or the device driver when unknown.
    pub interface: String,
    pub bus: Option<String>,
    /// The drive id or block node the device points at.
    pub node: Option<String>,
    /// Image path or device node of the bottom (protocol) layer.
    pub file: Option<String>,
    /// Image format (`qcow2`, `raw`, …).
    pub format: Option<String>,
    /// Driver of the bottom layer (`file`, `host_device`, `rbd`, …), for `-blockdev`.
    pub protocol: Option<String>,
    /// Effective cache mode, QEMU defaults applied.
    pub cache: CacheMode,
    /// Effective AIO mode, QEMU defaults applied.
    pub aio: AioMode,
    pub read_only: bool,
    pub cdrom: bool,
    pub iothread: Option<String>,
    /// The device names a drive or node that is not on the command line.
    pub unresolved: bool,
}

impl Disk {
    /// A disk with QEMU's defaults (cache=writeback, aio=threads), before its drive or block
    /// chain fills in the rest.
    fn with_defaults(id: Option<String>, interface: String) -> Self {
        Self {
            id,
            frontend: None,
            interface,
            bus: None,
            node: None,
            file: None,
            format: None,
            protocol: None,
            cache: CacheMode::Writeback,
            aio: AioMode::Threads,
            read_only: false,
            cdrom: false,
            iothread: None,
            unresolved: false,
        }
    }
}

/// Image format drivers; everything else in a chain is a protocol or filter layer.
const FORMAT_DRIVERS: &[&str] = &[
    "raw",
    "qcow2",
    "qcow",
    "qed",
    "vmdk",
    "vdi",
    "vhdx",
    "vpc",
    "luks",
    "parallels",
    "bochs",
    "cloop",
    "dmg",
];
/// Deep enough for format → filters → protocol; a cycle in garbage input stops here.
const MAX_CHAIN: usize = 16;

fn interface_of(driver: &str) -> String {
    let iface = if driver.starts_with("virtio-blk") || driver.starts_with("vhost-user-blk") {
        "virtio"
    } else if driver.starts_with("scsi-") {
        "scsi"
    } else if driver.starts_with("ide-") {
        "ide"
    } else if driver.starts_with("usb-storage") || driver == "usb-bot" || driver == "usb-uas" {
        "usb"
    } else if driver.starts_with("nvme") {
        "nvme"
    } else if driver == "floppy" {
        "floppy"
    } else {
        driver
    };
    iface.to_owned()
}

impl QemuCommandLine {
    fn find_drive(&self, node: &str) -> Option<&Drive> {
        self.drives
            .iter()
            .rev()
            .find(|d| d.id.as_deref() == Some(node) || d.node_name.as_deref() == Some(node))
    }

    fn find_blockdev(&self, node: &str) -> Option<&BlockDev> {
        self.blockdevs
            .iter()
            .rev()
            .find(|b| b.node_name.as_deref() == Some(node))
    }

    /// The node and the nodes below it through `file` children, top first.
    #[must_use]
    pub fn blockdev_chain(&self, node: &str) -> Vec<&BlockDev> {
        let mut chain = Vec::new();
        let mut next = self.find_blockdev(node);
        while let Some(dev) = next {
            if chain.len() == MAX_CHAIN {
                break;
            }
            chain.push(dev);
            next = match &dev.file {
                Some(BlockChild::Ref(name)) => self.find_blockdev(name),
                Some(BlockChild::Inline(child)) => Some(child),
                None => None,
            };
        }
        chain
    }

    /// Every guest-visible disk, in command-line order: `-device`s with a `drive` property,
    /// then `-drive`s whose `if=` creates a device by itself.
    #[must_use]
    pub fn disks(&self) -> Vec<Disk> {
        let mut disks = Vec::new();
        for dev in &self.devices {
            let Some(node) = dev.drive.as_deref() else {
                continue;
            };
            let iothread = dev.iothread.clone().or_else(|| {
                dev.props
                    .get("iothread-vq-mapping.0.iothread")
                    .map(str::to_owned)
            });
            let mut disk = Disk {
                frontend: Some(dev.driver.clone()),
                bus: dev.bus.clone(),
                node: Some(node.to_owned()),
                cdrom: dev.driver.ends_with("-cd"),
                iothread,
                ..Disk::with_defaults(dev.id.clone(), interface_of(&dev.driver))
            };
            let write_cache = dev.props.get_bool("write-cache");
            if let Some(drive) = self.find_drive(node) {
                fill_from_drive(&mut disk, drive, write_cache);
            } else {
                let chain = self.blockdev_chain(node);
                if chain.is_empty() {
                    disk.unresolved = true;
                } else {
                    fill_from_chain(&mut disk, &chain, write_cache);
                }
            }
            disks.push(disk);
        }
        for drive in &self.drives {
            let interface = drive.interface.as_deref().unwrap_or("ide");
            // A drive a -device claims is that device's disk, already listed.
            let claimed = self.devices.iter().any(|dev| {
                dev.drive.is_some() && (dev.drive == drive.id || dev.drive == drive.node_name)
            });
            if claimed || matches!(interface, "none" | "pflash" | "mtd") {
                continue;
            }
            let mut disk = Disk {
                node: drive.id.clone(),
                ..Disk::with_defaults(drive.id.clone(), interface.to_owned())
            };
            fill_from_drive(&mut disk, drive, None);
            disks.push(disk);
        }
        disks
    }
}

fn fill_from_drive(disk: &mut Disk, drive: &Drive, write_cache: Option<bool>) {
    let mode = drive
        .cache
        .as_deref()
        .and_then(CacheMode::parse)
        .unwrap_or(CacheMode::Writeback);
    let (mut writeback, mut direct, mut no_flush) = mode.flags();
    // -drive also takes the flags one by one; they override the named mode.
    if let Some(v) = drive.props.get_bool("cache.writeback") {
        writeback = v;
    }
    if let Some(v) = drive.props.get_bool("cache.direct") {
        direct = v;
    }
    if let Some(v) = drive.props.get_bool("cache.no-flush") {
        no_flush = v;
    }
    disk.cache = CacheMode::from_flags(write_cache.unwrap_or(writeback), direct, no_flush);
    disk.aio = drive
        .aio
        .as_deref()
        .map_or(AioMode::Threads, AioMode::parse);
    disk.file.clone_from(&drive.file);
    disk.format.clone_from(&drive.format);
    disk.read_only = drive.read_only.unwrap_or(false);
    disk.cdrom |= drive.media.as_deref() == Some("cdrom");
}

fn fill_from_chain(disk: &mut Disk, chain: &[&BlockDev], write_cache: Option<bool>) {
    let direct = chain.iter().find_map(|b| b.cache_direct).unwrap_or(false);
    let no_flush = chain.iter().find_map(|b| b.cache_no_flush).unwrap_or(false);
    // write-cache=auto (unset) means on for -blockdev.
    disk.cache = CacheMode::from_flags(write_cache.unwrap_or(true), direct, no_flush);
    disk.aio = chain
        .iter()
        .find_map(|b| b.aio.as_deref())
        .map_or(AioMode::Threads, AioMode::parse);
    disk.format = chain
        .iter()
        .filter_map(|b| b.driver.as_deref())
        .find(|d| FORMAT_DRIVERS.contains(d))
        .map(str::to_owned);
    if let Some(bottom) = chain.last() {
        if !bottom
            .driver
            .as_deref()
            .is_some_and(|d| FORMAT_DRIVERS.contains(&d))
        {
            disk.protocol.clone_from(&bottom.driver);
        }
        disk.file.clone_from(&bottom.filename);
    }
    disk.read_only = chain[0].read_only.unwrap_or(false);
}
