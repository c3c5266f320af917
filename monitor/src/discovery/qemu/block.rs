//! Block backends: `-drive` and `-blockdev` nodes, and QEMU's cache and AIO modes.

use serde::{Serialize, Serializer};

use super::opts::{Props, parse_bool};

/// One `-drive` option.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drive {
    pub id: Option<String>,
    pub file: Option<String>,
    pub format: Option<String>,
    /// `if=`: `none` when a `-device` provides the frontend, else the implied bus.
    pub interface: Option<String>,
    pub media: Option<String>,
    /// `cache=` as written (`none`, `writeback`, …).
    pub cache: Option<String>,
    /// `aio=` as written (`threads`, `native`, `io_uring`).
    pub aio: Option<String>,
    pub discard: Option<String>,
    pub node_name: Option<String>,
    pub read_only: Option<bool>,
    /// Everything else, in command-line order.
    pub props: Props,
}

impl Drive {
    pub(crate) fn from_props(mut props: Props) -> Self {
        let read_only = props
            .take("readonly")
            .or_else(|| props.take("read-only"))
            .and_then(|v| parse_bool(&v));
        Self {
            id: props.take("id"),
            file: props.take("file"),
            format: props.take("format"),
            interface: props.take("if"),
            media: props.take("media"),
            cache: props.take("cache"),
            aio: props.take("aio"),
            discard: props.take("discard"),
            node_name: props.take("node-name"),
            read_only,
            props,
        }
    }
}

/// The `file` child of a block node: a reference by node name, or defined inline
/// (`file.driver=file,file.filename=…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BlockChild {
    Ref(String),
    Inline(Box<BlockDev>),
}

/// One `-blockdev` node (or an inline child of one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlockDev {
    pub driver: Option<String>,
    pub node_name: Option<String>,
    pub filename: Option<String>,
    pub file: Option<BlockChild>,
    pub cache_direct: Option<bool>,
    pub cache_no_flush: Option<bool>,
    pub aio: Option<String>,
    pub read_only: Option<bool>,
    pub discard: Option<String>,
    pub props: Props,
}

impl BlockDev {
    pub(crate) fn from_props(mut props: Props) -> Self {
        let file = if let Some(name) = props.take("file") {
            Some(BlockChild::Ref(name))
        } else {
            let inline = props.take_prefixed("file");
            (!inline.is_empty()).then(|| BlockChild::Inline(Box::new(Self::from_props(inline))))
        };
        let flag = |props: &mut Props, key: &str| props.take(key).and_then(|v| parse_bool(&v));
        Self {
            driver: props.take("driver"),
            node_name: props.take("node-name"),
            filename: props.take("filename"),
            file,
            cache_direct: flag(&mut props, "cache.direct"),
            cache_no_flush: flag(&mut props, "cache.no-flush"),
            aio: props.take("aio"),
            read_only: flag(&mut props, "read-only"),
            discard: props.take("discard"),
            props,
        }
    }
}

/// QEMU's named cache modes, each a combination of three flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// `O_DIRECT`, guest-visible write cache.
    None,
    /// Host page cache, guest-visible write cache (QEMU's default).
    Writeback,
    /// Host page cache, every write flushed.
    Writethrough,
    /// `O_DIRECT`, every write flushed.
    Directsync,
    /// Host page cache, flushes ignored.
    Unsafe,
}

impl CacheMode {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            // "off" is the pre-1.0 spelling of "none"; old libvirt logs still carry it.
            "none" | "off" => Self::None,
            "writeback" => Self::Writeback,
            "writethrough" => Self::Writethrough,
            "directsync" => Self::Directsync,
            "unsafe" => Self::Unsafe,
            _ => return Option::None,
        })
    }

    /// `(writeback, direct, no_flush)` as QEMU defines each mode.
    #[must_use]
    pub fn flags(self) -> (bool, bool, bool) {
        match self {
            Self::None => (true, true, false),
            Self::Writeback => (true, false, false),
            Self::Writethrough => (false, false, false),
            Self::Directsync => (false, true, false),
            Self::Unsafe => (true, false, true),
        }
    }

    /// The inverse of [`Self::flags`]. With `-blockdev`, libvirt spreads a mode over the
    /// node's `cache.direct`/`cache.no-flush` and the device's `write-cache`. A combination
    /// no named mode has (no-flush with direct or without write cache) is reported as
    /// `unsafe`, since ignoring flushes is what matters for data safety.
    #[must_use]
    pub fn from_flags(writeback: bool, direct: bool, no_flush: bool) -> Self {
        match (writeback, direct, no_flush) {
            (_, _, true) => Self::Unsafe,
            (true, true, false) => Self::None,
            (false, true, false) => Self::Directsync,
            (true, false, false) => Self::Writeback,
            (false, false, false) => Self::Writethrough,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Writeback => "writeback",
            Self::Writethrough => "writethrough",
            Self::Directsync => "directsync",
            Self::Unsafe => "unsafe",
        }
    }
}

/// How QEMU submits I/O to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AioMode {
    /// A pool of worker threads doing blocking I/O (QEMU's default).
    Threads,
    /// Linux AIO; only asynchronous with `O_DIRECT`.
    Native,
    IoUring,
    Other(String),
}

impl AioMode {
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s {
            "threads" => Self::Threads,
            "native" => Self::Native,
            "io_uring" => Self::IoUring,
            other => Self::Other(other.to_owned()),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Threads => "threads",
            Self::Native => "native",
            Self::IoUring => "io_uring",
            Self::Other(s) => s,
        }
    }
}

impl Serialize for AioMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}
