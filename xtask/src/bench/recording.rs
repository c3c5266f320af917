//! What recording an incident costs: `kvmtop record` beside the demo guests (a port-I/O guest, an
//! idle one and a disk reader, as `cargo xtask demo` starts them) for the window.
//!
//! Bytes per VM-second are counted here, not taken from kvmtop: the recording directory's size
//! on disk over the VM-seconds its windows hold (each window's length times its VMs, read back
//! with `kvmtop replay --format json`). The recorder's CPU is kvmtop's own measurement (the
//! thread CPU time of writing each window, which no outside observer can tell apart from the
//! sampling around it), beside the whole agent's utime + stime from procfs.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::agent;
use crate::{demo, interrupt};

/// The size the recording format aims for at a 1 s interval.
pub const GOAL_BYTES_PER_VM_SECOND: f64 = 256.0;

#[derive(Debug, Serialize)]
pub struct RecordingCost {
    pub seconds: u64,
    pub windows: usize,
    pub vm_seconds: f64,
    /// The recording directory's files, as stored (compressed, with frame headers and index).
    pub bytes_on_disk: u64,
    pub bytes_per_vm_second: f64,
    pub goal_bytes_per_vm_second: f64,
    /// Writing the windows, in percent of one core, as kvmtop measured it.
    pub recorder_cpu_percent: Option<f64>,
    /// The whole agent (sampling, advice and recording), utime + stime over the run.
    pub agent_cpu_percent: f64,
    pub agent_peak_rss_kib: u64,
}

/// Starts the demo guests, records for `seconds` and measures.
pub fn run(binary: &Path, out_dir: &Path, seconds: u64) -> Result<RecordingCost> {
    let mut guests = Vec::new();
    demo::start_guests(&mut guests)?;
    let dir = out_dir.join("recording");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the last run's {}", dir.display()))?;
    }
    let started = Instant::now();
    let child = Command::new(binary)
        .arg("record")
        .arg("-o")
        .arg(&dir)
        .args(["--interval", "1", "--duration", &format!("{seconds}s")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kvmtop record")?;
    let pid = child.id();
    let mut usage = agent::Usage::default();
    let output = {
        let mut child = child;
        loop {
            if let Some(now) = agent::read(pid) {
                usage = now;
            }
            if child.try_wait()?.is_some() {
                break child.wait_with_output()?;
            }
            if interrupt::interrupted() {
                let _ = child.kill();
                bail!("interrupted");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let wall = started.elapsed().as_secs_f64();
    drop(guests);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("kvmtop record failed ({}): {stderr}", output.status);
    }
    let (windows, vm_seconds) = vm_seconds(binary, &dir)?;
    if vm_seconds <= 0.0 {
        bail!(
            "the recording in {} holds no VM-second: were the guests seen? kvmtop said: {stderr}",
            dir.display()
        );
    }
    let bytes_on_disk = directory_bytes(&dir)?;
    #[allow(clippy::cast_precision_loss)]
    let bytes_per_vm_second = bytes_on_disk as f64 / vm_seconds;
    Ok(RecordingCost {
        seconds,
        windows,
        vm_seconds,
        bytes_on_disk,
        bytes_per_vm_second,
        goal_bytes_per_vm_second: GOAL_BYTES_PER_VM_SECOND,
        recorder_cpu_percent: recorder_cpu_percent(&stderr),
        agent_cpu_percent: usage.cpu_ms / 10.0 / wall,
        agent_peak_rss_kib: usage.peak_rss_kib,
    })
}

/// The recording's windows and VM-seconds, read back as JSON Lines.
fn vm_seconds(binary: &Path, dir: &Path) -> Result<(usize, f64)> {
    let output = Command::new(binary)
        .arg("replay")
        .arg(dir)
        .args(["--format", "json"])
        .output()
        .context("running kvmtop replay")?;
    if !output.status.success() {
        bail!(
            "kvmtop replay {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut windows = 0;
    let mut vm_seconds = 0.0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let window: serde_json::Value =
            serde_json::from_str(line).context("a replayed window is not JSON")?;
        let length = window["window"]["duration_seconds"]
            .as_f64()
            .context("a replayed window without its length")?;
        let vms = window["vms"].as_array().map_or(0, Vec::len);
        windows += 1;
        #[allow(clippy::cast_precision_loss)]
        {
            vm_seconds += length * vms as f64;
        }
    }
    Ok((windows, vm_seconds))
}

fn directory_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            total += metadata.len();
        }
    }
    Ok(total)
}

/// `recording used 0.26 % of a core` from kvmtop's closing line.
fn recorder_cpu_percent(stderr: &str) -> Option<f64> {
    let line = stderr.lines().rev().find(|l| l.contains("recorded "))?;
    let (_, rest) = line.rsplit_once("recording used ")?;
    rest.split_whitespace().next()?.parse().ok()
}

pub fn print(cost: &RecordingCost) {
    println!(
        "  recording: {} windows, {:.0} VM-seconds, {} bytes on disk: {:.0} bytes per VM-second \
         (goal {:.0})",
        cost.windows,
        cost.vm_seconds,
        cost.bytes_on_disk,
        cost.bytes_per_vm_second,
        cost.goal_bytes_per_vm_second
    );
    println!(
        "  recorder CPU: {} of a core (kvmtop's own measure); the whole agent {:.2} % of a core, \
         peak RSS {} KiB",
        cost.recorder_cpu_percent
            .map_or_else(|| "unknown".to_owned(), |p| format!("{p:.2} %")),
        cost.agent_cpu_percent,
        cost.agent_peak_rss_kib
    );
}

/// The full bench's line for the recording: its cost, or why it was not measured.
pub fn print_outcome(outcome: Option<&Result<RecordingCost, String>>) {
    match outcome {
        Some(Ok(cost)) => print(cost),
        Some(Err(why)) => println!("  recording: not measured: {why}"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_share_is_read_from_the_closing_line() {
        let stderr = "kvmtop: recording a window every 1.0 s into /tmp/x for 60 s (Ctrl-C stops)\n\
            kvmtop: 60 windows recorded, 0.1 MiB on disk (1.4 MiB before compression), 968 bytes \
            per VM-second, recording used 0.27 % of a core\n\
            kvmtop: recorded 60 windows into /tmp/x: 0.1 MiB on disk (1.4 MiB before compression), \
            968 bytes per VM-second, recording used 0.26 % of a core\n";
        assert_eq!(recorder_cpu_percent(stderr), Some(0.26));
        assert_eq!(recorder_cpu_percent("kvmtop: recorded 0 windows"), None);
    }
}
