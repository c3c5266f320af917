//! What kvmtop holds of the host: resident memory and open file descriptors.

/// One reading of a process's resources.
#[derive(Clone, Copy, Debug)]
pub struct Resources {
    pub rss_kib: u64,
    pub fds: usize,
    /// CPU time used so far (user and system), in clock ticks.
    pub cpu_ticks: u64,
}

impl Resources {
    /// Reads them for `pid` (`VmRSS` of its status, entries of its fd directory).
    #[must_use]
    pub fn of(pid: u32) -> Self {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("kvmtop's status");
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in kvmtop's status");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("kvmtop's fds")
            .count();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("kvmtop's stat");
        // utime and stime, fields 14 and 15; the fields after the command name start at 3.
        let cpu_ticks = stat
            .rsplit_once(") ")
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(14 - 3)
                    .take(2)
                    .filter_map(|t| t.parse::<u64>().ok())
                    .sum()
            })
            .expect("kvmtop's stat");
        Self {
            rss_kib,
            fds,
            cpu_ticks,
        }
    }
}
