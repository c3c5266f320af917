//! A `u64` array map the agent reads through a memory mapping: plain loads, no system call.
//!
//! The kernel reads an array for `BPF_MAP_LOOKUP_BATCH` one element at a time, each with its own
//! copies out to the caller (`generic_map_lookup_batch`): for the 4,096 change counters of
//! discovery that was 6–13 ms of system call every window at 100 VMs. An array created with
//! `BPF_F_MMAPABLE` (Linux 5.5) is the same memory the programs add to, mapped read-only here.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Array, MapData};

/// The values of an array map of `u64` counters, mapped read-only.
pub struct MappedArray {
    /// Kept so the map lives as long as its mapping.
    _map: Array<MapData, u64>,
    values: NonNull<AtomicU64>,
    len: usize,
    mapped_bytes: usize,
}

// SAFETY: the mapping is shared memory the kernel writes atomically; the agent only reads it,
// through atomics, from whichever thread holds the value.
unsafe impl Send for MappedArray {}

impl MappedArray {
    /// Maps the first `len` values of `map`, which the programs created with `BPF_F_MMAPABLE`.
    ///
    /// # Errors
    /// The kernel's, when it refuses the mapping (a map without the flag).
    pub fn new(map: Array<MapData, u64>, len: u32) -> io::Result<Self> {
        let len = len as usize;
        let mapped_bytes = (len * size_of::<u64>()).next_multiple_of(page_size());
        let fd = aya::maps::IterableMap::map(&map).fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared read-only mapping of the map's values; the kernel checks that
        // the map can be mapped and that the length is within it.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let values = NonNull::new(address.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self {
            _map: map,
            values,
            len,
            mapped_bytes,
        })
    }

    /// The value at `index`, as the programs last left it; `None` beyond the array.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<u64> {
        (index < self.len).then(|| {
            // SAFETY: within the mapping, which is 8-aligned (page-aligned) and lives as long as
            // `self`; the kernel only changes the values atomically.
            unsafe { self.values.add(index).as_ref() }.load(Ordering::Relaxed)
        })
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.values.as_ptr().cast(), self.mapped_bytes) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}
