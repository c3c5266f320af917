//! Running totals (counts since kvmtop began counting a VM, for Prometheus counters) stay out of
//! the snapshot JSON that `snapshot --format json` prints and its schema describes: one snapshot's
//! reader has no use for them. A recording keeps them, so a recorded window exports as exactly
//! the counters `/metrics` served at that moment.
//!
//! Such fields carry `#[serde(default, skip_serializing_if = "recorded::not_recording")]` and
//! `#[schemars(skip)]`; they are written only inside [`with_running_totals`], and read back when
//! present (a recording without them reads them as zero).
//!
//! A recording also leaves out what a window would otherwise repeat: a recommendation whose
//! texts are those of an earlier recommendation of its rule in the same window is written
//! without them (see `advice::recorded`).

use std::cell::Cell;

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `serialize` with running totals included in what it serializes on this thread.
pub fn with_running_totals<T>(serialize: impl FnOnce() -> T) -> T {
    /// Restores the flag however `serialize` ends, a panic included.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RECORDING.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(RECORDING.with(|flag| flag.replace(true)));
    serialize()
}

/// Whether a running total is left out: everywhere but inside [`with_running_totals`].
#[must_use]
pub fn not_recording<T>(_total: &T) -> bool {
    !recording()
}

/// Whether what is being serialized on this thread goes into a recording.
#[must_use]
pub fn recording() -> bool {
    RECORDING.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Figures {
        count: u64,
        #[serde(skip_serializing_if = "not_recording")]
        cumulative: u64,
    }

    #[test]
    fn totals_are_written_only_when_recording() {
        let figures = Figures {
            count: 3,
            cumulative: 40,
        };
        let plain = serde_json::to_string(&figures).unwrap();
        assert_eq!(plain, r#"{"count":3}"#);
        let recorded = with_running_totals(|| serde_json::to_string(&figures).unwrap());
        assert_eq!(recorded, r#"{"count":3,"cumulative":40}"#);
        assert_eq!(serde_json::to_string(&figures).unwrap(), plain);
    }
}
