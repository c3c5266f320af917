//! Step 5: what the running kernel must offer.

use std::path::Path;

use anyhow::{Result, bail};

use crate::util::{self, checking, ok, warn};

const TRACEFS: &str = "/sys/kernel/tracing";

pub fn ensure() -> Result<()> {
    ensure_tracefs()?;

    checking("kernel BTF (/sys/kernel/btf/vmlinux)");
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        ok("");
    } else {
        util::missing("missing");
        warn(
            "this kernel has no BTF (CONFIG_DEBUG_INFO_BTF); kvmtop's BTF-typed programs will not \
             load and it falls back to what it can attach",
        );
    }

    checking("/dev/kvm");
    if Path::new("/dev/kvm").exists() {
        ok("");
    } else {
        util::missing("missing");
        warn(
            "no /dev/kvm: tests that start guests skip (each prints why); `cargo xtask run` \
             still works but shows no VMs",
        );
    }
    Ok(())
}

/// kvmtop reads tracepoint record layouts from tracefs at start-up.
fn ensure_tracefs() -> Result<()> {
    checking(&format!("tracefs at {TRACEFS}"));
    if tracefs_mounted() {
        ok("");
        return Ok(());
    }
    util::missing("not mounted");
    println!("mounting tracefs (kvmtop reads tracepoint formats from it)…");
    let mounted =
        util::run(util::privileged("mount", &[])?.args(["-t", "tracefs", "nodev", TRACEFS]));
    if let Err(err) = mounted.and_then(|()| {
        if tracefs_mounted() {
            Ok(())
        } else {
            bail!("{TRACEFS}/events is still missing")
        }
    }) {
        bail!(
            "{err:#}\ncould not mount tracefs at {TRACEFS}; as root run `mount -t tracefs nodev \
             {TRACEFS}` (the kernel needs CONFIG_TRACING)"
        );
    }
    Ok(())
}

fn tracefs_mounted() -> bool {
    Path::new(TRACEFS).join("events").is_dir()
}
