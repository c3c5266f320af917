//! Step 4: the programs tests, demo and bench use: QEMU for real guests, binutils to assemble
//! them, and independent tools (bpftrace, libbpf-tools, perf, bpftool, Prometheus, stress-ng)
//! that the tests compare kvmtop's numbers with (Prometheus' promtool also checks and
//! unit-tests the shipped alerting rules), curl as a TLS client independent of kvmtop's,
//! tmux to drive the live table in a terminal, setpriv to run kvmtop as an unprivileged user
//! with a few capabilities, the systemd tools that check its unit, strace to see that kvmtop
//! stays inside that unit's sandbox, and Chromium to open the HTML incident report.

use anyhow::{Result, bail};

use super::apt::Apt;
use crate::util::{self, checking, cmd, find_program, installing, ok};

struct Tool {
    command: &'static str,
    /// Package sets that provide the command, in order of preference; the first set the apt
    /// sources fully offer is installed. Debian names come first, then Ubuntu's.
    packages: &'static [&'static [&'static str]],
}

/// `{release}` stands for `uname -r`: Ubuntu ships perf and bpftool per kernel.
const TOOLS: &[Tool] = &[
    Tool {
        command: "qemu-system-x86_64",
        packages: &[&["qemu-system-x86"]],
    },
    Tool {
        command: "as",
        packages: &[&["binutils"]],
    },
    Tool {
        command: "bpftrace",
        packages: &[&["bpftrace"]],
    },
    Tool {
        command: "runqlat",
        packages: &[&["libbpf-tools"]],
    },
    Tool {
        command: "perf",
        packages: &[
            &["linux-perf"],
            &["linux-tools-common", "linux-tools-{release}"],
            &["linux-tools-common", "linux-tools-generic"],
        ],
    },
    Tool {
        command: "bpftool",
        packages: &[
            &["bpftool"],
            &["linux-tools-common", "linux-tools-{release}"],
            &["linux-tools-common", "linux-tools-generic"],
        ],
    },
    Tool {
        command: "prometheus",
        packages: &[&["prometheus"]],
    },
    Tool {
        command: "promtool",
        packages: &[&["prometheus"]],
    },
    Tool {
        command: "curl",
        packages: &[&["curl"]],
    },
    Tool {
        command: "stress-ng",
        packages: &[&["stress-ng"]],
    },
    Tool {
        command: "tmux",
        packages: &[&["tmux"]],
    },
    Tool {
        command: "setpriv",
        packages: &[&["util-linux"]],
    },
    // Both from the systemd package, also where systemd is not the init system (containers).
    Tool {
        command: "systemd-analyze",
        packages: &[&["systemd"]],
    },
    Tool {
        command: "systemd-sysusers",
        packages: &[&["systemd"]],
    },
    Tool {
        command: "strace",
        packages: &[&["strace"]],
    },
    // Opens the HTML incident report headless and takes its screenshot.
    Tool {
        command: "chromium",
        packages: &[&["chromium"], &["chromium-browser"]],
    },
];

/// Present and working: Ubuntu's perf/bpftool are wrappers that exist but fail when the
/// kernel-specific package is missing, so the command has to run.
fn works(command: &str) -> bool {
    find_program(command).is_some_and(|path| {
        // tmux is the one tool here without --version.
        let flag = if command == "tmux" { "-V" } else { "--version" };
        cmd(path)
            .arg(flag)
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

pub fn ensure(apt: &mut Apt) -> Result<()> {
    checking(
        "test tools (qemu, binutils, bpftrace, libbpf-tools, perf, bpftool, prometheus, curl, \
         stress-ng, tmux, setpriv, systemd-analyze, systemd-sysusers, strace, chromium)",
    );
    let missing: Vec<&Tool> = TOOLS.iter().filter(|tool| !works(tool.command)).collect();
    if missing.is_empty() {
        ok("");
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|tool| tool.command).collect();
    util::missing(&format!("missing {}", names.join(", ")));

    let release = uname_release();
    let mut packages: Vec<String> = Vec::new();
    for tool in &missing {
        let chosen = choose(apt, tool, &release)?;
        for package in chosen {
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
    }
    installing(
        &packages.join(" "),
        "tests run real guests and compare with these tools; promtool checks the alert rules; \
         Chromium opens the HTML report",
    );
    apt.install(&packages)?;

    let still: Vec<&str> = missing
        .iter()
        .map(|tool| tool.command)
        .filter(|c| !works(c))
        .collect();
    if !still.is_empty() {
        bail!(
            "after installing {}, these still do not run: {} (try `<command> --version` to see \
             why)",
            packages.join(" "),
            still.join(", ")
        );
    }
    Ok(())
}

fn choose(apt: &mut Apt, tool: &Tool, release: &str) -> Result<Vec<String>> {
    for set in tool.packages {
        let set: Vec<String> = set
            .iter()
            .map(|pkg| pkg.replace("{release}", release))
            .collect();
        if apt.unavailable(&set)?.is_empty() {
            return Ok(set);
        }
    }
    let tried: Vec<String> = tool
        .packages
        .iter()
        .map(|set| set.join(" + ").replace("{release}", release))
        .collect();
    bail!(
        "no apt package provides `{}` here (tried: {}); install it by hand and rerun",
        tool.command,
        tried.join("; ")
    )
}

fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default()
}
