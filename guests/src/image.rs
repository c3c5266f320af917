//! Guest images: assembled from the sources in `asm/` at run time, cached by content hash.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, GuestKind, tools};

/// One assembly source and how to link it.
struct Source {
    name: &'static str,
    text: &'static str,
    /// Load address given to `ld -Ttext`.
    link_address: &'static str,
    /// Exact size the flat binary must have.
    size: usize,
}

const PORT_IO: Source = Source {
    name: "portio",
    text: include_str!("../asm/portio.S"),
    link_address: "0",
    size: 64 * 1024,
};

const IDLE: Source = Source {
    name: "idle",
    text: include_str!("../asm/idle.S"),
    link_address: "0x7c00",
    size: 512,
};

const DISK_READER: Source = Source {
    name: "diskreader",
    text: include_str!("../asm/diskreader.S"),
    link_address: "0x7c00",
    size: 512,
};

fn source_for(kind: GuestKind) -> Option<&'static Source> {
    match kind {
        GuestKind::PortIo => Some(&PORT_IO),
        GuestKind::Idle => Some(&IDLE),
        GuestKind::DiskReader => Some(&DISK_READER),
        GuestKind::MiniVmm => None,
    }
}

/// Size of the raw disk image of the boot-sector guests. The reader walks its first 8 MiB.
pub(crate) const DISK_SIZE: usize = 16 << 20;

/// 64-bit FNV-1a: stable across Rust releases (unlike `DefaultHasher`), so the cache key of a
/// source does not change with the toolchain.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so that ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Assembles the image of a QEMU guest kind (the `-bios` firmware of [`GuestKind::PortIo`], the
/// 512-byte boot sector of the others) into `cache_dir`, or reuses an earlier build of the same
/// source, and returns its path. `Ok(None)` for [`GuestKind::MiniVmm`], which has no image.
///
/// Concurrent callers are safe: each assembles in a private directory and renames the result
/// into place.
pub fn assemble(kind: GuestKind, cache_dir: &Path) -> Result<Option<PathBuf>, Error> {
    let Some(source) = source_for(kind) else {
        return Ok(None);
    };
    let key = fnv1a(&[source.text.as_bytes(), source.link_address.as_bytes()]);
    let output = cache_dir.join(format!("{}-{key:016x}.bin", source.name));
    if fs::metadata(&output).is_ok_and(|m| m.len() == source.size as u64) {
        return Ok(Some(output));
    }
    let assembler = tools::require("as")?;
    let linker = tools::require("ld")?;
    fs::create_dir_all(cache_dir).map_err(|e| {
        Error::io(
            format!("creating image cache \"{}\"", cache_dir.display()),
            e,
        )
    })?;
    let scratch = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(cache_dir)
        .map_err(|e| {
            Error::io(
                format!("creating a directory in \"{}\"", cache_dir.display()),
                e,
            )
        })?;
    let asm_path = scratch.path().join(format!("{}.S", source.name));
    let obj_path = scratch.path().join(format!("{}.o", source.name));
    let bin_path = scratch.path().join(format!("{}.bin", source.name));
    fs::write(&asm_path, source.text)
        .map_err(|e| Error::io(format!("writing \"{}\"", asm_path.display()), e))?;

    let mut assemble = Command::new(assembler);
    assemble.arg("--32").arg("-o").arg(&obj_path).arg(&asm_path);
    run_tool(source.name, assemble)?;
    let mut link = Command::new(linker);
    link.args([
        "-m",
        "elf_i386",
        "-Ttext",
        source.link_address,
        "--oformat",
        "binary",
    ])
    .arg("-o")
    .arg(&bin_path)
    .arg(&obj_path);
    run_tool(source.name, link)?;

    let size = fs::metadata(&bin_path)
        .map_err(|e| Error::io(format!("reading \"{}\"", bin_path.display()), e))?
        .len();
    if size != source.size as u64 {
        return Err(Error::Assemble {
            source_name: source.name,
            command: "ld".into(),
            status: "succeeded".into(),
            output: format!("but produced {size} bytes instead of {}", source.size),
        });
    }
    fs::rename(&bin_path, &output)
        .map_err(|e| Error::io(format!("moving the image to \"{}\"", output.display()), e))?;
    Ok(Some(output))
}

fn run_tool(source_name: &'static str, mut command: Command) -> Result<(), Error> {
    let rendered = format!("{command:?}");
    let out = command.output().map_err(|e| Error::Assemble {
        source_name,
        command: rendered.clone(),
        status: "could not run".into(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Assemble {
        source_name,
        command: rendered,
        status: out.status.to_string(),
        output: String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned(),
    })
}

/// Writes a raw disk image: `boot_sector` at sector 0, then [`DISK_SIZE`] bytes in all.
///
/// Every byte is written (no holes): reads of a hole in a sparse file never reach the block
/// device, so a sparse image would silently produce no block I/O. Each sector carries its LBA,
/// which makes misdirected reads recognisable in a dump.
pub(crate) fn write_disk(path: &Path, boot_sector: &Path) -> Result<(), Error> {
    let context = |what: &str| format!("{what} disk image \"{}\"", path.display());
    let boot = fs::read(boot_sector).map_err(|e| {
        Error::io(
            format!("reading boot sector \"{}\"", boot_sector.display()),
            e,
        )
    })?;
    let mut data = vec![0u8; DISK_SIZE];
    for (lba, sector) in data.chunks_exact_mut(512).enumerate() {
        for (i, word) in sector.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&(((lba as u64) << 8) | i as u64).to_le_bytes());
        }
    }
    data[..boot.len()].copy_from_slice(&boot);
    let mut file = File::create(path).map_err(|e| Error::io(context("creating"), e))?;
    file.write_all(&data)
        .map_err(|e| Error::io(context("writing"), e))?;
    // Flush and evict the image from the page cache, so that even a guest using the host page
    // cache (cache=writeback) reads from the device on its first pass over the disk.
    file.sync_all()
        .map_err(|e| Error::io(context("syncing"), e))?;
    // SAFETY: plain advisory call on an open fd; it does not touch memory.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_stable() {
        // Reference value: FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; one separator round follows.
        let expected = (0xaf63_dc4c_8601_ec8c_u64 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
        assert_eq!(fnv1a(&[b"a"]), expected);
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }

    #[test]
    fn sources_are_embedded() {
        for kind in GuestKind::ALL {
            if let Some(source) = source_for(kind) {
                assert!(source.text.contains("_start"), "{}", source.name);
            }
        }
    }
}
