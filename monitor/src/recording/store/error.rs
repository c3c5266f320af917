//! Errors callers can match on, and the problems a reader found in a recording.
use std::{io, path::PathBuf};

/// What went wrong; every variant that concerns a file names it, and the offset where one applies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{} at offset {offset}: {action}: {source}", path.display())]
    IoAt {
        path: PathBuf,
        offset: u64,
        action: &'static str,
        source: io::Error,
    },
    #[error("{}: another process is recording into this directory", path.display())]
    Locked { path: PathBuf },
    #[error("{}: not a kvmtop recording (no recording header, no frames)", path.display())]
    NotARecording { path: PathBuf },
    #[error("{} exists already; not overwriting it", path.display())]
    Exists { path: PathBuf },
    #[error("{} at offset {offset}: frame payload fails its checksum", path.display())]
    Checksum { path: PathBuf, offset: u64 },
    #[error("{} at offset {offset}: frame payload does not decompress: {reason}", path.display())]
    Decompress {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("no frame at position {position}: the recording has {frames}")]
    NoFrame { position: usize, frames: usize },
    #[error("payload of {len} bytes is larger than the {max} bytes a frame may carry")]
    TooLarge { len: usize, max: usize },
    #[error("invalid recording configuration: {0}")]
    Config(String),
}

impl Error {
    pub(super) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(super) fn io_at(
        path: impl Into<PathBuf>,
        offset: u64,
        action: &'static str,
        source: io::Error,
    ) -> Self {
        Self::IoAt {
            path: path.into(),
            offset,
            action,
            source,
        }
    }
}

/// Damage a reader found and stepped over. Reported as data: a damaged recording still yields
/// every intact frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Bytes that are no frame, between two intact frames (or the header and a frame): damage in
    /// the middle of a segment. The frames they held are lost.
    #[error("{} at offset {offset}: {len} damaged bytes skipped", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        len: u64,
    },
    /// The segment ends in bytes that are no complete frame: the writer was stopped while
    /// writing it, or is writing it right now (a live recording), or the tail was damaged.
    #[error("{} at offset {offset}: the last {len} bytes are no complete frame (writer stopped or still writing)", file.display())]
    TornTail {
        file: PathBuf,
        offset: u64,
        len: u64,
    },
    /// An intact header whose payload fails its checksum (found by [`super::Reader::verify`]).
    #[error("{} at offset {offset}: frame payload fails its checksum", file.display())]
    BadPayload { file: PathBuf, offset: u64 },
    /// The segment header is damaged; its frames were searched for anyway.
    #[error("{}: damaged recording header; frames searched for anyway", file.display())]
    BadHeader { file: PathBuf },
    /// Written by a newer, incompatible kvmtop: skipped whole.
    #[error("{}: recording format version {version} is not supported (this kvmtop reads version {})", file.display(), super::format::FORMAT_VERSION)]
    UnsupportedVersion { file: PathBuf, version: u16 },
    /// The segment could not be opened or read.
    #[error("{}: unreadable: {error}", file.display())]
    Unreadable { file: PathBuf, error: String },
}

impl Problem {
    /// The file the problem is in.
    #[must_use]
    pub fn file(&self) -> &std::path::Path {
        match self {
            Self::Corrupt { file, .. }
            | Self::TornTail { file, .. }
            | Self::BadPayload { file, .. }
            | Self::BadHeader { file }
            | Self::UnsupportedVersion { file, .. }
            | Self::Unreadable { file, .. } => file,
        }
    }
}
