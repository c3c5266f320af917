//! A tmux server of our own (its own socket, so no other tmux session is touched) running one
//! command at a fixed size; the server is killed on drop, whatever happened.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::util::{self, find_program};

const SESSION: &str = "docs";

pub struct Session {
    socket: String,
}

impl Session {
    /// Starts `command` (a shell command line) in a detached session of `size` columns × rows.
    /// When the command exits, the pane keeps its last screen and says so, so a capture shows
    /// why.
    pub fn start(size: (u16, u16), command: &str) -> Result<Self> {
        if find_program("tmux").is_none() {
            bail!("tmux is not installed (cargo xtask setup installs it)");
        }
        let session = Self {
            socket: format!("kvmtop-docs-{}", std::process::id()),
        };
        let shell = format!("{command}; echo \"kvmtop exited with status $?\"; sleep 3600");
        let mut new = session.tmux();
        new.args(["new-session", "-d", "-s", SESSION, "-x"])
            .arg(size.0.to_string())
            .arg("-y")
            .arg(size.1.to_string())
            .args(["sh", "-c", &shell]);
        util::echo(&new);
        util::run(&mut new).context("starting tmux")?;
        Ok(session)
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    /// Presses `key` (`tmux send-keys` key names: `Enter`, `Escape`, `Tab`, `Up`, `a`).
    pub fn key(&self, key: &str) -> Result<()> {
        util::output(self.tmux().args(["send-keys", "-t", SESSION, key]))
            .map(drop)
            .with_context(|| format!("pressing {key}"))
    }

    /// The screen with its colours and attributes as SGR escape sequences.
    pub fn capture_ansi(&self) -> Result<String> {
        util::output(
            self.tmux()
                .args(["capture-pane", "-e", "-p", "-t", SESSION]),
        )
    }

    /// The screen as plain text.
    pub fn capture_plain(&self) -> Result<String> {
        util::output(self.tmux().args(["capture-pane", "-p", "-t", SESSION]))
    }

    /// Waits until `ready` holds for the plain screen; the error shows the last screen.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture_plain()?;
            if ready(&screen) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "waited {} s for {what}; the screen:\n{screen}",
                    timeout.as_secs()
                );
            }
            crate::interrupt::bail_if_interrupted()?;
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // q lets kvmtop quit as a user would; kill-server then ends the pane whatever it does.
        let _ = self.tmux().args(["send-keys", "-t", SESSION, "q"]).output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let exited = self
                .capture_plain()
                .is_ok_and(|screen| screen.contains("kvmtop exited"));
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.tmux().arg("kill-server").output();
        // tmux leaves its socket file behind.
        let dir = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".to_owned());
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(format!("{dir}/tmux-{uid}/{}", self.socket));
    }
}
