//! Signal families. Each module owns its kernel maps, turns raw map contents into domain values
//! at the boundary, and reports whether its kernel sources could be attached.
pub mod block;
pub mod exits;
pub mod numa;
pub mod sched;
pub mod tlb;
pub mod vmms;

use serde::{Serialize, Serializer};

/// Whether a kernel source (tracepoint) could be attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    Attached,
    Unavailable(String),
}

/// What a source did during a sampling window, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Attached and produced events in the window.
    Live,
    /// Attached, but no event in the window (e.g. `kvm_exit` on nested/PVM hosts, or an idle VM).
    Silent,
    /// Could not be attached; the text says why.
    Unavailable(String),
}

impl SourceState {
    #[must_use]
    pub fn from_window(attachment: &Attachment, events: u64) -> Self {
        match attachment {
            Attachment::Unavailable(why) => Self::Unavailable(why.clone()),
            Attachment::Attached if events > 0 => Self::Live,
            Attachment::Attached => Self::Silent,
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live => f.write_str("live"),
            Self::Silent => f.write_str("silent"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

impl Serialize for SourceState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Events per second over a window; 0 for an empty window.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and bytes in a window stay far below 2^52"
)]
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns()` reads, so kernel
/// timestamps and userspace readings can be compared.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else; CLOCK_MONOTONIC always
    // exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}
