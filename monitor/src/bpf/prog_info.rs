//! A loaded program's `recursion_misses` through `BPF_OBJ_GET_INFO_BY_FD`: one system call per
//! program each window, where `/proc/self/fdinfo/FD` took three (open, read, close) and a parse of
//! its text. aya 0.14's `ProgramInfo` does not expose the field, so the command is made here with
//! the layouts bindgen generated from the kernel's header for aya.

use std::{
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// Events the kernel did not run the program behind `fd` for (its `recursion_misses`, Linux
/// 5.12 and later), or `None` when the kernel does not say.
#[must_use]
pub fn recursion_misses(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: both are plain C structs of integers, for which all zeroes is a valid value; the
    // kernel requires the attribute's unused bytes to be zero.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = u32::try_from(fd.as_raw_fd()).ok()?;
    attr.info.info_len = u32::try_from(size_of::<bpf_prog_info>()).ok()?;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: the kernel writes at most `info_len` bytes to `info`, which is that large, and
    // the length it wrote to `attr.info.info_len`.
    let ret = unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) };
    // SAFETY: reading back the union member the command uses.
    let written = unsafe { attr.info.info_len } as usize;
    // An older kernel writes a shorter struct, without the field.
    let end = std::mem::offset_of!(bpf_prog_info, recursion_misses) + size_of::<u64>();
    (ret == 0 && written >= end).then_some(info.recursion_misses)
}

/// Runs `cmd` on `attr`, the whole union passed.
///
/// # Safety
/// Every pointer in `attr` must be null or valid for what the command reads and writes there.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> libc::c_long {
    // SAFETY: the kernel reads `size_of::<bpf_attr>()` bytes of `attr` and writes into it;
    // the pointers in it are the caller's promise.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    }
}

// Where `include/uapi/linux/bpf.h` puts the field, after `run_time_ns` and `run_cnt`.
const _: () = assert!(std::mem::offset_of!(bpf_prog_info, recursion_misses) == 208);

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd as _;

    use super::*;

    /// A real program: the kernel answers, with what its fdinfo says.
    #[test]
    fn a_loaded_programs_misses_are_its_fdinfos() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading a BPF program needs root");
            return;
        }
        let program = load_socket_filter();
        let misses = recursion_misses(program.as_fd());
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", program.as_raw_fd()))
            .expect("the program's fdinfo");
        let listed = fdinfo
            .lines()
            .find_map(|line| line.strip_prefix("recursion_misses:"))
            .map(|n| n.trim().parse::<u64>().expect("a number"));
        assert!(listed.is_some(), "{fdinfo}");
        assert_eq!(misses, listed);
    }

    /// `r0 = 0; exit` as a socket filter.
    fn load_socket_filter() -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd as _;
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        // SAFETY: all zeroes is a valid `bpf_attr`, and the kernel wants unused bytes zero.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.__bindgen_anon_3.prog_type = 1; // BPF_PROG_TYPE_SOCKET_FILTER
        attr.__bindgen_anon_3.insn_cnt = 2;
        attr.__bindgen_anon_3.insns = insns.as_ptr() as u64;
        attr.__bindgen_anon_3.license = license.as_ptr() as u64;
        // SAFETY: the kernel reads the instructions and the license, both alive for the call.
        let fd = unsafe { bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) };
        assert!(
            fd >= 0,
            "BPF_PROG_LOAD: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a descriptor the kernel just returned, owned by nobody else.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(i32::try_from(fd).unwrap()) }
    }

    #[test]
    fn a_descriptor_that_is_no_program_gives_nothing() {
        let file = std::fs::File::open("/proc/self/stat").expect("own stat");
        assert_eq!(recursion_misses(file.as_fd()), None);
    }
}
