//! The two `bpf()` commands the batch reader needs, on raw byte buffers: one
//! `BPF_MAP_LOOKUP_BATCH` call and one `BPF_MAP_DELETE_BATCH` call. Neither aya 0.14 nor the
//! `libc` crate has them, so the command numbers and the attribute layout are spelled out here
//! (keep in sync with `union bpf_attr` in the kernel's `include/uapi/linux/bpf.h`).

use aya::Pod;
use std::{
    io,
    mem::{offset_of, size_of},
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// `enum bpf_cmd` values (stable kernel ABI since Linux 5.6).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The kernel-internal `ENOTSUPP`, which the `bpf()` syscall returns to userspace as is for a
/// map type without batch operations. `libc` has only `ENOTSUP` (`EOPNOTSUPP`, 95).
pub const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr` (the struct the `BPF_MAP_*_BATCH` commands use).
#[repr(C)]
#[derive(Debug, Default)]
struct BatchAttr {
    /// Where to resume: null for the start of the map.
    in_batch: u64,
    /// Where the kernel writes the resume position for the next call.
    out_batch: u64,
    keys: u64,
    values: u64,
    /// In: how many entries the buffers hold. Out: how many the kernel processed.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const _: () = {
    assert!(size_of::<BatchAttr>() == 56);
    assert!(offset_of!(BatchAttr, in_batch) == 0);
    assert!(offset_of!(BatchAttr, out_batch) == 8);
    assert!(offset_of!(BatchAttr, keys) == 16);
    assert!(offset_of!(BatchAttr, values) == 24);
    assert!(offset_of!(BatchAttr, count) == 32);
    assert!(offset_of!(BatchAttr, map_fd) == 36);
    assert!(offset_of!(BatchAttr, elem_flags) == 40);
    assert!(offset_of!(BatchAttr, flags) == 48);
};

/// A failed batch command: the error, and how many entries the kernel had processed before it
/// (the lookup's last entries come with `ENOENT`; a deletion stops at the first missing key).
#[derive(Debug)]
pub struct BatchError {
    pub error: io::Error,
    pub count: usize,
}

impl BatchError {
    pub fn errno(&self) -> Option<i32> {
        self.error.raw_os_error()
    }
}

/// Runs one batch command on `attr`. The kernel writes `attr.count` back (the attr's address is
/// passed, not a copy), also on most errors.
///
/// # Safety
/// Every pointer in `attr` must be null or valid for what the command reads and writes there:
/// see the callers.
unsafe fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> Result<usize, BatchError> {
    let requested = attr.count;
    // SAFETY: the kernel reads `size_of::<BatchAttr>()` bytes of `attr` and writes back only
    // its `count` field; the buffers it points at are the caller's promise.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>(),
        )
    };
    // A count beyond the request would make the caller read past what was filled.
    let count = attr.count.min(requested) as usize;
    if ret < 0 {
        Err(BatchError {
            error: io::Error::last_os_error(),
            count,
        })
    } else {
        Ok(count)
    }
}

/// The buffers of one lookup: room for `capacity` entries of `key_size` and `value_size` bytes
/// (`value_size` being all CPUs' values for a per-CPU map), and the resume positions.
pub struct LookupBuffers<'a> {
    pub keys: &'a mut [u8],
    pub values: &'a mut [u8],
    pub key_size: usize,
    pub value_size: usize,
    /// Where to resume (the previous call's `next`), or `None` for the start of the map.
    pub resume: Option<&'a [u8]>,
    /// Written with where the next call resumes. At least as large as a key: hash maps use four
    /// bytes (a bucket index), other map types a key.
    pub next: &'a mut [u8],
}

/// One `BPF_MAP_LOOKUP_BATCH`: fills the buffers with up to `capacity` entries, whole hash
/// buckets at a time, and returns how many. `ENOENT` means the map's end was reached (with its
/// count of entries filled on this call); `ENOSPC` that one bucket holds more entries than
/// `capacity`.
pub fn lookup_batch(
    map: BorrowedFd<'_>,
    buffers: &mut LookupBuffers<'_>,
    capacity: usize,
) -> Result<usize, BatchError> {
    assert!(buffers.keys.len() >= capacity * buffers.key_size);
    assert!(buffers.values.len() >= capacity * buffers.value_size);
    assert!(buffers.next.len() >= buffers.key_size.max(size_of::<u32>()));
    if let Some(resume) = buffers.resume {
        assert!(resume.len() >= buffers.key_size.max(size_of::<u32>()));
    }
    let mut attr = BatchAttr {
        in_batch: buffers.resume.map_or(0, |r| r.as_ptr() as u64),
        out_batch: buffers.next.as_mut_ptr() as u64,
        keys: buffers.keys.as_mut_ptr() as u64,
        values: buffers.values.as_mut_ptr() as u64,
        count: u32::try_from(capacity).unwrap_or(u32::MAX),
        map_fd: fd_number(map),
        ..BatchAttr::default()
    };
    // SAFETY: the kernel writes at most `count` (≤ capacity) keys of the map's key size and
    // values of its value size (all possible CPUs' for a per-CPU map): the asserts above hold
    // the buffers to that, given `key_size` and `value_size` are the map's (the typed map
    // checked its key and value types against the map). It reads and writes at most a key's
    // size (a bucket index for hash maps) at `in_batch` and `out_batch`.
    unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) }
}

/// One `BPF_MAP_DELETE_BATCH` of `keys`. The kernel stops at the first key it cannot delete
/// (`ENOENT`: already gone), the error's count saying how many it deleted before it. On other
/// errors the count means nothing (an old kernel refuses the command without writing it).
pub fn delete_batch<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> Result<(), BatchError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        count: u32::try_from(keys.len()).unwrap_or(u32::MAX),
        map_fd: fd_number(map),
        ..BatchAttr::default()
    };
    // SAFETY: the kernel only reads `count` keys of the map's key size, one after the other,
    // from `keys`: a slice of that many `K`, whose size is the map's key size (the typed map
    // checked it), so its stride too.
    unsafe { bpf(BPF_MAP_DELETE_BATCH, &mut attr) }.map(drop)
}

fn fd_number(map: BorrowedFd<'_>) -> u32 {
    // An open descriptor is never negative.
    u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use aya_obj::generated::{bpf_attr, bpf_attr__bindgen_ty_3 as KernelBatch, bpf_cmd};

    use super::*;

    /// The layout written here by hand against the one bindgen generated from the kernel's
    /// header for aya.
    #[test]
    fn the_batch_attr_matches_the_kernels_union_member() {
        assert_eq!(size_of::<BatchAttr>(), size_of::<KernelBatch>());
        assert!(size_of::<BatchAttr>() <= size_of::<bpf_attr>());
        let ours = [
            offset_of!(BatchAttr, in_batch),
            offset_of!(BatchAttr, out_batch),
            offset_of!(BatchAttr, keys),
            offset_of!(BatchAttr, values),
            offset_of!(BatchAttr, count),
            offset_of!(BatchAttr, map_fd),
            offset_of!(BatchAttr, elem_flags),
            offset_of!(BatchAttr, flags),
        ];
        let kernel = [
            offset_of!(KernelBatch, in_batch),
            offset_of!(KernelBatch, out_batch),
            offset_of!(KernelBatch, keys),
            offset_of!(KernelBatch, values),
            offset_of!(KernelBatch, count),
            offset_of!(KernelBatch, map_fd),
            offset_of!(KernelBatch, elem_flags),
            offset_of!(KernelBatch, flags),
        ];
        assert_eq!(ours, kernel);
    }

    #[test]
    fn the_command_numbers_are_the_kernels() {
        assert_eq!(
            BPF_MAP_LOOKUP_BATCH,
            libc::c_long::from(bpf_cmd::BPF_MAP_LOOKUP_BATCH as u32)
        );
        assert_eq!(
            BPF_MAP_DELETE_BATCH,
            libc::c_long::from(bpf_cmd::BPF_MAP_DELETE_BATCH as u32)
        );
    }
}
