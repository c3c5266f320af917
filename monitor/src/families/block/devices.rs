//! Which host block devices a VM's drives sit on (see [`crate::host::block`]).

use std::path::Path;

use super::DriveDevices;
use crate::{
    discovery::Vmm,
    host::block::{SysBlock, drive_device},
};

/// The drives of a QEMU process and the devices behind them; other VMMs' drives are not known.
pub(super) fn map_drives(proc_root: &Path, sys: &SysBlock, vmm: &Vmm) -> Vec<DriveDevices> {
    let Some(qemu) = &vmm.qemu else {
        return Vec::new();
    };
    qemu.disks()
        .into_iter()
        .map(|disk| {
            let local = disk
                .protocol
                .as_deref()
                .is_none_or(|p| matches!(p, "file" | "host_device" | "host_cdrom"));
            let devices = match &disk.file {
                None => Err("the drive has no file".to_owned()),
                Some(_) if !local => Err(format!(
                    "not a local file or device (protocol {})",
                    disk.protocol.as_deref().unwrap_or("?")
                )),
                Some(file) => {
                    drive_device(proc_root, vmm.id.pid, file).map(|dev| sys.request_devices(dev))
                }
            };
            DriveDevices {
                id: disk.id.clone(),
                interface: disk.interface.clone(),
                file: disk.file.clone(),
                cache: disk.cache.as_str(),
                aio: disk.aio.as_str().to_owned(),
                devices,
            }
        })
        .collect()
}

