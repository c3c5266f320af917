//! `--front-merged-reads DEVICE`: a thread of the VMM reading a block device the way a VMM's
//! iothread does with Linux AIO, in batches, but with each batch's reads in descending order.
//!
//! One `io_submit` of several requests runs under a block plug, so the block layer builds one
//! request from the batch: the first read (the highest offset) creates it, and each following
//! read, just below the previous one, is merged at its front, which moves the request's start
//! sector. A tracer that knows requests by (device, start sector) finds none of them at
//! completion; one that knows them by address finds every one.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Reads per batch (and per request, once merged).
const BATCH: u8 = 8;
/// Bytes per read: one page, the block size of any device.
const READ_BYTES: u16 = 4096;
/// The batches walk the first 64 MiB of the device, so every read is a new block.
const SPAN: u64 = 64 << 20;

/// `IOCB_CMD_PREAD` from `include/uapi/linux/aio_abi.h`.
const IOCB_CMD_PREAD: u16 = 0;

/// `struct iocb` of `include/uapi/linux/aio_abi.h` (little-endian layout).
#[repr(C)]
#[derive(Default)]
struct IoCb {
    data: u64,
    key: u32,
    rw_flags: i32,
    lio_opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const _: () = assert!(size_of::<IoCb>() == 64);
const _: () = assert!(size_of::<IoEvent>() == 32);

/// Reads `device` in descending batches until an error; returns the error.
pub fn read_front_merged(device: &Path) -> String {
    match run(device) {
        Ok(never) => match never {},
        Err(message) => format!("--front-merged-reads {}: {message}", device.display()),
    }
}

fn run(device: &Path) -> Result<std::convert::Infallible, String> {
    let path = CString::new(device.as_os_str().as_bytes()).map_err(|_| "NUL in the path")?;
    // SAFETY: a NUL-terminated path; the descriptor lives as long as the process.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECT) };
    if fd < 0 {
        return Err(format!("open: {}", std::io::Error::last_os_error()));
    }
    let fd = u32::try_from(fd).map_err(|_| "negative descriptor")?;
    let buffer = aligned_buffer(usize::from(BATCH) * usize::from(READ_BYTES))?;
    let mut context: libc::c_ulong = 0;
    // SAFETY: io_setup writes the new context id into `context`.
    if unsafe {
        libc::syscall(
            libc::SYS_io_setup,
            libc::c_long::from(BATCH),
            &raw mut context,
        )
    } != 0
    {
        return Err(format!("io_setup: {}", std::io::Error::last_os_error()));
    }
    let mut batch: u64 = 0;
    loop {
        let base = (batch * u64::from(BATCH) * u64::from(READ_BYTES)) % SPAN;
        let mut iocbs: Vec<IoCb> = (0..BATCH)
            .map(|i| {
                // Descending: the last read of the batch is the lowest block.
                let block = u64::from(BATCH - 1 - i);
                IoCb {
                    lio_opcode: IOCB_CMD_PREAD,
                    fildes: fd,
                    buf: buffer as u64 + block * u64::from(READ_BYTES),
                    nbytes: u64::from(READ_BYTES),
                    offset: i64::try_from(base + block * u64::from(READ_BYTES)).unwrap_or(0),
                    ..IoCb::default()
                }
            })
            .collect();
        let mut pointers: Vec<*mut IoCb> = iocbs.iter_mut().map(|c| &raw mut *c).collect();
        // SAFETY: `pointers` holds BATCH valid iocbs whose buffers stay allocated until their
        // events are reaped below.
        let submitted = unsafe {
            libc::syscall(
                libc::SYS_io_submit,
                context,
                libc::c_long::from(BATCH),
                pointers.as_mut_ptr(),
            )
        };
        if submitted < 0 {
            return Err(format!("io_submit: {}", std::io::Error::last_os_error()));
        }
        let mut events = [IoEvent::default(); BATCH as usize];
        let mut reaped = 0;
        while reaped < submitted {
            // SAFETY: room for BATCH events; no timeout (waits for at least one).
            let n = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    context,
                    1 as libc::c_long,
                    libc::c_long::from(BATCH),
                    events.as_mut_ptr(),
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                // A stop and continue (a harness freezing the VMM) interrupts the wait.
                if error.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(format!("io_getevents: {error}"));
            }
            for event in &events[..usize::try_from(n).unwrap_or(0)] {
                if event.res != i64::from(READ_BYTES) {
                    return Err(format!("a read returned {}", event.res));
                }
            }
            reaped += n;
        }
        batch += 1;
    }
}

/// A page-aligned buffer for `O_DIRECT`, never freed (it lives as long as the process).
fn aligned_buffer(size: usize) -> Result<*mut u8, String> {
    let mut buffer: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: posix_memalign writes an allocation of `size` bytes into `buffer`.
    let error = unsafe { libc::posix_memalign(&raw mut buffer, usize::from(READ_BYTES), size) };
    if error != 0 {
        return Err(format!(
            "allocating {size} bytes: {}",
            std::io::Error::from_raw_os_error(error)
        ));
    }
    Ok(buffer.cast())
}
