//! Bounded, race-tolerant reads of a procfs tree.
//!
//! Everything under `/proc` can change between two reads: processes exit, pids are reused,
//! file descriptors are closed. A process that disappears is reported as [`ProcError::Gone`],
//! which callers treat as "absent", never as a failure. Contents are never trusted: every read
//! is size-limited, and the parsers in [`super::proc_parse`] never panic.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::model::Untrusted;

use super::proc_parse::{KvmFd, parse_fd_target, parse_stat, parse_syscall};
pub use super::proc_parse::{ProcStat, SyscallState};

/// `/proc/PID/stat` is a few hundred bytes; the comm field is at most 64 bytes (kernel threads).
const STAT_LIMIT: usize = 4096;
/// Large enough for any libvirt command line seen in practice (tens of KiB).
const CMDLINE_LIMIT: usize = 1 << 20;
const COMM_LIMIT: usize = 256;
const SYSCALL_LIMIT: usize = 512;
/// A VMM has tens of fds; a process with more than this many is not worth a full walk every scan.
pub(crate) const MAX_FDS: usize = 65_536;
const MAX_TASKS: usize = 16_384;

/// The root of a procfs tree: `/proc` on a live system, a fixture directory in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRoot(PathBuf);

impl Default for ProcRoot {
    fn default() -> Self {
        Self(PathBuf::from("/proc"))
    }
}

/// Why a read under the procfs root failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process or thread no longer exists (ENOENT/ESRCH): it is absent, not broken.
    #[error("process is gone")]
    Gone,
    #[error("reading \"{path}\": {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("\"{path}\" has unexpected content: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

impl ProcError {
    #[must_use]
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }

    fn io(path: &Path, source: io::Error) -> Self {
        let gone =
            source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH);
        if gone {
            Self::Gone
        } else {
            Self::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// KVM file descriptors found in `/proc/PID/fd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvmFds {
    /// Number of `anon_inode:kvm-vm` fds (one per VM the process created).
    pub vms: usize,
    /// `(fd, vcpu id)` for each `anon_inode:kvm-vcpu:N`, sorted by fd.
    pub vcpus: Vec<(u32, u32)>,
    /// The walk stopped at [`MAX_FDS`] entries.
    pub truncated: bool,
}

fn numeric_name(name: &OsStr) -> Option<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    fn pid_path(&self, pid: u32) -> PathBuf {
        self.0.join(pid.to_string())
    }

    fn task_path(&self, pid: u32, tid: u32) -> PathBuf {
        self.pid_path(pid).join("task").join(tid.to_string())
    }

    /// Reads at most `limit` bytes; the flag says whether the file was longer.
    fn read_bounded(path: &Path, limit: usize) -> Result<(Vec<u8>, bool), ProcError> {
        let file = File::open(path).map_err(|e| ProcError::io(path, e))?;
        let mut buf = Vec::with_capacity(limit.min(crate::host::read::FIRST_READ) + 1);
        file.take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ProcError::io(path, e))?;
        let truncated = buf.len() > limit;
        buf.truncate(limit);
        Ok((buf, truncated))
    }

    /// Numeric entries of a directory, at most `limit` of them. Entries that vanish while the
    /// directory is read are skipped.
    fn numeric_entries(dir: &Path, limit: usize) -> Result<(Vec<u32>, bool), ProcError> {
        let entries = fs::read_dir(dir).map_err(|e| ProcError::io(dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => match ProcError::io(dir, e) {
                    ProcError::Gone => continue,
                    other => return Err(other),
                },
            };
            if let Some(n) = numeric_name(&entry.file_name()) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok((out, false))
    }

    /// All pids under the root, sorted.
    pub fn pids(&self) -> Result<Vec<u32>, ProcError> {
        match Self::numeric_entries(&self.0, usize::MAX) {
            Ok((pids, _)) => Ok(pids),
            // The root itself missing is a configuration error, not a vanished process.
            Err(ProcError::Gone) => Err(ProcError::Io {
                path: self.0.clone(),
                source: io::ErrorKind::NotFound.into(),
            }),
            Err(e) => Err(e),
        }
    }

    fn parse_stat_file(path: &Path) -> Result<ProcStat, ProcError> {
        let (bytes, _) = Self::read_bounded(path, STAT_LIMIT)?;
        if bytes.is_empty() {
            // An exiting process can briefly show an empty file.
            return Err(ProcError::Gone);
        }
        parse_stat(&bytes).map_err(|reason| ProcError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn stat(&self, pid: u32) -> Result<ProcStat, ProcError> {
        Self::parse_stat_file(&self.pid_path(pid).join("stat"))
    }

    pub fn task_stat(&self, pid: u32, tid: u32) -> Result<ProcStat, ProcError> {
        Self::parse_stat_file(&self.task_path(pid, tid).join("stat"))
    }

    /// The NUL-separated arguments. A command line that does not end in NUL was truncated by
    /// the limit or rewritten by the process; what is there is returned either way.
    pub fn cmdline(&self, pid: u32) -> Result<(Vec<Vec<u8>>, bool), ProcError> {
        let (bytes, truncated) =
            Self::read_bounded(&self.pid_path(pid).join("cmdline"), CMDLINE_LIMIT)?;
        let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
        if bytes.is_empty() {
            return Ok((Vec::new(), truncated));
        }
        Ok((
            bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect(),
            truncated,
        ))
    }

    fn read_comm(path: &Path) -> Result<Untrusted, ProcError> {
        let (bytes, _) = Self::read_bounded(path, COMM_LIMIT)?;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        Ok(Untrusted::from_bytes(bytes))
    }

    pub fn task_comm(&self, pid: u32, tid: u32) -> Result<Untrusted, ProcError> {
        Self::read_comm(&self.task_path(pid, tid).join("comm"))
    }

    /// Target of `/proc/PID/exe`, lossily decoded.
    pub fn exe(&self, pid: u32) -> Result<String, ProcError> {
        let path = self.pid_path(pid).join("exe");
        let target = fs::read_link(&path).map_err(|e| ProcError::io(&path, e))?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Thread ids of a process, sorted.
    pub fn tasks(&self, pid: u32) -> Result<Vec<u32>, ProcError> {
        Self::numeric_entries(&self.pid_path(pid).join("task"), MAX_TASKS).map(|(t, _)| t)
    }

    /// `None` when the file exists but its content is not understood.
    pub fn task_syscall(&self, pid: u32, tid: u32) -> Result<Option<SyscallState>, ProcError> {
        let (bytes, _) =
            Self::read_bounded(&self.task_path(pid, tid).join("syscall"), SYSCALL_LIMIT)?;
        Ok(parse_syscall(&bytes))
    }

    /// Reads every fd link and keeps the KVM ones. Only links are read, never their targets.
    pub fn kvm_fds(&self, pid: u32) -> Result<KvmFds, ProcError> {
        let dir = self.pid_path(pid).join("fd");
        let (fds, truncated) = Self::numeric_entries(&dir, MAX_FDS)?;
        let mut out = KvmFds {
            truncated,
            ..KvmFds::default()
        };
        for fd in fds {
            let path = dir.join(fd.to_string());
            let target = match fs::read_link(&path) {
                Ok(target) => target,
                Err(e) => match ProcError::io(&path, e) {
                    // Closed since the directory was listed.
                    ProcError::Gone => continue,
                    other => return Err(other),
                },
            };
            match parse_fd_target(target.as_os_str().as_bytes()) {
                Some(KvmFd::Vm) => out.vms += 1,
                Some(KvmFd::Vcpu(id)) => out.vcpus.push((fd, id)),
                None => {}
            }
        }
        // Only a process that exits while we read loses its fd directory; report that as gone.
        if out.vms == 0 && out.vcpus.is_empty() && !dir.exists() {
            return Err(ProcError::Gone);
        }
        Ok(out)
    }
}
