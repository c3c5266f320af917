//! The test guests demo and bench start, through the `guests` crate.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use guests::{Guest, GuestKind, GuestSpec};

/// How long firmware start-up may take under KVM's instruction emulator.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// Starts a guest and waits until its own code runs; dropping the result stops it.
pub fn start(kind: GuestKind, name: &str, debug_threads: bool) -> Result<Guest> {
    guests::preflight_kind(kind).map_err(|reason| {
        anyhow!("cannot start a {kind} guest here: {reason} (`cargo xtask setup` installs tools)")
    })?;
    let spec = GuestSpec::new(kind).name(name).debug_threads(debug_threads);
    let guest = Guest::start(&spec).with_context(|| format!("starting guest {name}"))?;
    let vcpus = guest
        .wait_for_vcpus(START_TIMEOUT)
        .with_context(|| format!("waiting for guest {name} to run"))?;
    let tids: Vec<String> = vcpus.iter().map(|vcpu| vcpu.tid.to_string()).collect();
    println!(
        "  {name} ({kind}): pid {}, vCPU threads {}",
        guest.pid(),
        tids.join(", ")
    );
    Ok(guest)
}
