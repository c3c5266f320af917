//! End to end with the disk-reading QEMU guest: kvmtop's per-VM block figures agree with bpftrace
//! (requests attributed to the QEMU process at `block_io_start`, matched to their completions)
//! and with libbpf-tools `biolatency` (the issue → completion histogram) over the same window,
//! with `aio=native` (QEMU submits in its own threads) and `aio=threads` (its worker pool does).
//!
//! The guest's disk image lives on an ext4 filesystem on a loop device of its own, so its reads
//! are the only block I/O on that device and `biolatency -d loopN` sees exactly them. The guest
//! is frozen (SIGSTOP) outside kvmtop's window, so all three observers see the same requests.

mod block_support;
mod support;

use std::{path::Path, process::Command, sync::Mutex, thread, time::Duration};

use block_support::{
    LoopDisk, OBSERVER_SKEW_NS, Stat, TracedCompletions, bucket_range, median_bucket, ns_buckets,
    parse_biolatency, to_usec_buckets, total,
};
use guests::{DiskAio, DiskCache, DiskInterface, DiskOptions, Guest, GuestKind, GuestSpec};
use serde_json::Value;
use support::Observed;

/// Agreement required between kvmtop and the reference tools.
const TOLERANCE: f64 = 0.02;
/// Device reads in a window by tasks other than the VMM, the filesystem's own (see
/// `assert_device_reads`).
const UNATTRIBUTED_READS: u64 = 2;
/// One guest at a time: two CPU-bound emulated guests on a 2-CPU machine would starve each other.
static ONE_GUEST: Mutex<()> = Mutex::new(());

fn signal(guest: &Guest, what: &str, result: Result<(), guests::Error>) {
    result.unwrap_or_else(|e| panic!("{what} guest {}: {e}", guest.pid()));
}

/// How kvmtop is run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// As it is.
    This,
    /// Shown a tracefs without `block_io_start`, as on kernels before 6.5, so it attributes
    /// requests at insert/issue.
    Before6_5,
}

/// A tracefs with only the older block tracepoints' formats.
fn tracefs_before_6_5() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for event in ["block_rq_insert", "block_rq_issue", "block_rq_complete"] {
        let from = Path::new("/sys/kernel/tracing/events/block").join(event);
        let to = dir.path().join("events/block").join(event);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(from.join("format"), to.join("format")).unwrap();
    }
    dir
}

/// What the three observers reported over one window.
struct Observations {
    snapshot: Value,
    bpftrace: String,
    biolatency: String,
    /// Reads the kernel completed on the device in the window (`/sys/block/loopN/stat`).
    completed_reads: u64,
    /// Reads the kernel completed on the device after the window, counted only when kvmtop
    /// ended the window with requests of the device in flight (see [`late_reads`]).
    late_reads: u64,
    /// The device's completions in the window by ftrace's count (see [`TracedCompletions`]).
    traced_completions: u64,
    /// kvmtop's log: the requests it had pending at each reading.
    kvmtop_log: Vec<String>,
}

/// Whether another tracer runs on the same hooks during the window.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Beside {
    Alone,
    CompetingTracer,
}

/// Starts bpftrace, kvmtop and biolatency while `guest` is frozen, lets the guest run for 2 s
/// inside kvmtop's window, and collects what each saw.
fn observe(guest: &Guest, disk: &LoopDisk, kernel: Kernel, beside: Beside) -> Observations {
    let pid = guest.pid();
    let competitor = (beside == Beside::CompetingTracer).then(support::competing_tracer);
    let mut bpftrace = support::bpftrace(&format!(
        "tracepoint:block:block_io_start /pid == {pid}/ {{ @start[args->dev, args->sector] = 1; }}
         tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ {{
             @requests[args->dev] = count(); delete(@start[args->dev, args->sector]); }}
         END {{ clear(@start); }}"
    ));
    // kvmtop attaches before biolatency, so at both ends of a request its program runs first
    // (tracepoint callbacks run in the order they were registered, and bpftrace registered the
    // completion one before both): the two tools then time the same interval.
    let older = (kernel == Kernel::Before6_5).then(tracefs_before_6_5);
    // The requests still pending at the end are logged, to trace one the device no longer has,
    // and the VMMs discovery found and lost.
    let log = "warn,kvmtop::families::block=debug,kvmtop::discovery=debug";
    let mut kvmtop = match &older {
        Some(tracefs) => {
            support::start_window_logging(&["--tracefs".as_ref(), tracefs.path().as_os_str()], log)
        }
        None => support::start_window_logging(&[], log),
    };
    let mut biolatency = start_biolatency(disk);
    let reads_before = completed_reads(disk);
    let traced = TracedCompletions::start(disk).expect("tracing the device's completions");
    signal(guest, "thawing", guest.thaw());
    run_until_enough_reads(disk);
    signal(guest, "freezing", guest.freeze());
    // Requests submitted just before the freeze are still in the kernel: the window ends once
    // they have completed, so every observer has seen them complete.
    wait_until_idle(disk);
    let reads_at_end = completed_reads(disk);
    let traced_completions = traced.count();
    let snapshot = support::end_window(&mut kvmtop);
    bpftrace.interrupt_and_wait(support::EXIT_LIMIT);
    biolatency.interrupt_and_wait(support::EXIT_LIMIT);
    if let Some(mut competitor) = competitor {
        competitor.interrupt_and_wait(support::EXIT_LIMIT);
    }
    // After every observer's window.
    let late_reads = late_reads(disk, reads_at_end, in_flight_on(&snapshot, disk.name()));
    Observations {
        snapshot,
        bpftrace: bpftrace.stdout_text(),
        biolatency: biolatency.stdout_text(),
        completed_reads: reads_at_end - reads_before,
        late_reads,
        traced_completions,
        kvmtop_log: kvmtop.stderr_lines.clone(),
    }
}

/// Starts `biolatency` on `disk`, and waits until it traces.
fn start_biolatency(disk: &LoopDisk) -> Observed {
    // Line-buffered: biolatency's readiness line would otherwise wait in a full pipe buffer.
    let mut command = Command::new("stdbuf");
    command
        .arg("-oL")
        .arg(support::which("biolatency").expect("checked by the caller"))
        .args(["-d", disk.name()]);
    let mut biolatency = Observed::spawn(command);
    biolatency.wait_for("Tracing block device I/O", Duration::from_mins(1));
    biolatency
}

/// The completions on a device no BPF program was run for: ftrace's count over a window
/// (`traced`) less biolatency's, whose BTF tracepoint programs skip none.
fn unseen_by_bpf(traced: u64, biolatency: &str) -> u64 {
    let seen = total(&parse_biolatency(biolatency));
    eprintln!("completions on the device: ftrace {traced}, biolatency {seen}");
    traced.saturating_sub(seen)
}

/// The requests kvmtop ended the window with in flight on the device `name`, over every VM.
fn in_flight_on(snapshot: &Value, name: &str) -> u64 {
    snapshot["vms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|vm| vm["block"]["devices"].as_array())
        .flatten()
        .filter(|device| device["device"] == name)
        .filter_map(|device| device["in_flight"].as_u64())
        .sum()
}

/// How long a completion may still arrive after the window.
const LATE_LIMIT: Duration = Duration::from_secs(5);

/// Reads the kernel completes on `disk` after the window, waiting (up to [`LATE_LIMIT`]) for as
/// many as the `in_flight` requests kvmtop ended it with. [`wait_until_idle`] cannot see every
/// completion still on its way: blk-mq marks a request complete (out of `inflight`) before its
/// completion runs, in a softirq of the same CPU, and a CPU stalled for longer than [`SETTLE`]
/// (a vCPU its host preempts, say) would hold it there. Such a request is still in flight, as
/// kvmtop says, and the kernel counts it once it completes; a completion kvmtop missed is
/// counted by the kernel before the window ends, and no late read makes up for it.
fn late_reads(disk: &LoopDisk, reads_at_end: u64, in_flight: u64) -> u64 {
    if in_flight == 0 {
        return 0;
    }
    let started = std::time::Instant::now();
    loop {
        let late = completed_reads(disk) - reads_at_end;
        if late >= in_flight || started.elapsed() >= LATE_LIMIT {
            return late;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the kernel has completed on `disk` since it was set up (`/sys/block/loopN/stat`).
fn completed_reads(disk: &LoopDisk) -> u64 {
    disk.stat(Stat::Reads)
}

/// Requests the window must hold for the comparison to mean something.
const ENOUGH_READS: u64 = 1_000;

/// Lets the thawed guest run for at least 2 s and until its loop device has completed
/// [`ENOUGH_READS`] reads (the kernel's own count, `/sys/block/loopN/stat`), at most 30 s: on a
/// loaded host the guest reads slowly, and a fixed window would then hold too few requests.
fn run_until_enough_reads(disk: &LoopDisk) {
    let reads = || completed_reads(disk);
    let before = reads();
    let started = std::time::Instant::now();
    thread::sleep(Duration::from_secs(2));
    while reads() - before < ENOUGH_READS && started.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (at most 10 s) until the loop device is idle: no request in flight by the kernel's own
/// count (`/sys/block/loopN/inflight`, reads and writes) and no completion counted in its `stat`
/// for [`SETTLE`]. `inflight` alone is not enough: blk-mq marks a request complete, which takes it
/// out of `inflight`, before the driver's completion handler runs (often in a softirq, or on
/// another CPU) and fires `block_rq_complete`; a window ended in that gap would see the request
/// still in flight in every tracer. The device's completed count only moves after the
/// tracepoint, so it standing still for a while means no completion is still on its way, unless
/// the CPU holding one stalls for longer than that (see [`late_reads`]).
fn wait_until_idle(disk: &LoopDisk) {
    let name = disk.name();
    let dir = Path::new("/sys/block").join(name);
    let numbers = |file: &str| -> Vec<u64> {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let started = std::time::Instant::now();
    // Since when the device has been idle, and its completed reads and writes then.
    let mut quiet_since: Option<(std::time::Instant, Completed)> = None;
    loop {
        let busy: u64 = numbers("inflight").iter().sum();
        // Reads and writes completed (fields 1 and 5 of `stat`).
        let stat = numbers("stat");
        let completed = (stat.first().copied(), stat.get(4).copied());
        quiet_since = match quiet_since {
            Some((since, before)) if busy == 0 && before == completed => {
                if since.elapsed() >= SETTLE {
                    return;
                }
                Some((since, completed))
            }
            _ if busy == 0 => Some((std::time::Instant::now(), completed)),
            _ => None,
        };
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} still has {busy} request(s) in flight, or completions still counting, 10 s \
             after the guest froze"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A device's completed reads and writes (`stat` fields 1 and 5).
type Completed = (Option<u64>, Option<u64>);

/// How long an idle device's completed count must stand still before a window ends.
const SETTLE: Duration = Duration::from_millis(300);

/// Runs the disk reader with `aio` over one frozen window and checks kvmtop against both tools.
fn disk_reader_agrees(test: &str, aio: DiskAio, kernel: Kernel, beside: Beside) {
    let tools = [
        "bpftrace",
        "biolatency",
        "stdbuf",
        "losetup",
        "mkfs.ext4",
        "mount",
    ];
    if let Some(reason) = support::missing_prerequisite(true, &tools) {
        return support::skip(test, &reason);
    }
    let _one = ONE_GUEST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let disk = match LoopDisk::create() {
        Ok(disk) => disk,
        Err(reason) => return support::skip(test, &format!("no loop device: {reason}")),
    };
    let spec = GuestSpec::new(GuestKind::DiskReader)
        .name(format!("kvmtop-block-{}", aio_name(aio)))
        .work_dir(disk.path())
        .disk(DiskOptions {
            interface: DiskInterface::Virtio,
            cache: DiskCache::None,
            aio: Some(aio),
        });
    let guest = Guest::start(&spec).expect("starting the disk-reading guest");
    guest
        .wait_for_vcpus(support::START_LIMIT)
        .expect("disk reader running");
    signal(&guest, "freezing", guest.freeze());
    // Writes still cached from creating the image must not reach the device in the window.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    thread::sleep(Duration::from_secs(1));
    let seen = observe(&guest, &disk, kernel, beside);

    let attributed_at = match kernel {
        Kernel::This => "block:block_io_start",
        Kernel::Before6_5 => "block:block_rq_insert, block:block_rq_issue",
    };
    assert_eq!(seen.snapshot["block"]["attributed_at"], attributed_at);
    let vm = seen.snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == guest.pid())
        .unwrap_or_else(|| {
            panic!(
                "VM {} missing from {:#}\nkvmtop's log:\n{}",
                guest.pid(),
                seen.snapshot,
                seen.kvmtop_log.join("\n")
            )
        });
    let block = &vm["block"];
    let device = block["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == disk.name())
        .unwrap_or_else(|| panic!("{} missing from {block:#}", disk.name()));
    // The drive is mapped to the loop device, with its modes.
    let drive = &block["drives"][0];
    assert_eq!(drive["cache"], "none", "{drive:#}");
    assert_eq!(drive["aio"], aio_name(aio));
    assert_eq!(drive["devices"][0], disk.name(), "{drive:#}");
    assert_eq!(device["drives"].as_array().map(Vec::len), Some(1));
    let seconds = seen.snapshot["window"]["duration_seconds"]
        .as_f64()
        .unwrap();
    check_device(device, &seen, seconds, beside);
}

/// Compares kvmtop's reads of a device with the kernel's own count (`/sys/block/loopN/stat`).
/// kvmtop never counts more. It counts fewer by the completions no BPF program was run for
/// (`unseen`, see [`TracedCompletions`]): at queue depth 1 the next request reuses a request's
/// address and takes over its pending entry, so such a request is simply not counted. Beyond
/// those, a filesystem's own reads (none expected: see `LoopDisk`) are allowed up to
/// [`UNATTRIBUTED_READS`]. A lost request as these tests are built to catch (a missed
/// completion, a tracer beside kvmtop, a moved start sector) loses far more in a window of 1,000
/// reads or more.
fn assert_device_reads(
    kvmtop: u64,
    device_reads: u64,
    unseen: u64,
    device: &Value,
    snapshot: &Value,
) {
    assert!(
        kvmtop <= device_reads && device_reads - kvmtop <= UNATTRIBUTED_READS + unseen,
        "kvmtop's reads ({kvmtop}) vs the reads the kernel completed on the device \
         ({device_reads}, {unseen} of them run by no BPF program): {device:#}\n\
         block losses: dropped {}, lost {}; skipped events: {}",
        snapshot["block"]["dropped"],
        snapshot["block"]["lost"],
        snapshot["skipped_events"]
    );
    if unseen > 0 {
        eprintln!("{unseen} completion(s) on the device run by no BPF program (ftrace's count)");
    }
}

/// Checks one device's figures against bpftrace (requests) and biolatency (histogram).
fn check_device(device: &Value, seen: &Observations, seconds: f64, beside: Beside) {
    let dev = (device["major"].as_i64().unwrap() << 20) | device["minor"].as_i64().unwrap();
    let requests = device["requests"].as_u64().unwrap();
    let reads = read_requests(device);
    let reference = parse_biolatency(&seen.biolatency);
    let unseen = unseen_by_bpf(seen.traced_completions, &seen.biolatency);
    assert_device_reads(reads, seen.completed_reads, unseen, device, &seen.snapshot);
    if beside == Beside::Alone {
        // bpftrace's classic tracepoint programs would lose events to a competing tracer; alone
        // they see every request.
        let expected: u64 = support::parse_bpftrace_map(&seen.bpftrace, "requests")
            .iter()
            .filter(|(k, _)| k == &[dev])
            .map(|(_, n)| n)
            .sum();
        assert!(expected > 500, "the guest barely read: {}", seen.bpftrace);
        support::assert_within("requests", requests, expected, TOLERANCE);
    }
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    let iops = requests as f64 / seconds;
    assert!((device["iops"].as_f64().unwrap() - iops).abs() < 1e-6);
    let ops = device["ops"].as_array().unwrap();
    assert_eq!(ops[0]["op"], "read", "{device:#}");
    assert_eq!(
        ops[0]["bytes"].as_u64(),
        Some(ops[0]["requests"].as_u64().unwrap() * 4096),
        "the guest reads 4 KiB at a time"
    );

    // The issue → completion histogram.
    let ns = ns_buckets(ops);
    eprintln!(
        "biolatency (usec buckets): {reference:?}\n\
         kvmtop (usec buckets, b - 10): {:?}",
        to_usec_buckets(&ns)
    );
    support::assert_within(
        "latency histogram total",
        total(&ns),
        total(&reference),
        TOLERANCE,
    );
    // The median's bucket: the two tools' buckets cover different ranges (powers of two of ns
    // and of µs), so they must overlap, give or take the observers' skew.
    let (mine, theirs) = (median_bucket(&ns), median_bucket(&reference));
    let (lo, hi) = bucket_range(mine, 1);
    let (ref_lo, ref_hi) = bucket_range(theirs, 1_000);
    eprintln!(
        "median bucket: kvmtop [{lo}, {hi}) ns, biolatency [{}, {}) µs",
        ref_lo / 1_000,
        ref_hi / 1_000
    );
    assert!(
        lo.saturating_sub(OBSERVER_SKEW_NS) < ref_hi && ref_lo < hi + OBSERVER_SKEW_NS,
        "median bucket: kvmtop [{lo}, {hi}) ns, biolatency [{ref_lo}, {ref_hi}) ns"
    );
    let latency = &device["latency"];
    assert!(latency["p50_ns"].as_u64() <= latency["p99_ns"].as_u64());
    // The guest is frozen and the device idle, so nothing is in flight, except completions the
    // kernel did not run kvmtop's program for (on a classic tracepoint, another BPF program,
    // bpftrace's here, was running on that CPU): kvmtop reports those itself, and each leaves its
    // request pending until it expires (counted as such, no longer in flight), requests the
    // kernel completed only after the window (see `late_reads`), and completions the kernel ran
    // no BPF program for (`unseen`, which kvmtop cannot know of). Its BTF and raw tracepoint
    // programs skip none.
    let skipped: u64 = seen.snapshot["skipped_events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(program, _)| {
            program.starts_with("block_rq_complete") || program.starts_with("blk_done")
        })
        .filter_map(|(_, skipped)| skipped["count"].as_u64())
        .sum();
    let completion = seen.snapshot["block"]["hooks"]["block_rq_complete"]
        .as_str()
        .unwrap_or_default();
    if !completion.starts_with("tracepoint:") {
        assert_eq!(
            skipped, 0,
            "{completion} skipped completions: {:#}",
            seen.snapshot["skipped_events"]
        );
    }
    let in_flight = device["in_flight"].as_u64().unwrap();
    let expired = device["expired"].as_u64().unwrap();
    let late = seen.late_reads;
    assert!(
        in_flight + expired <= skipped + late + unseen,
        "the guest was frozen, yet {in_flight} request(s) in flight and {expired} expired with \
         {skipped} completion(s) skipped, {late} read(s) the kernel completed after the window \
         and {unseen} completion(s) run by no BPF program (kvmtop {reads} reads in the window, \
         the device {}): {device:#}\n\
         kvmtop's log:\n{}",
        seen.completed_reads,
        seen.kvmtop_log.join("\n")
    );
    if late > 0 {
        eprintln!(
            "{in_flight} request(s) in flight at the window's end, {late} read(s) completed by \
             the kernel after it"
        );
    }
    // The skipped completions are the completion source's losses in the window.
    let lost = seen.snapshot["block"]["lost"]["block_rq_complete"]["count"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(lost, skipped, "{:#}", seen.snapshot["block"]);
    if skipped > 0 {
        eprintln!(
            "{skipped} completion(s) skipped by the kernel, {in_flight} left in flight, \
             {expired} expired"
        );
    }
}

fn aio_name(aio: DiskAio) -> &'static str {
    match aio {
        DiskAio::Native => "native",
        DiskAio::Threads => "threads",
        DiskAio::IoUring => "io_uring",
    }
}

#[test]
fn disk_reader_with_native_aio_matches_bpftrace_and_biolatency() {
    disk_reader_agrees(
        "disk_reader_with_native_aio_matches_bpftrace_and_biolatency",
        DiskAio::Native,
        Kernel::This,
        Beside::Alone,
    );
}

#[test]
fn disk_reader_with_thread_pool_aio_matches_bpftrace_and_biolatency() {
    disk_reader_agrees(
        "disk_reader_with_thread_pool_aio_matches_bpftrace_and_biolatency",
        DiskAio::Threads,
        Kernel::This,
        Beside::Alone,
    );
}

/// An operator's bpftrace on the same hooks during the window costs kvmtop no request: every
/// read the kernel completed is counted, none is left in flight, and the histogram still matches
/// biolatency (whose programs are BTF tracepoints, which lose nothing either).
#[test]
fn a_competing_tracer_costs_no_request() {
    disk_reader_agrees(
        "a_competing_tracer_costs_no_request",
        DiskAio::Native,
        Kernel::This,
        Beside::CompetingTracer,
    );
}

/// On a device without an I/O scheduler the block layer issues a request in the submitter's
/// context, so attributing at issue (kernels before 6.5) finds every request too.
#[test]
fn without_block_io_start_requests_are_attributed_at_issue() {
    disk_reader_agrees(
        "without_block_io_start_requests_are_attributed_at_issue",
        DiskAio::Native,
        Kernel::Before6_5,
        Beside::Alone,
    );
}

/// A VMM whose iothread submits its reads in descending batches: the block layer builds one
/// request per batch, moving the request's start sector down with each read it merges at the
/// front. kvmtop still counts every request the device completed, with the merged size, and
/// leaves none in flight. The same window on classic tracepoints, where the start sector stands
/// in for a request's address, loses them: the workload really does move start sectors.
#[test]
fn requests_merged_at_the_front_are_each_counted_once() {
    let test = "requests_merged_at_the_front_are_each_counted_once";
    if let Some(reason) = support::missing_prerequisite(true, &["losetup", "biolatency", "stdbuf"])
    {
        return support::skip(test, &reason);
    }
    let _one = ONE_GUEST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // No filesystem: a mounted one reads its own metadata now and then, and those reads are
    // nobody's VM's.
    let disk = match LoopDisk::bare() {
        Ok(disk) => disk,
        Err(reason) => return support::skip(test, &format!("no loop device: {reason}")),
    };
    let spec = GuestSpec::new(GuestKind::MiniVmm)
        .name("kvmtop-frontmerge")
        // The vCPU spins on port I/O; kept from starving the observers on a small host.
        .nice(19)
        .extra_args(["--front-merged-reads", disk.device()]);
    let guest = Guest::start(&spec).expect("starting the minivmm");
    guest
        .wait_for_vcpus(support::START_LIMIT)
        .expect("minivmm running");
    signal(&guest, "freezing", guest.freeze());

    let merged = front_merged_window(&guest, &disk, &[]);
    let device = &merged.device;
    assert!(
        merged.reads >= 100 && merged.merges >= merged.reads * (FRONT_MERGE_BATCH - 1) / 2,
        "the device completed {} reads with {} merges: the batches were not merged",
        merged.reads,
        merged.merges
    );
    let reads = read_requests(device);
    assert_device_reads(reads, merged.reads, merged.unseen, device, &merged.snapshot);
    let read = &device["ops"][0];
    assert_eq!(read["op"], "read", "{device:#}");
    assert_eq!(
        read["bytes"].as_u64(),
        Some(reads * FRONT_MERGE_BATCH * 4096),
        "each request carries its whole batch: {device:#}"
    );
    assert!(
        device["in_flight"].as_u64() <= Some(merged.unseen),
        "{} completion(s) run by no BPF program: {device:#}",
        merged.unseen
    );
    assert_eq!(device["expired"], 0, "{device:#}");

    let classic = front_merged_window(&guest, &disk, &["--hook-kinds", "tracepoint"]);
    eprintln!(
        "device: {} reads, {} merges; kvmtop: {reads} reads, in flight {}, as {}; \
         classic window: device {} reads, kvmtop {}",
        merged.reads,
        merged.merges,
        device["in_flight"],
        merged.snapshot["block"]["hooks"]["block_rq_complete"],
        classic.reads,
        read_requests(&classic.device)
    );
    assert_eq!(
        classic.snapshot["block"]["hooks"]["block_rq_complete"],
        "tracepoint:block:block_rq_complete",
        "{:#}",
        classic.snapshot["block"]
    );
    assert!(
        read_requests(&classic.device) < classic.reads / 2,
        "on classic tracepoints, requests known by their start sector should be lost to front \
         merges ({} completed): {:#}",
        classic.reads,
        classic.device
    );
}

/// Reads per batch of `minivmm --front-merged-reads`.
const FRONT_MERGE_BATCH: u64 = 8;

/// What one window of the front-merging VMM showed.
struct FrontMerged {
    snapshot: Value,
    /// kvmtop's figures for the loop device.
    device: Value,
    /// Reads completed and merged on the device in the window, by the kernel's count.
    reads: u64,
    merges: u64,
    /// Completions no BPF program was run for (see [`unseen_by_bpf`]).
    unseen: u64,
}

/// Runs kvmtop (with `extra` arguments) over 2 s of the thawed guest, frozen again at the end.
fn front_merged_window(guest: &Guest, disk: &LoopDisk, extra: &[&str]) -> FrontMerged {
    let extra: Vec<&std::ffi::OsStr> = extra.iter().map(std::ffi::OsStr::new).collect();
    let mut kvmtop = support::start_window(&extra);
    let mut biolatency = start_biolatency(disk);
    let (reads, merges) = (disk.stat(Stat::Reads), disk.stat(Stat::ReadsMerged));
    let traced = TracedCompletions::start(disk).expect("tracing the device's completions");
    signal(guest, "thawing", guest.thaw());
    thread::sleep(Duration::from_secs(2));
    signal(guest, "freezing", guest.freeze());
    wait_until_idle(disk);
    let traced = traced.count();
    let (reads, merges) = (
        disk.stat(Stat::Reads) - reads,
        disk.stat(Stat::ReadsMerged) - merges,
    );
    let snapshot = support::end_window(&mut kvmtop);
    biolatency.interrupt_and_wait(support::EXIT_LIMIT);
    let unseen = unseen_by_bpf(traced, &biolatency.stdout_text());
    let device = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == guest.pid())
        .and_then(|vm| {
            vm["block"]["devices"]
                .as_array()?
                .iter()
                .find(|d| d["device"] == disk.name())
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {} under VM {}: {snapshot:#}", disk.name(), guest.pid()));
    FrontMerged {
        snapshot,
        device,
        reads,
        merges,
        unseen,
    }
}

/// The read requests kvmtop counted on one device.
fn read_requests(device: &Value) -> u64 {
    device["ops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| op["op"] == "read")
        .filter_map(|op| op["requests"].as_u64())
        .sum()
}
