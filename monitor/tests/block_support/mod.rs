//! For the block tests: a loop device of their own, and the histograms of kvmtop and
//! `biolatency` side by side.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use serde_json::Value;

/// An ext4 filesystem (no journal, inode tables written up front, no atime updates, so it does
/// no I/O of its own) on a fresh loop device; detached on drop.
pub struct LoopDisk {
    _dir: tempfile::TempDir,
    device: String,
    mount: PathBuf,
}

/// One field of `/sys/block/<name>/stat` (see the kernel's `Documentation/block/stat.rst`).
#[derive(Clone, Copy)]
pub enum Stat {
    /// Reads completed.
    Reads = 0,
    /// Reads merged into a request already queued.
    ReadsMerged = 1,
}

impl LoopDisk {
    /// The kernel's own count of `field` on this device since it was set up.
    pub fn stat(&self, field: Stat) -> u64 {
        let stat = Path::new("/sys/block").join(self.name()).join("stat");
        std::fs::read_to_string(&stat)
            .ok()
            .and_then(|text| text.split_whitespace().nth(field as usize)?.parse().ok())
            .unwrap_or_else(|| panic!("{} unreadable", stat.display()))
    }
}

pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl LoopDisk {
    /// A fresh loop device with nothing on it: whatever reads it is the test's own.
    pub fn bare() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("kvmtop-block-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let backing = dir.path().join("backing.img");
        File::create(&backing)
            .and_then(|f| f.set_len(128 << 20))
            .map_err(|e| format!("creating {}: {e}", backing.display()))?;
        // Buffered, not --direct-io: with direct I/O this kernel's loop driver completes some
        // requests twice (a completion, a second issue, a second completion), which biolatency
        // counts as two requests.
        let device = run("losetup", &["--find", "--show", &backing.to_string_lossy()])?;
        let mount = dir.path().join("mnt");
        Ok(Self {
            _dir: dir,
            device,
            mount,
        })
    }

    /// A loop device with an ext4 filesystem mounted on it, for a guest's disk image.
    pub fn create() -> Result<Self, String> {
        let disk = Self::bare()?;
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-O",
                "^has_journal",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &disk.device,
            ],
        )?;
        std::fs::create_dir(&disk.mount).map_err(|e| e.to_string())?;
        run(
            "mount",
            &["-o", "noatime", &disk.device, &disk.mount.to_string_lossy()],
        )?;
        Ok(disk)
    }

    /// `/dev/loopN`.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// `loopN`.
    pub fn name(&self) -> &str {
        self.device.trim_start_matches("/dev/")
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // The guest has been killed by now, but its files may take a moment to be released.
        for _ in 0..20 {
            let mounted = std::fs::read_to_string("/proc/self/mounts")
                .is_ok_and(|m| m.contains(&*self.mount.to_string_lossy()));
            if !mounted || run("umount", &[&self.mount.to_string_lossy()]).is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(250));
        }
        let _ = run("losetup", &["-d", &self.device]);
    }
}

/// A parsed log2 histogram: bucket index → count.
pub type Buckets = Vec<(u32, u64)>;

/// `biolatency`'s histogram lines: `   16 -> 31   : 371   |****|`, bucket log2(low).
pub fn parse_biolatency(output: &str) -> Buckets {
    output
        .lines()
        .filter_map(|line| {
            let (range, rest) = line.split_once(':')?;
            let (low, _) = range.split_once("->")?;
            let low: u64 = low.trim().parse().ok()?;
            let count: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((low.checked_ilog2().unwrap_or(0), count))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// How far apart two observers time the same request: at each end their programs run one after
/// the other, each taking a few hundred ns in this nested VM.
pub const OBSERVER_SKEW_NS: u64 = 500;

/// kvmtop's ns buckets (index b: [2^b, 2^(b+1)) ns).
pub fn ns_buckets(ops: &[Value]) -> Buckets {
    let mut ns: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    for op in ops {
        for bucket in op["latency_buckets"].as_array().unwrap() {
            let b = bucket["floor_ns"]
                .as_u64()
                .unwrap()
                .checked_ilog2()
                .unwrap_or(0);
            *ns.entry(b).or_default() += bucket["count"].as_u64().unwrap();
        }
    }
    ns.into_iter().collect()
}

/// kvmtop's ns buckets as biolatency's µs buckets (log2 of whole µs): [2^b, 2^(b+1)) ns is
/// 1.024 × [2^(b-10), 2^(b-9)) µs, all but its top 5 % µs bucket b - 10. For the record only:
/// the median check compares the ranges the buckets cover instead.
pub fn to_usec_buckets(ns: &Buckets) -> Buckets {
    ns.iter().map(|(b, n)| (b.saturating_sub(10), *n)).collect()
}

/// The range in ns a log2 bucket covers: `unit` 1 for kvmtop's ns buckets, 1000 for
/// biolatency's µs buckets (bucket 0 starts at 0 in both).
pub fn bucket_range(bucket: u32, unit: u64) -> (u64, u64) {
    let floor = if bucket == 0 { 0 } else { unit << bucket };
    (floor, unit << (bucket + 1))
}

pub fn total(buckets: &Buckets) -> u64 {
    buckets.iter().map(|(_, n)| n).sum()
}

/// The bucket holding the median interval.
pub fn median_bucket(buckets: &Buckets) -> u32 {
    let half = total(buckets).div_ceil(2);
    let mut below = 0;
    for (bucket, n) in buckets {
        below += n;
        if below >= half {
            return *bucket;
        }
    }
    0
}

/// The kernel's own count of `block_rq_complete` on one device, taken by ftrace (no BPF) in a
/// tracefs instance of the test's own.
///
/// It tells the completions no BPF program was run for. On this project's test machine (a PVM
/// guest kernel) a completion the block softirq runs on top of one particular task reaches
/// ftrace but neither kvmtop's programs nor biolatency's nor bpftrace's; the device counts the
/// read, every BPF observer misses it, and a request at queue depth 1 is then left pending until
/// kvmtop expires it. Such a completion is nobody's loss to find: `ftrace − biolatency` over the
/// same window counts them, and the tests allow exactly that many.
pub struct TracedCompletions {
    instance: PathBuf,
}

impl TracedCompletions {
    /// Starts counting the completions of `disk`; stopped by [`Self::count`].
    pub fn start(disk: &LoopDisk) -> Result<Self, String> {
        let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.join("instances").is_dir())
            .ok_or("no tracefs with instances")?;
        let instance = tracefs.join("instances").join(format!(
            "kvmtop-test-{}-{}",
            std::process::id(),
            disk.name()
        ));
        std::fs::create_dir(&instance)
            .map_err(|e| format!("creating {}: {e}", instance.display()))?;
        let traced = Self { instance };
        let dev = std::fs::read_to_string(Path::new("/sys/block").join(disk.name()).join("dev"))
            .map_err(|e| format!("{}: {e}", disk.name()))?;
        let (major, minor) = dev
            .trim()
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .ok_or_else(|| format!("{}: unexpected dev {dev:?}", disk.name()))?;
        let event = traced.instance.join("events/block/block_rq_complete");
        // A window's completions, 16 MiB a CPU, with room to spare: an overrun fails the count.
        traced.write("buffer_size_kb", "16384")?;
        write_file(
            &event.join("filter"),
            &format!("dev == {}", (major << 20) | minor),
        )?;
        write_file(&event.join("enable"), "1")?;
        traced.write("tracing_on", "1")?;
        Ok(traced)
    }

    /// Stops counting and returns the completions counted.
    pub fn count(&self) -> u64 {
        self.write("tracing_on", "0").expect("stopping the trace");
        let mut entries = 0;
        let cpus = std::fs::read_dir(self.instance.join("per_cpu")).expect("per-CPU stats");
        for cpu in cpus.flatten() {
            let stats = std::fs::read_to_string(cpu.path().join("stats")).expect("stats");
            let field = |name: &str| -> u64 {
                stats
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in {stats}"))
            };
            assert_eq!(field("overrun:"), 0, "the trace buffer overran: {stats}");
            assert_eq!(field("dropped events:"), 0, "events dropped: {stats}");
            entries += field("entries:");
        }
        entries
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        write_file(&self.instance.join(file), value)
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value} to {}: {e}", path.display()))
}

impl Drop for TracedCompletions {
    fn drop(&mut self) {
        let _ = self.write("tracing_on", "0");
        let _ = write_file(
            &self.instance.join("events/block/block_rq_complete/enable"),
            "0",
        );
        // An instance is removed with rmdir, its event files still listed.
        let _ = std::fs::remove_dir(&self.instance);
    }
}
