//! Block I/O of VMM processes: requests, bytes and log2 latency histograms per (VMM, device,
//! operation), counted in the kernel from the block tracepoints.
//!
//! A request is attributed when it is created, in the submitting task's context: QEMU's main
//! loop and iothreads (`aio=native` submits in the caller), its thread-pool workers
//! (`aio=threads`) and `io_uring` workers (`iou-wrk-*`) are all threads of the VMM process, so
//! the tgid names the VM. Issue and completion run wherever the block layer or the driver
//! happens to be (kworkers, interrupts), so they find the request by its [`RequestKey`] in
//! [`BLOCK_PENDING_MAP`] instead.
//!
//! Submission is `block:block_io_start` (Linux 6.5+, fired when a bio becomes a request); older
//! kernels have no tracepoint there, so `block_rq_insert` and `block_rq_issue` stand in for it:
//! whichever of them first sees the request in a VMM thread attributes it, and requests issued
//! from a kworker on those kernels are not attributed. Completion is `block:block_rq_complete`
//! on every kernel: `block_io_done` is skipped for some requests when a queue's `iostats` is off.

use crate::histogram::LatencyHist;

/// Hash map: [`RequestKey`] → [`PendingRequest`], requests of watched VMMs in flight. A request
/// can vanish without a completion this program recognises (the kernel skipped a classic
/// completion program, or a request merged into another one); the agent removes such entries
/// once they are older than any plausible request and counts them as expired. Not an LRU map: an
/// LRU evicts live requests silently when full (and, with its per-CPU free lists, even before it
/// is full), where a plain hash map refuses the insert and the programs count it in
/// [`BLOCK_DROPS_MAP`].
pub const BLOCK_PENDING_MAP: &str = "BLOCK_PENDING";
pub const BLOCK_PENDING_CAPACITY: u32 = 32_768;
/// Hash map: [`BlockKey`] → [`BlockStats`]. Not per-CPU (two histograms per key would cost
/// 700 bytes per CPU); completions of one key on different CPUs add atomically.
pub const BLOCK_STATS_MAP: &str = "BLOCK_STATS";
/// VMMs × devices × operations (1,000 × 2 × 3 on the reference host). Not preallocated (an
/// entry is 704 bytes).
pub const BLOCK_STATS_CAPACITY: u32 = 8_192;
/// Per-CPU array with one u64 slot: requests not tracked because a map was full (no room in
/// [`BLOCK_PENDING_MAP`] at submission, or in [`BLOCK_STATS_MAP`] at completion).
pub const BLOCK_DROPS_MAP: &str = "BLOCK_DROPS";

/// Program names (≤ 15 bytes: the kernel keeps no more, and `bpftool` reports them by it).
pub const PROG_BLOCK_IO_START: &str = "block_io_start";
pub const PROG_BLOCK_RQ_INSERT: &str = "block_rq_insert";
pub const PROG_BLOCK_RQ_ISSUE: &str = "block_rq_issue";
pub const PROG_BLOCK_RQ_COMPLETE: &str = "block_rq_complete";
/// The same programs on the tracepoints' raw arguments (`struct request *`), as BTF tracepoints
/// (`tp_btf`) and as raw tracepoints (`raw_tp`): the kernel skips these only when the same
/// program is already running on the CPU, where it skips a classic tracepoint program whenever
/// any tracing program (or a BPF map syscall) is running there.
pub const PROG_BLOCK_IO_START_BTF: &str = "blk_start_btf";
pub const PROG_BLOCK_IO_START_RAW: &str = "blk_start_raw";
pub const PROG_BLOCK_RQ_INSERT_BTF: &str = "blk_insert_btf";
pub const PROG_BLOCK_RQ_INSERT_RAW: &str = "blk_insert_raw";
pub const PROG_BLOCK_RQ_ISSUE_BTF: &str = "blk_issue_btf";
pub const PROG_BLOCK_RQ_ISSUE_RAW: &str = "blk_issue_raw";
pub const PROG_BLOCK_RQ_COMPLETE_BTF: &str = "blk_done_btf";
pub const PROG_BLOCK_RQ_COMPLETE_RAW: &str = "blk_done_raw";
/// Raw tracepoint program running the block accounting on synthetic arguments through
/// `BPF_PROG_TEST_RUN`; loaded by tests, never attached. `args[0]` is a `HARNESS_*` operation.
pub const PROG_BLOCK_HARNESS: &str = "block_harness";
/// tgid of the submitter, dev, request id, rwbs (its first two bytes, little-endian), bytes, ns,
/// and 1 to key the request by its id alone, as the raw-argument programs key it by its address
/// (the device then is in the pending entry only, and issue and completion pass dev 0), and 1 to
/// keep an existing entry as an insert does (kernels before 6.5). Ignored unless the tgid is a
/// watched VMM, as in the real program.
pub const HARNESS_SUBMIT: u64 = 1;
/// tgid of the current task, dev, request id, rwbs, bytes, ns, and 1 when submissions are only
/// seen at insert/issue (kernels before 6.5).
pub const HARNESS_ISSUE: u64 = 2;
/// 0 (unused), dev, request id, ns, and 1 to make the removal of the request's entry fail, as
/// the kernel may refuse it (see [`PendingRequest::COMPLETED`]).
pub const HARNESS_COMPLETE: u64 = 3;

/// Read-only globals: one [`BlockRqLayout`] per program, and the [`SubmitMode`] as u32.
pub const GLOBAL_BLOCK_IO_START_LAYOUT: &str = "BLOCK_IO_START_LAYOUT";
pub const GLOBAL_BLOCK_RQ_INSERT_LAYOUT: &str = "BLOCK_RQ_INSERT_LAYOUT";
pub const GLOBAL_BLOCK_RQ_ISSUE_LAYOUT: &str = "BLOCK_RQ_ISSUE_LAYOUT";
pub const GLOBAL_BLOCK_RQ_COMPLETE_LAYOUT: &str = "BLOCK_RQ_COMPLETE_LAYOUT";
pub const GLOBAL_BLOCK_SUBMIT_MODE: &str = "BLOCK_SUBMIT_MODE";
/// Read-only global: the [`RequestFields`] of this kernel, for the raw-argument programs.
pub const GLOBAL_BLOCK_REQUEST_FIELDS: &str = "BLOCK_REQUEST_FIELDS";

/// Where this kernel keeps what the raw-argument programs read of a `struct request`, from its
/// BTF: Rust eBPF programs get no CO-RE relocations, so the agent resolves the offsets at
/// start-up and hands them over as a load-time constant. The programs compute the device as the
/// classic records give it (`dev` of the whole disk), the size and the operation; they key the
/// request by its address (see [`RequestKey`]), so they need no sector, and read the device and
/// operation only where they first see a watched VMM's request.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFields {
    /// `request.q` (`struct request_queue *`).
    pub q: u32,
    /// `request.__data_len` (u32).
    pub data_len: u32,
    /// `request.cmd_flags` (u32, the operation in its low [`REQ_OP_BITS`] bits).
    pub cmd_flags: u32,
    /// `request_queue.disk` (`struct gendisk *`).
    pub disk: u32,
    /// `gendisk.major` (int).
    pub major: u32,
    /// `gendisk.first_minor` (int).
    pub first_minor: u32,
    /// This kernel's `enum req_op` values the operation is classified by.
    pub op_read: u32,
    pub op_write: u32,
    pub op_flush: u32,
    pub op_discard: u32,
    pub op_secure_erase: u32,
}

/// The operation bits of `cmd_flags` (`REQ_OP_BITS` in `include/linux/blk_types.h`).
pub const REQ_OP_BITS: u32 = 8;

impl RequestFields {
    /// Placeholder until the loader sets this kernel's.
    pub const UNSET: Self = Self {
        q: 0,
        data_len: 0,
        cmd_flags: 0,
        disk: 0,
        major: 0,
        first_minor: 0,
        op_read: 0,
        op_write: 0,
        op_flush: 0,
        op_discard: 0,
        op_secure_erase: 0,
    };

    /// The operation of `cmd_flags`, as `blk_fill_rwbs` names it in classic records.
    #[must_use]
    pub const fn op_of(&self, cmd_flags: u32) -> BlockOp {
        let op = cmd_flags & ((1 << REQ_OP_BITS) - 1);
        if op == self.op_read {
            BlockOp::Read
        } else if op == self.op_write {
            BlockOp::Write
        } else if op == self.op_flush {
            BlockOp::Flush
        } else if op == self.op_discard || op == self.op_secure_erase {
            BlockOp::Discard
        } else {
            BlockOp::Other
        }
    }
}

/// Where requests are attributed to the submitting process.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitMode {
    /// `block_io_start`, in the submitter's context for every request.
    IoStart = 1,
    /// `block_rq_insert` or `block_rq_issue`, whichever runs in a VMM thread first.
    InsertOrIssue = 2,
}

/// The operation of a request, from the first letters of the record's `rwbs`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOp {
    Read = 0,
    Write = 1,
    Flush = 2,
    /// Discard and secure erase.
    Discard = 3,
    /// Write-zeroes, zone management and anything newer (`N` in `rwbs`).
    Other = 4,
}

/// Classifies `rwbs` (as `blk_fill_rwbs` writes it): an optional `F` for a pre-flush, then the
/// operation letter, then flag letters (`F` for FUA, `A`, `S`, `M`). A write with a pre-flush
/// counts as a write, a flush as a flush.
#[must_use]
pub const fn op_of_rwbs(first: u8, second: u8) -> BlockOp {
    let letter = if first == b'F' && matches!(second, b'R' | b'W' | b'D' | b'F' | b'N') {
        second
    } else {
        first
    };
    match letter {
        b'R' => BlockOp::Read,
        b'W' => BlockOp::Write,
        b'F' => BlockOp::Flush,
        b'D' => BlockOp::Discard,
        _ => BlockOp::Other,
    }
}

/// A request in flight, as its programs find it again at issue and completion.
///
/// Where the programs read the request itself (BTF and raw tracepoints), the key is its address
/// (`struct request *`) alone, with `dev` 0: the address stays the same from creation to
/// completion, whatever the block layer does to the request meanwhile, and no two requests in
/// flight share it. The device is kept in [`PendingRequest::dev`] from the request's creation,
/// so completion needs nothing of the request but its address, and issue nothing but the size
/// of a request that is pending. Classic records carry no address, so there the key is the
/// device and the start sector, which a bio merged at the front of the request moves (the
/// completion then finds nothing and the entry expires) and which two requests in flight at
/// once may share. The programs of the block family therefore all run as one kind of hook: the
/// agent never mixes the two identities in one map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// The kernel's `dev_t` on classic records, 0 where the request is known by its address.
    pub dev: u32,
    pub pad: u32,
    /// The request's address, or its start sector on classic tracepoints.
    pub id: u64,
}

impl RequestKey {
    /// A request read from its `struct request` (BTF and raw tracepoints).
    #[must_use]
    pub const fn by_address(rq: u64) -> Self {
        Self {
            dev: 0,
            pad: 0,
            id: rq,
        }
    }

    /// A request read from a classic record.
    #[must_use]
    pub const fn by_sector(dev: u32, sector: u64) -> Self {
        Self {
            dev,
            pad: 0,
            id: sector,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// The submitting process, or [`PendingRequest::COMPLETED`].
    pub tgid: u32,
    /// [`BlockOp`] as u32.
    pub op: u32,
    /// The kernel's `dev_t` (major << 20 | minor) of the whole disk, as the classic records give
    /// it; 0 when it could not be read.
    pub dev: u32,
    /// Size when issued (merges grow a request after it is created), else when created. The
    /// kernel keeps a request's size in 32 bits (`__data_len`, and `nr_bytes` in the records).
    pub bytes: u32,
    pub submit_ns: u64,
    /// 0 until the request is issued to the driver.
    pub issue_ns: u64,
}

impl PendingRequest {
    /// `tgid` of an entry whose request has completed and been counted, but which the kernel
    /// refused to remove: since Linux 6.15 a hash map's bucket lock is a resilient spinlock, and
    /// a delete returns `ETIMEDOUT` or `EDEADLK` instead of waiting on a lock held too long. The
    /// completion marks its entry first, so such an entry is neither in flight nor expired, and
    /// the next request at its key, or the agent, replaces or removes it. No VMM has pid 0 (the
    /// idle task's).
    pub const COMPLETED: u32 = 0;

    /// Whether this entry's request has completed (see [`Self::COMPLETED`]).
    #[must_use]
    pub const fn is_completed(&self) -> bool {
        self.tgid == Self::COMPLETED
    }
}

/// Key of `BLOCK_STATS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub tgid: u32,
    /// The kernel's `dev_t` (major << 20 | minor).
    pub dev: u32,
    /// [`BlockOp`] as u32.
    pub op: u32,
    pub pad: u32,
}

/// Running totals of one (VMM, device, operation), over completed requests.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockStats {
    pub bytes: u64,
    /// Completed requests whose issue was not seen (e.g. a flush the block layer served with its
    /// own flush request): their whole life is in `latency`, and they are not in `queue`.
    pub unissued: u64,
    /// Issue → completion: time at the device (the interval `biolatency` measures). Its count
    /// is the number of completed requests.
    pub latency: LatencyHist,
    /// Submission → issue: time queued in the block layer (plug, scheduler, waiting for a tag).
    pub queue: LatencyHist,
}

impl BlockStats {
    pub const ZERO: Self = Self {
        bytes: 0,
        unissued: 0,
        latency: LatencyHist::ZERO,
        queue: LatencyHist::ZERO,
    };
}

/// Where the fields a block program reads sit in its record on this kernel. `bytes` and `rwbs`
/// are [`crate::FIELD_ABSENT`] when the program does not read them (completion) or the kernel
/// lacks them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRqLayout {
    pub dev_offset: u32,
    pub sector_offset: u32,
    pub bytes_offset: u32,
    pub rwbs_offset: u32,
}

impl BlockRqLayout {
    /// `block_io_start`, `block_rq_insert` and `block_rq_issue` of Linux 6.x on x86-64.
    pub const DEFAULT: Self = Self {
        dev_offset: 8,
        sector_offset: 16,
        bytes_offset: 28,
        rwbs_offset: 34,
    };
    /// `block_rq_complete`: only the request's identity is read.
    pub const COMPLETE_DEFAULT: Self = Self {
        dev_offset: 8,
        sector_offset: 16,
        bytes_offset: crate::FIELD_ABSENT,
        rwbs_offset: crate::FIELD_ABSENT,
    };
}

/// The kernel's `dev_t` as (major, minor).
#[must_use]
pub const fn dev_parts(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xF_FFFF)
}

/// (major, minor) as the kernel's `dev_t`.
#[must_use]
pub const fn dev_of(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xF_FFFF)
}

const _: () = assert!(core::mem::size_of::<RequestKey>() == 16);
const _: () = assert!(core::mem::size_of::<PendingRequest>() == 32);
const _: () = assert!(core::mem::size_of::<BlockKey>() == 16);
const _: () =
    assert!(core::mem::size_of::<BlockStats>() == 16 + 2 * core::mem::size_of::<LatencyHist>());
const _: () = assert!(core::mem::size_of::<BlockRqLayout>() == 16);
const _: () = assert!(core::mem::size_of::<RequestFields>() == 44);
const _: () = assert!(matches!(op_of_rwbs(b'R', b'S'), BlockOp::Read));
const _: () = assert!(matches!(op_of_rwbs(b'F', b'W'), BlockOp::Write));
const _: () = assert!(matches!(op_of_rwbs(b'W', b'F'), BlockOp::Write));
const _: () = assert!(matches!(op_of_rwbs(b'F', b'F'), BlockOp::Flush));
const _: () = assert!(matches!(op_of_rwbs(b'F', 0), BlockOp::Flush));
const _: () = assert!(matches!(op_of_rwbs(b'D', b'E'), BlockOp::Discard));
const _: () = assert!(matches!(op_of_rwbs(b'N', 0), BlockOp::Other));
const _: () = assert!(dev_parts(dev_of(259, 3)).0 == 259 && dev_parts(dev_of(259, 3)).1 == 3);

/// Every program and map of the family, by the name the agent looks it up by.
const PROGRAMS: &[&str] = &[
    PROG_BLOCK_IO_START,
    PROG_BLOCK_RQ_INSERT,
    PROG_BLOCK_RQ_ISSUE,
    PROG_BLOCK_RQ_COMPLETE,
    PROG_BLOCK_IO_START_BTF,
    PROG_BLOCK_IO_START_RAW,
    PROG_BLOCK_RQ_INSERT_BTF,
    PROG_BLOCK_RQ_INSERT_RAW,
    PROG_BLOCK_RQ_ISSUE_BTF,
    PROG_BLOCK_RQ_ISSUE_RAW,
    PROG_BLOCK_RQ_COMPLETE_BTF,
    PROG_BLOCK_RQ_COMPLETE_RAW,
    PROG_BLOCK_HARNESS,
];
const MAPS: &[&str] = &[BLOCK_PENDING_MAP, BLOCK_STATS_MAP, BLOCK_DROPS_MAP];
/// The read-only globals the agent sets before loading (record layouts, settings).
const GLOBALS: &[&str] = &[
    GLOBAL_BLOCK_IO_START_LAYOUT,
    GLOBAL_BLOCK_RQ_INSERT_LAYOUT,
    GLOBAL_BLOCK_RQ_ISSUE_LAYOUT,
    GLOBAL_BLOCK_RQ_COMPLETE_LAYOUT,
    GLOBAL_BLOCK_SUBMIT_MODE,
    GLOBAL_BLOCK_REQUEST_FIELDS,
];
pub const NAMES: crate::Names = crate::Names {
    programs: PROGRAMS,
    maps: MAPS,
    globals: GLOBALS,
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::RequestKey {}
    unsafe impl aya::Pod for super::PendingRequest {}
    unsafe impl aya::Pod for super::BlockKey {}
    unsafe impl aya::Pod for super::BlockStats {}
    unsafe impl aya::Pod for super::BlockRqLayout {}
    unsafe impl aya::Pod for super::RequestFields {}
}
