//! `cargo xtask demo`: a few small guests, and the kvmtop TUI watching them.

use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use guests::{Guest, GuestKind};

use crate::{
    interrupt,
    setup::{self, Purpose},
    util::{self, Phase, echo, is_root},
    vm,
};

pub fn run(seconds: Option<u64>) -> Result<()> {
    setup::ensure(Purpose::Test)?;
    let binary = util::build_kvmtop_phase(true)?;

    interrupt::install();
    // Declared before kvmtop runs and dropped on every way out of this function (error,
    // Ctrl-C, kvmtop quitting), which stops the guests.
    let mut guests = Vec::new();
    let phase = Phase::start("start guests");
    let started = start_guests(&mut guests);
    phase.finish(started.is_ok());
    started?;

    println!("\nstarting kvmtop; quit it with q (the guests are stopped afterwards)");
    let mut kvmtop = kvmtop_command(&binary);
    echo(&kvmtop);
    let child = kvmtop.spawn().context("could not start kvmtop")?;
    let result = wait(child, seconds.map(Duration::from_secs));
    println!("stopping the guests…");
    drop(guests);
    result
}

/// The demo workload: a port-I/O guest, an idle one and a disk reader (the bench records them).
pub fn start_guests(guests: &mut Vec<Guest>) -> Result<()> {
    // With debug-threads QEMU names vCPU threads "CPU n/KVM"; the idle guest goes without,
    // showing how kvmtop copes with anonymous threads.
    for (kind, name, debug_threads) in [
        (GuestKind::PortIo, "demo-portio", true),
        (GuestKind::Idle, "demo-idle", false),
        (GuestKind::DiskReader, "demo-disk", true),
    ] {
        interrupt::bail_if_interrupted()?;
        println!("starting guest {name} ({kind})…");
        guests.push(vm::start(kind, name, debug_threads)?);
    }
    Ok(())
}

fn kvmtop_command(binary: &std::path::Path) -> Command {
    if is_root() {
        Command::new(binary)
    } else {
        println!("kvmtop needs root to load its eBPF programs; starting it with sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(binary);
        sudo
    }
}

/// Waits for kvmtop to exit; after `limit`, or when xtask is told to stop, asks it to quit.
fn wait(mut child: Child, limit: Option<Duration>) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("kvmtop exited with {status}");
        }
        let expired = limit.is_some_and(|limit| start.elapsed() >= limit);
        if expired || interrupt::interrupted() {
            stop(&mut child);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM lets kvmtop restore the terminal; SIGKILL only if it does not exit soon.
fn stop(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
    // SAFETY: kill has no memory-safety preconditions; the pid is our own, un-reaped child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    // A killed TUI leaves the terminal in raw mode on the alternate screen.
    let _ = Command::new("stty").arg("sane").status();
    print!("\x1b[?1049l\x1b[?25h");
}
