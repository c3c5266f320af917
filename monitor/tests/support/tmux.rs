//! A real terminal for the live view: a tmux server of the test's own, its screen, its title,
//! and the raw bytes programs write to it.

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

/// A tmux server of its own, so the test never touches a user's sessions.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A 120×30 terminal running a bare shell.
    pub fn start() -> Self {
        Self::start_sized(120, 30)
    }

    /// A `width`×`height` terminal running a bare shell (no rc files, a minimal environment).
    pub fn start_sized(width: u16, height: u16) -> Self {
        // One server per test: tests run in parallel.
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmux = Self {
            socket: format!("kvmtop-test-{}-{n}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=xterm-256color bash --norc --noprofile",
        ]);
        tmux
    }

    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "t", "-l", line]);
        self.run(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Presses one key, named as tmux names them (`Enter`, `Tab`, `Escape`, `q`, `C-c`).
    pub fn key(&self, key: &str) {
        self.run(&["send-keys", "-t", "t", key]);
    }

    /// The screen once it holds still. tmux applies a program's output in pieces, so a single
    /// capture can catch a redraw half done: new charts above the old table, a number half
    /// overwritten. Two equal captures in a row are past any redraw; kvmtop redraws at most every
    /// sampling interval, so they come at once. If the screen never holds still (a program that
    /// redraws without pause), the last capture is returned.
    pub fn screen(&self) -> String {
        let mut last = self.raw_screen();
        for _ in 0..20 {
            thread::sleep(Duration::from_millis(20));
            let next = self.raw_screen();
            if next == last {
                return next;
            }
            last = next;
        }
        last
    }

    /// One capture of the screen, as it is at this instant.
    fn raw_screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen with the escape sequences that set each cell's colours and emphasis (tmux
    /// writes them as SGR sequences, `ESC [ … m`).
    pub fn styled_screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    pub fn alternate_screen(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "t", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// The title programs gave the terminal (OSC 0 or 2); the host name until one does.
    pub fn title(&self) -> String {
        self.run(&["display-message", "-p", "-t", "t", "#{pane_title}"])
            .trim_end_matches('\n')
            .to_owned()
    }

    /// From now on, appends every byte written to the terminal to `file`, unchanged.
    pub fn record_output(&self, file: &Path) {
        let command = format!("cat >> '{}'", file.display());
        self.run(&["pipe-pane", "-o", "-t", "t", &command]);
    }

    /// Waits until the screen meets `condition` and returns that screen, so that what the caller
    /// reads next is what was checked, not a later redraw.
    pub fn wait_for_screen(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_mins(1);
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                self.screen()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the shell's child (the program it runs).
    pub fn kvmtop_pid(&self) -> u32 {
        let shell = self.run(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", shell.trim()))
                .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("kvmtop is running")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}
