//! The systemd unit of `kvmtop serve` (packaging/systemd/): systemd accepts it and its sysusers
//! file, rates its sandbox below 2.2, and kvmtop serving a guest as the unit runs it makes no
//! system call, opens no socket family, writes no file and maps no writable code that the unit
//! forbids.
//!
//! systemd is not PID 1 on the test machines, so the unit itself is never started: what the
//! sandbox would do to kvmtop is checked by tracing kvmtop (strace) against the unit's rules.

mod least_privilege_support;
mod support;
#[path = "../src/output/serve/test_pki.rs"]
mod test_pki;

use std::{
    collections::{BTreeSet, HashMap},
    process::Command,
    thread,
};

use least_privilege_support::{
    Binary, INTERVAL, RootOnlyTls, SYSUSERS, UNIT, as_nobody, scrape, serve_args, start_serve,
    syscall_names, unit_capabilities, unit_values, wait_for_vm,
};

/// The exposure `systemd-analyze security` may give the unit at most (0 is the best, 10 the
/// worst). 2.1 with systemd 252.
const EXPOSURE_LIMIT: f64 = 2.2;

#[test]
fn systemd_verifies_the_unit_pointing_at_the_built_binary() {
    const TEST: &str = "systemd_verifies_the_unit_pointing_at_the_built_binary";
    if let Some(reason) = missing_tool("systemd-analyze") {
        return support::skip(TEST, &reason);
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/kvmtop "), "{unit}");
    let copy = dir.path().join("kvmtop.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/kvmtop", env!("CARGO_BIN_EXE_kvmtop")),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complains: {stderr}"
    );
}

#[test]
fn sysusers_creates_the_unit_s_user_in_an_empty_root() {
    const TEST: &str = "sysusers_creates_the_unit_s_user_in_an_empty_root";
    if let Some(reason) = missing_tool("systemd-sysusers") {
        return support::skip(TEST, &reason);
    }
    assert_eq!(unit_values("User"), ["kvmtop"]);
    assert_eq!(unit_values("Group"), ["kvmtop"]);
    let root = tempfile::tempdir().unwrap();
    // sysusers writes the files of an existing /etc, and creates none.
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let output = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(SYSUSERS)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "systemd-sysusers: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    eprintln!("passwd: {passwd}group: {group}");
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("kvmtop:"))
        .unwrap_or_else(|| panic!("no kvmtop user in {passwd:?}"))
        .split(':')
        .collect();
    let gid = group
        .lines()
        .find_map(|l| l.strip_prefix("kvmtop:x:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no kvmtop group in {group:?}"));
    let uid: u32 = user[2].parse().unwrap();
    assert!(
        (1..1000).contains(&uid),
        "a system user, not root: uid {uid}"
    );
    assert_eq!(user[3], gid, "the user's primary group is kvmtop");
    assert_eq!(user[6], "/usr/sbin/nologin", "no login shell");
}

#[test]
fn the_sandbox_is_rated_below_the_limit() {
    const TEST: &str = "the_sandbox_is_rated_below_the_limit";
    if let Some(reason) = missing_tool("systemd-analyze") {
        return support::skip(TEST, &reason);
    }
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(UNIT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("--offline") {
        return support::skip(TEST, &format!("systemd-analyze is too old: {stderr}"));
    }
    let exposure: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for kvmtop.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}\n{stderr}"));
    eprintln!("exposure {exposure} (limit {EXPOSURE_LIMIT})");
    assert!(
        exposure < EXPOSURE_LIMIT,
        "exposure {exposure}, limit {EXPOSURE_LIMIT}:\n{stdout}"
    );
}

#[test]
fn kvmtop_serve_does_nothing_the_unit_forbids() {
    const TEST: &str = "kvmtop_serve_does_nothing_the_unit_forbids";
    const NAME: &str = "kvmtop-e2e-unit-strace";
    if let Some(reason) =
        support::missing_prerequisite(true, &["strace", "setpriv", "curl", "systemd-analyze"])
    {
        return support::skip(TEST, &reason);
    }
    let (_guest, _) = support::start_portio(NAME);
    let binary = Binary::for_nobody();
    let tls = RootOnlyTls::write();
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("strace.txt");

    let mut kvmtop = as_nobody(&binary.path, &unit_capabilities());
    serve_args(&mut kvmtop, &tls);
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-s", "256", "-o"])
        .arg(&trace)
        .arg(kvmtop.get_program())
        .args(kvmtop.get_args());
    for (key, value) in kvmtop.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    let (mut traced, address) = start_serve(command);
    // Discovery reads the guest's /proc entries; every connection reads the web config and
    // the TLS files in a thread of its own.
    wait_for_vm(&tls, address, NAME);
    for _ in 0..3 {
        assert!(!scrape(&tls, address).is_empty(), "a scrape failed");
        thread::sleep(INTERVAL);
    }
    // strace passes no signal on when it is signalled itself: interrupt kvmtop, its child.
    let kvmtop_pid = children(traced.child.id())
        .into_iter()
        .next()
        .expect("kvmtop under strace");
    // SAFETY: kill(2) on the pid of kvmtop, which strace has not reaped while it traces it.
    unsafe { libc::kill(kvmtop_pid.cast_signed(), libc::SIGINT) };
    let status = traced.wait(support::EXIT_LIMIT);
    assert!(status.success(), "kvmtop under strace: {status}");

    let text = std::fs::read_to_string(&trace).unwrap();
    let exec = format!("execve(\"{}\"", binary.path.display());
    let start = text
        .find(&exec)
        .unwrap_or_else(|| panic!("kvmtop's execve is not in the trace"));
    // From kvmtop's own start: setpriv's calls before it are not kvmtop's.
    let lines: Vec<&str> = text[start..].lines().skip(1).collect();
    eprintln!("{} lines of kvmtop's system calls", lines.len());

    let used = syscall_names(lines.iter().copied());
    let allowed = allowed_syscalls();
    let forbidden: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        forbidden.is_empty(),
        "system calls the unit's filter refuses: {forbidden:?}"
    );
    assert!(
        used.contains("bpf") && used.contains("perf_event_open") && used.contains("capset"),
        "the trace misses kvmtop's own calls: {used:?}"
    );

    let families: BTreeSet<String> = unit_values("RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_owned)
        .collect();
    for line in calls(&lines, "socket") {
        let family = line
            .split_once("socket(")
            .and_then(|(_, rest)| rest.split(',').next())
            .unwrap_or_default();
        assert!(
            families.contains(family),
            "socket family outside RestrictAddressFamilies {families:?}: {line}"
        );
    }
    // ProtectSystem=strict and ReadOnlyPaths=/proc: kvmtop writes no file but in the unit's own
    // state and runtime directories (its flight recorder).
    let writable: Vec<String> = unit_values("StateDirectory")
        .iter()
        .map(|d| format!("\"/var/lib/{d}/"))
        .chain(
            unit_values("RuntimeDirectory")
                .iter()
                .map(|d| format!("\"/run/{d}/")),
        )
        .collect();
    for name in ["openat", "open", "creat", "openat2"] {
        for line in calls(&lines, name) {
            assert!(
                !["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                    .iter()
                    .any(|flag| line.contains(flag))
                    || writable.iter().any(|dir| line.contains(dir.as_str())),
                "a file opened for writing outside {writable:?}: {line}"
            );
        }
    }
    // MemoryDenyWriteExecute: no mapping both writable and executable.
    for name in ["mmap", "mprotect", "pkey_mprotect"] {
        for line in calls(&lines, name) {
            assert!(
                !(line.contains("PROT_WRITE") && line.contains("PROT_EXEC")),
                "writable code: {line}"
            );
        }
    }
}

/// Why a tool is missing, if it is.
fn missing_tool(tool: &str) -> Option<String> {
    support::which(tool)
        .is_none()
        .then(|| format!("{tool} is not installed (cargo xtask setup installs it)"))
}

/// The lines of `strace -f` output that make the call `name`.
fn calls<'a>(lines: &'a [&'a str], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let start = format!("{name}(");
    lines.iter().copied().filter(move |line| {
        line.split_once(' ')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(&start))
    })
}

/// The pids of the children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The system calls the unit's `SystemCallFilter=` lines allow, as systemd reads them: the first
/// line, an allow list, sets the list; a later `~` line removes from it, a later plain line adds.
fn allowed_syscalls() -> BTreeSet<String> {
    let mut groups = HashMap::new();
    let mut allowed = BTreeSet::new();
    let filters = unit_values("SystemCallFilter");
    assert!(
        filters.first().is_some_and(|f| !f.starts_with('~')),
        "the filter should start with an allow list: {filters:?}"
    );
    for filter in filters {
        let (remove, items) = match filter.strip_prefix('~') {
            Some(items) => (true, items),
            None => (false, filter.as_str()),
        };
        for item in items.split_whitespace() {
            for call in expand(item, &mut groups) {
                if remove {
                    allowed.remove(&call);
                } else {
                    allowed.insert(call);
                }
            }
        }
    }
    allowed
}

/// A system call, or every call of a `@group` (nested groups included), as this systemd lists
/// them.
fn expand(item: &str, groups: &mut HashMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if !item.starts_with('@') {
        return BTreeSet::from([item.to_owned()]);
    }
    if let Some(calls) = groups.get(item) {
        return calls.clone();
    }
    let output = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", item])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "systemd-analyze syscall-filter {item}"
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut calls = BTreeSet::new();
    for line in text.lines().skip(1) {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        calls.extend(expand(entry, groups));
    }
    assert!(!calls.is_empty(), "systemd lists nothing in {item}");
    groups.insert(item.to_owned(), calls.clone());
    calls
}
