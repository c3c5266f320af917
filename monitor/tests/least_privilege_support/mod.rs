//! Shared by the least-privilege tests: the systemd unit's settings, kvmtop started as `nobody`
//! with the unit's capabilities, the capabilities each of kvmtop's threads holds, and `serve`
//! over TLS with files that are root's only. Test binaries using it declare `support` and
//! `test_pki` too.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    str::FromStr as _,
    thread,
    time::{Duration, Instant},
};

use caps::Capability;
use kvmtop::{host::proc::live_sysctl, privileges::reduce::MapAccess};

use crate::{
    support::{self, Observed},
    test_pki,
};

/// The sampling interval of `serve` in these tests.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// The unit the tests check and mirror.
pub const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/systemd/kvmtop.service"
);
pub const SYSUSERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/systemd/kvmtop.sysusers"
);

/// `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65_534;

/// The values of every `key=` line of the unit, in order (a key may be given several times).
#[must_use]
pub fn unit_values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).expect("reading the unit");
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The capabilities the unit gives kvmtop (`AmbientCapabilities=`), as `CAP_…` names.
#[must_use]
pub fn unit_capabilities() -> Vec<String> {
    let caps: Vec<String> = unit_values("AmbientCapabilities")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_owned)
        .collect();
    assert!(!caps.is_empty(), "the unit gives no capabilities");
    caps
}

/// The unit's capabilities less `without`.
#[must_use]
pub fn unit_capabilities_without(without: &str) -> Vec<String> {
    let caps: Vec<String> = unit_capabilities()
        .into_iter()
        .filter(|c| c != without)
        .collect();
    assert_ne!(
        caps.len(),
        unit_capabilities().len(),
        "{without} not in the unit"
    );
    caps
}

/// The kernel's bit mask of `names` (`CAP_…`).
#[must_use]
pub fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .map(|name| {
            Capability::from_str(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .bitmask()
        })
        .fold(0, |acc, bit| acc | bit)
}

/// What kvmtop should keep after its programs are attached, given `held` at start: what reading
/// `/proc` needs, and `CAP_BPF` where this kernel guards map operations on an fd.
#[must_use]
pub fn expected_kept(held: &[String]) -> Vec<String> {
    let map_access = MapAccess::from_settings(
        live_sysctl("kernel/osrelease").as_deref(),
        live_sysctl("kernel/unprivileged_bpf_disabled").as_deref(),
    );
    let mut kept = vec!["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];
    if map_access == MapAccess::Privileged {
        kept.push("CAP_BPF");
    }
    kept.into_iter()
        .map(str::to_owned)
        .filter(|c| held.contains(c))
        .collect()
}

/// A copy of the kvmtop binary that `nobody` can run: the build tree may not be readable by it.
pub struct Binary {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Binary {
    #[must_use]
    pub fn for_nobody() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvmtop");
        std::fs::copy(env!("CARGO_BIN_EXE_kvmtop"), &path).unwrap();
        set_mode(dir.path(), 0o755);
        set_mode(&path, 0o755);
        Self { _dir: dir, path }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `binary` run as `nobody` the way the unit runs kvmtop: `caps` as its ambient, inheritable
/// and bounding sets, no supplementary groups, `no_new_privs`.
#[must_use]
pub fn as_nobody(binary: &Path, caps: &[String]) -> Command {
    // Everything removed, then the capabilities added back.
    let list = || {
        std::iter::once("-all".to_owned())
            .chain(caps.iter().map(|c| format!("+{}", setpriv_name(c))))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(format!("--bounding-set={}", list()))
        .arg(format!("--inh-caps={}", list()));
    if !caps.is_empty() {
        let ambient: Vec<String> = caps
            .iter()
            .map(|c| format!("+{}", setpriv_name(c)))
            .collect();
        command.arg(format!("--ambient-caps={}", ambient.join(",")));
    }
    command
        .arg("--no-new-privs")
        .arg(binary)
        .env("RUST_LOG", "warn");
    command
}

/// setpriv's name of a capability: `CAP_SYS_PTRACE` → `sys_ptrace`.
fn setpriv_name(cap: &str) -> String {
    cap.strip_prefix("CAP_").unwrap_or(cap).to_ascii_lowercase()
}

/// The capability sets of one thread, from `/proc/PID/task/TID/status`.
#[derive(Debug)]
pub struct ThreadCaps {
    pub tid: u32,
    pub name: String,
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
}

/// Every thread of `pid` with its capability sets.
#[must_use]
pub fn thread_caps(pid: u32) -> Vec<ThreadCaps> {
    let mut threads: Vec<ThreadCaps> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("listing kvmtop's threads")
        .filter_map(|entry| {
            let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                    .map_or_else(
                        || panic!("no {key} in the status of {tid}"),
                        |v| v.trim().to_owned(),
                    )
            };
            let hex = |key: &str| u64::from_str_radix(&field(key), 16).unwrap();
            Some(ThreadCaps {
                tid,
                name: field("Name"),
                inheritable: hex("CapInh"),
                permitted: hex("CapPrm"),
                effective: hex("CapEff"),
                bounding: hex("CapBnd"),
                ambient: hex("CapAmb"),
                no_new_privs: field("NoNewPrivs") == "1",
            })
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    threads
}

/// Asserts that every thread of `pid` holds exactly `kept` (effective and permitted), nothing
/// to hand on (inheritable, ambient), `no_new_privs`, and, when given, `bounding`. Returns the
/// names of the threads seen.
pub fn assert_every_thread_holds(pid: u32, kept: &[String], bounding: Option<u64>) -> Vec<String> {
    let expected = mask(kept);
    let threads = thread_caps(pid);
    assert!(!threads.is_empty(), "kvmtop (pid {pid}) has no threads");
    for t in &threads {
        eprintln!(
            "thread {} ({}): CapEff {:016x} CapPrm {:016x} CapInh {:016x} CapAmb {:016x} \
             CapBnd {:016x} NoNewPrivs {}",
            t.tid,
            t.name,
            t.effective,
            t.permitted,
            t.inheritable,
            t.ambient,
            t.bounding,
            t.no_new_privs
        );
        let context = format!("thread {} ({}) of kvmtop, expected {kept:?}", t.tid, t.name);
        assert_eq!(t.effective, expected, "CapEff of {context}");
        assert_eq!(t.permitted, expected, "CapPrm of {context}");
        assert_eq!(t.inheritable, 0, "CapInh of {context}");
        assert_eq!(t.ambient, 0, "CapAmb of {context}");
        assert!(t.no_new_privs, "NoNewPrivs of {context}");
        if let Some(bounding) = bounding {
            assert_eq!(t.bounding, bounding, "CapBnd of {context}");
        }
    }
    threads.into_iter().map(|t| t.name).collect()
}

/// The names of capabilities in a list, as kvmtop prints them.
#[must_use]
pub fn listed(caps: &[String]) -> String {
    if caps.is_empty() {
        "none".to_owned()
    } else {
        caps.join(", ")
    }
}

/// The distinct system call names of a set of `strace -f` lines.
#[must_use]
pub fn syscall_names<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    lines
        .filter_map(|line| {
            // "PID name(args…" ; resumed calls ("<... name resumed>") were counted at their start.
            let rest = line.split_once(' ')?.1.trim_start();
            let (name, _) = rest.split_once('(')?;
            (!name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            .then(|| name.to_owned())
        })
        .collect()
}

/// A TLS web config whose files are root's only: the key 0600 in a 0700 directory.
pub struct RootOnlyTls {
    dir: tempfile::TempDir,
}

impl RootOnlyTls {
    pub fn write() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let _pki = test_pki::Pki::write(dir.path());
        std::fs::write(
            dir.path().join("web.yml"),
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n",
        )
        .unwrap();
        set_mode(&dir.path().join("server-key.pem"), 0o600);
        set_mode(dir.path(), 0o700);
        let key = std::fs::metadata(dir.path().join("server-key.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        Self { dir }
    }

    pub fn web_config(&self) -> std::path::PathBuf {
        self.dir.path().join("web.yml")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

pub fn serve_args(command: &mut Command, tls: &RootOnlyTls) {
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--interval"])
        .arg(INTERVAL.as_secs_f64().to_string())
        .arg("--web.config.file")
        .arg(tls.web_config());
}

/// Starts `kvmtop serve` and returns it with the address it serves HTTPS on.
pub fn start_serve(command: Command) -> (Observed, SocketAddr) {
    let mut kvmtop = Observed::spawn(command);
    let address = support::prometheus::serving_address(&mut kvmtop, "https");
    (kvmtop, address)
}

/// `GET /metrics` over TLS with curl, trusting the test CA; the body, or empty on failure.
pub fn scrape(tls: &RootOnlyTls, address: SocketAddr) -> String {
    let output = Command::new("curl")
        .current_dir(tls.dir())
        .args(["-sS", "--fail", "--max-time", "30", "--cacert", "ca.pem"])
        .arg(format!("https://{address}/metrics"))
        .output()
        .unwrap();
    if !output.status.success() {
        eprintln!("curl: {}", String::from_utf8_lossy(&output.stderr));
        return String::new();
    }
    String::from_utf8(output.stdout).unwrap()
}

/// Waits until the VM `name` is in the metrics; returns its userspace exits then.
pub fn wait_for_vm(tls: &RootOnlyTls, address: SocketAddr, name: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let body = scrape(tls, address);
        if body
            .lines()
            .any(|l| l.starts_with("kvmtop_vm_info{") && l.contains(&format!("vm=\"{name}\"")))
        {
            return userspace_exits(&body, name);
        }
        assert!(
            Instant::now() < deadline,
            "{name} not in the metrics within a minute:\n{body}"
        );
        thread::sleep(INTERVAL);
    }
}

/// The sum of `kvmtop_vm_exits_total{source="userspace"}` of the VM `name`.
pub fn userspace_exits(exposition: &str, name: &str) -> u64 {
    let vm = format!("vm=\"{name}\"");
    exposition
        .lines()
        .filter(|l| l.starts_with("kvmtop_vm_exits_total{"))
        .filter(|l| l.contains(&vm) && l.contains("source=\"userspace\""))
        .map(|l| {
            l.rsplit_once(' ')
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("unreadable sample {l:?}"))
        })
        .sum()
}
