//! Giving up, once the programs are attached, every capability kvmtop no longer needs.
//!
//! After the attach, kvmtop only reads: its maps through the file descriptors it holds, and
//! `/proc`. What that needs (each checked on Linux 6.18 as root and as `nobody`):
//!
//! - `CAP_SYS_PTRACE`: the kernel guards a process's fd links, `exe`, `root`, `numa_maps`,
//!   `smaps_rollup` and `task/*/syscall` as if reading them traced the process. A VMM of another
//!   user needs it, and so does a VMM run by root, even for kvmtop running as root: after the
//!   drop the VMM holds capabilities kvmtop does not, and the kernel refuses a tracer with less.
//! - `CAP_DAC_READ_SEARCH`: listing another user's `/proc/PID/fd` (mode 0500) and reading its
//!   `task/*/syscall` (0400); the web config and TLS files of `serve`, read again for every
//!   connection, when they are root's only and kvmtop is not root.
//! - `CAP_BPF` only where the kernel still refuses map operations on an existing fd: before
//!   Linux 5.19 with `kernel.unprivileged_bpf_disabled` set, every `bpf()` command needed it
//!   (or `CAP_SYS_ADMIN`, which is what it was before 5.8).
//!
//! `CAP_PERFMON` goes (nothing is attached later), as does everything else root has. The
//! listening socket of `serve` is bound before the drop, so `CAP_NET_BIND_SERVICE` is never kept.
//!
//! Capabilities belong to threads, not processes: the drop must run while kvmtop has one
//! thread, before the sampler thread and the tokio runtime start, or the threads already running
//! keep everything.

use caps::{CapSet, Capability, CapsHashSet};

use crate::host::proc;

/// What kvmtop keeps for reading `/proc`, in the order it names them.
const FOR_PROC: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// The first kernel where map operations on an fd need no capability whatever
/// `kernel.unprivileged_bpf_disabled` says: before it, the sysctl refused every `bpf()` command
/// to a caller without `CAP_BPF` (or `CAP_SYS_ADMIN`).
const MAP_FDS_FREE_SINCE: (u32, u32) = (5, 19);

/// What the drop left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduced {
    /// The effective capabilities after the drop, as read back from the kernel.
    pub kept: Vec<Capability>,
    /// What could not be done; kvmtop carries on with more than it needs.
    pub problems: Vec<String>,
}

impl Reduced {
    /// The kept capabilities as a list for people: `CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH`, or
    /// `none`.
    #[must_use]
    pub fn kept_list(&self) -> String {
        if self.kept.is_empty() {
            return "none".to_owned();
        }
        self.kept
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Drops every capability kvmtop does not need once its programs are attached, from the
/// effective, permitted, inheritable and ambient sets, and from the bounding set when kvmtop may
/// change it (`CAP_SETPCAP`); then sets `no_new_privs`, so no program kvmtop could be made to run
/// gains any back. Call it before any other thread starts.
#[must_use]
pub fn after_attach() -> Reduced {
    let mut problems = Vec::new();
    if let Some(threads) = proc::own_thread_count()
        && threads > 1
    {
        problems.push(format!(
            "{} other threads started before the drop keep every capability",
            threads - 1
        ));
    }
    match caps::read(None, CapSet::Permitted) {
        Ok(permitted) => {
            let map_access = MapAccess::of_running_kernel();
            let keep = keep(&permitted, map_access);
            problems.extend(drop_all_but(&keep));
        }
        Err(e) => problems.push(format!("reading the capabilities: {e}")),
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        problems.push(format!(
            "setting no_new_privs: {}",
            std::io::Error::last_os_error()
        ));
    }
    let kept = match caps::read(None, CapSet::Effective) {
        Ok(effective) => in_order(&effective),
        Err(e) => {
            problems.push(format!("reading the capabilities back: {e}"));
            Vec::new()
        }
    };
    Reduced { kept, problems }
}

/// Clears every set of the calling thread down to `keep`; returns what failed.
fn drop_all_but(keep: &CapsHashSet) -> Vec<String> {
    let mut problems = Vec::new();
    let mut step = |what: &str, result: Result<(), caps::errors::CapsError>| {
        if let Err(e) = result {
            problems.push(format!("{what}: {e}"));
        }
    };
    // The bounding set first: cutting it needs CAP_SETPCAP, which goes with the rest below.
    // Without it (an unprivileged user given a few capabilities) the bounding set is the
    // service manager's to set, and no_new_privs already stops a program run later from gaining
    // anything through it.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        match caps::read(None, CapSet::Bounding) {
            Ok(bounding) => {
                for cap in bounding.difference(keep) {
                    step(
                        &format!("removing {cap} from the bounding set"),
                        caps::drop(None, CapSet::Bounding, *cap),
                    );
                }
            }
            Err(e) => step("reading the bounding set", Err(e)),
        }
    }
    // kvmtop runs no other program: nothing is handed on.
    step(
        "clearing the ambient set",
        caps::clear(None, CapSet::Ambient),
    );
    step(
        "clearing the inheritable set",
        caps::clear(None, CapSet::Inheritable),
    );
    // Effective before permitted: the kernel refuses an effective set larger than the permitted.
    step(
        "reducing the effective set",
        caps::set(None, CapSet::Effective, keep),
    );
    step(
        "reducing the permitted set",
        caps::set(None, CapSet::Permitted, keep),
    );
    problems
}

/// Whether reading and writing maps through their file descriptors needs a capability on this
/// kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAccess {
    Free,
    Privileged,
}

impl MapAccess {
    fn of_running_kernel() -> Self {
        Self::from_settings(
            proc::live_sysctl("kernel/osrelease").as_deref(),
            proc::live_sysctl("kernel/unprivileged_bpf_disabled").as_deref(),
        )
    }

    /// From the kernel release (`6.18.4-…`) and `kernel.unprivileged_bpf_disabled` (`0`, `1`,
    /// `2`; absent when the kernel has no unprivileged BPF at all). Whatever cannot be read
    /// counts as the case that needs the capability: keeping one too many costs less than
    /// losing every figure.
    #[must_use]
    pub fn from_settings(release: Option<&str>, unprivileged_bpf_disabled: Option<&str>) -> Self {
        if release
            .and_then(release_version)
            .is_some_and(|version| version >= MAP_FDS_FREE_SINCE)
        {
            return Self::Free;
        }
        match unprivileged_bpf_disabled.map(str::trim) {
            Some("0") => Self::Free,
            _ => Self::Privileged,
        }
    }
}

/// Major and minor of a kernel release such as `6.18.44-fc-v1098` or `5.4.0-150-generic`.
fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What to keep of `permitted`: what reading `/proc` needs and, where the kernel guards map
/// operations, the capability that opens them (`CAP_BPF`, or `CAP_SYS_ADMIN` on kernels that do
/// not know it). Never more than `permitted`: a capability kvmtop was not given cannot be kept.
#[must_use]
pub fn keep(permitted: &CapsHashSet, map_access: MapAccess) -> CapsHashSet {
    let mut keep: CapsHashSet = FOR_PROC
        .into_iter()
        .filter(|cap| permitted.contains(cap))
        .collect();
    if map_access == MapAccess::Privileged {
        if permitted.contains(&Capability::CAP_BPF) {
            keep.insert(Capability::CAP_BPF);
        } else if permitted.contains(&Capability::CAP_SYS_ADMIN) {
            keep.insert(Capability::CAP_SYS_ADMIN);
        }
    }
    keep
}

/// `set` in the order kvmtop names them: those for `/proc` first, then by number.
fn in_order(set: &CapsHashSet) -> Vec<Capability> {
    let mut caps: Vec<Capability> = set.iter().copied().collect();
    caps.sort_by_key(|cap| {
        let rank = FOR_PROC
            .iter()
            .position(|c| c == cap)
            .unwrap_or(FOR_PROC.len());
        (rank, cap.index())
    });
    caps
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::{
        CAP_BPF, CAP_DAC_READ_SEARCH, CAP_NET_BIND_SERVICE, CAP_PERFMON, CAP_SETPCAP,
        CAP_SYS_ADMIN, CAP_SYS_PTRACE,
    };

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn root_keeps_what_reading_proc_needs_and_nothing_else() {
        let root = caps::all();
        assert_eq!(
            keep(&root, MapAccess::Free),
            set(&[CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH])
        );
    }

    #[test]
    fn the_unit_s_four_capabilities_lose_bpf_and_perfmon() {
        let unit = set(&[CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH]);
        assert_eq!(
            keep(&unit, MapAccess::Free),
            set(&[CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH])
        );
    }

    #[test]
    fn nothing_is_kept_that_was_not_given() {
        let minimal = set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]);
        assert_eq!(keep(&minimal, MapAccess::Free), set(&[CAP_DAC_READ_SEARCH]));
        assert_eq!(keep(&set(&[]), MapAccess::Privileged), set(&[]));
    }

    #[test]
    fn a_kernel_that_guards_map_fds_keeps_the_capability_that_opens_them() {
        let unit = set(&[CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH]);
        assert_eq!(
            keep(&unit, MapAccess::Privileged),
            set(&[CAP_BPF, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH])
        );
        // Before 5.8 there is no CAP_BPF: root's CAP_SYS_ADMIN is what opens them.
        let old_root = set(&[
            CAP_SYS_ADMIN,
            CAP_SYS_PTRACE,
            CAP_DAC_READ_SEARCH,
            CAP_SETPCAP,
        ]);
        assert_eq!(
            keep(&old_root, MapAccess::Privileged),
            set(&[CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH])
        );
    }

    #[test]
    fn binding_a_low_port_is_never_kept() {
        let with_bind = set(&[CAP_BPF, CAP_PERFMON, CAP_NET_BIND_SERVICE, CAP_SYS_PTRACE]);
        assert!(!keep(&with_bind, MapAccess::Free).contains(&CAP_NET_BIND_SERVICE));
    }

    #[test]
    fn map_fds_are_free_from_5_19_or_when_unprivileged_bpf_is_allowed() {
        use MapAccess::{Free, Privileged};
        for (release, sysctl, expected) in [
            (Some("6.18.44-fc-v1098"), Some("2"), Free),
            (Some("5.19.0"), Some("1"), Free),
            (Some("5.18.19"), Some("2"), Privileged),
            (Some("5.15.0-91-generic"), Some("1"), Privileged),
            (Some("5.15.0-91-generic"), Some("0\n"), Free),
            (Some("4.19.0"), None, Privileged),
            (None, Some("2"), Privileged),
            (Some("garbage"), Some("0"), Free),
            (Some("garbage"), Some("garbage"), Privileged),
        ] {
            assert_eq!(
                MapAccess::from_settings(release, sysctl),
                expected,
                "{release:?} {sysctl:?}"
            );
        }
    }

    #[test]
    fn kept_capabilities_are_named_in_a_fixed_order() {
        let reduced = Reduced {
            kept: in_order(&set(&[CAP_BPF, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE])),
            problems: Vec::new(),
        };
        assert_eq!(
            reduced.kept_list(),
            "CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_BPF"
        );
        let none = Reduced {
            kept: Vec::new(),
            problems: Vec::new(),
        };
        assert_eq!(none.kept_list(), "none");
    }
}
