//! `kvmtop serve` and its independent consumers: `promtool check metrics` and a real Prometheus
//! server scraping it on loopback.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use super::Observed;

/// Starts `kvmtop serve` on a free loopback port with the given refresh interval (seconds), and
/// returns it once it listens, with its address.
pub fn serve(interval: &str) -> (Observed, SocketAddr) {
    serve_with(super::kvmtop(), interval)
}

/// Like [`serve`], from a kvmtop command the caller has prepared (its environment or
/// scheduling, say).
pub fn serve_with(command: Command, interval: &str) -> (Observed, SocketAddr) {
    serve_with_options(command, interval, &[])
}

/// Like [`serve_with`], with more options of `serve` (`--metrics-detail full`, say).
pub fn serve_with_options(
    mut command: Command,
    interval: &str,
    options: &[&str],
) -> (Observed, SocketAddr) {
    command.args(["serve", "--listen", "127.0.0.1:0", "--interval", interval]);
    // Tests leave the host's /var/lib/kvmtop alone (flight_e2e tests the ring in a directory
    // of its own), and parallel serves would contend for the one default ring.
    command.arg("--no-flight-recorder");
    command.args(options);
    let mut kvmtop = Observed::spawn(command);
    let address = serving_address(&mut kvmtop, "http");
    (kvmtop, address)
}

/// Waits for a started `kvmtop serve` to say where it listens (`scheme` is `http` or
/// `https`), and returns that address.
pub fn serving_address(kvmtop: &mut Observed, scheme: &str) -> SocketAddr {
    let line = kvmtop.wait_for("serving metrics at", Duration::from_mins(1));
    line.split(&format!("{scheme}://"))
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {scheme} address in {line:?}"))
}

/// Asserts that `promtool check metrics` accepts `exposition` without a word of complaint.
pub fn assert_promtool_accepts(exposition: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Prometheus server on a free loopback port, with its configuration and storage in a
/// directory of its own. Stopped and removed on drop.
pub struct Prometheus {
    pub web: SocketAddr,
    server: Observed,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scraping one target every second.
    pub fn start(target: SocketAddr) -> Self {
        Self::start_scraping(&[target])
    }

    /// Scraping each of `targets` every second; its series carry the target's address as
    /// `instance`.
    pub fn start_scraping(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kvmtop\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        Self::start_with_config(dir, &config)
    }

    /// A Prometheus server on a free loopback port with a configuration the caller has written
    /// into `dir` (its storage goes there too). Stopped on drop; the caller's `dir` is removed
    /// with it.
    pub fn start_with_config(dir: tempfile::TempDir, config: &std::path::Path) -> Self {
        let web = free_loopback_address();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"));
        Self {
            web,
            server: Observed::spawn(command),
            _dir: dir,
        }
    }

    /// Fails the test with the server's log if it has exited (a configuration it refused,
    /// say).
    pub fn assert_running(&mut self) {
        if matches!(self.server.child.try_wait(), Ok(Some(_))) {
            let status = self.server.wait(Duration::from_secs(5));
            panic!(
                "prometheus exited ({status}):\n{}",
                self.server.stderr_lines.join("\n")
            );
        }
    }

    /// `GET` of any path of Prometheus' HTTP API: the status and the body.
    pub fn api(&self, path: &str) -> (u16, String) {
        http_get(self.web, path)
    }

    /// Evaluates `promql` now; the HTTP status and the answer (0 and nothing while the server
    /// is not up yet).
    pub fn query(&self, promql: &str) -> (u16, String) {
        http_get(
            self.web,
            &format!("/api/v1/query?query={}", percent_encode(promql)),
        )
    }
}

pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Minimal HTTP/1.0 GET, so the tests depend on no HTTP client library.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn free_loopback_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
