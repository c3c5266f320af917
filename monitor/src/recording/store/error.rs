//! Errors callers can match on, and the problems a reader found in a recording.
use std::{io, path::PathBuf};

/// What went wrong; every variant that concerns a file names it, and the offset where one applies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The I/O error is part of the message and not a `source`, so a printed chain of causes
    // (`{:#}`) does not say it twice.
    #[error("{}: {action}: {error}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    #[error("{} at offset {offset}: {action}: {error}", path.display())]
    IoAt {
        path: PathBuf,
        offset: u64,
        action: &'static str,
        error: io::Error,
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
    /// A delta frame whose key frame cannot be read: it is damaged, gone, or no key frame. Only
    /// the frames compressed against it are lost.
    #[error("{} at offset {offset}: frame is compressed against the key frame at offset {key_offset}, which {reason}", path.display())]
    KeyFrame {
        path: PathBuf,
        offset: u64,
        key_offset: u64,
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
    pub(super) fn io(path: impl Into<PathBuf>, action: &'static str, error: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            action,
            error,
        }
    }

    pub(super) fn io_at(
        path: impl Into<PathBuf>,
        offset: u64,
        action: &'static str,
        error: io::Error,
    ) -> Self {
        Self::IoAt {
            path: path.into(),
            offset,
            action,
            error,
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
    /// A delta frame whose key frame is damaged or missing (found by
    /// [`super::Reader::verify`]): the frame is intact but cannot be decompressed.
    #[error("{} at offset {offset}: frame is compressed against the key frame at offset {key_offset}, which is damaged or missing", file.display())]
    MissingKeyFrame {
        file: PathBuf,
        offset: u64,
        key_offset: u64,
    },
    /// The segment header is damaged; its frames were searched for anyway.
    #[error("{}: damaged recording header; frames searched for anyway", file.display())]
    BadHeader { file: PathBuf },
    /// Written by a newer, incompatible kvmtop: skipped whole.
    #[error("{}: recording format version {version} is not supported (this kvmtop reads versions {} to {})", file.display(), super::format::OLDEST_READABLE_VERSION, super::format::FORMAT_VERSION)]
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
            | Self::MissingKeyFrame { file, .. }
            | Self::BadHeader { file }
            | Self::UnsupportedVersion { file, .. }
            | Self::Unreadable { file, .. } => file,
        }
    }
}
