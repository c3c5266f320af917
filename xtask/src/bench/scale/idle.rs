//! Idle processes that are not VMs, each with a pid of its own, as a real host has thousands of:
//! an agent whose cost follows every process on the host, rather than its VMs, shows it here.

use std::{
    io,
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result};

use crate::interrupt;

/// `sleep` processes, killed and reaped when dropped.
pub struct Idle {
    children: Vec<Child>,
}

impl Idle {
    /// Starts `count` processes that block in `sleep` for a day.
    pub fn start(count: usize) -> Result<Self> {
        let mut idle = Self {
            children: Vec::with_capacity(count),
        };
        for started in 0..count {
            interrupt::bail_if_interrupted()?;
            let mut command = Command::new("sleep");
            command
                .arg("86400")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: the hook runs between fork and exec and only calls prctl, which is
            // async-signal-safe, and builds its error from errno without allocating.
            unsafe {
                command.pre_exec(|| {
                    // Killed by the kernel if the bench dies without running its destructors.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command
                .spawn()
                .with_context(|| format!("starting idle process {} (sleep)", started + 1))?;
            idle.children.push(child);
            if (started + 1) % 500 == 0 {
                println!("  started {} of {count} idle processes", started + 1);
            }
        }
        Ok(idle)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        // All signalled first, then reaped: 2,000 one-by-one round trips would take a while.
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
