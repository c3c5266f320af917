//! Reading a recording back: its windows as snapshots and its timeline of events and marks.
//! Opening reads only the frame headers and the (small) event frames, so it stays fast for
//! long recordings; snapshots are read when asked for.

use std::path::Path;

use super::{
    events::Event,
    frames::{self, DecodeError},
    store::{self, Reader},
};
use crate::model::Snapshot;

/// An event at its time on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// Unix ns.
    pub time_ns: u64,
    pub event: Event,
}

/// An opened recording.
pub struct Recording {
    store: Reader,
    /// Store positions of the window frames, in recording order.
    windows: Vec<usize>,
    events: Vec<TimedEvent>,
    /// Frames stepped over: damage the store found, and frames that did not decode.
    problems: Vec<String>,
}

/// Why a window could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("window at {time}: {source}")]
    Decode { time: String, source: DecodeError },
}

impl Recording {
    /// Opens a recording directory or a standalone recording file.
    pub fn open(path: &Path) -> Result<Self, store::Error> {
        Ok(Self::from_store(Reader::open(path)?))
    }

    /// A recording over an opened store.
    #[must_use]
    pub fn from_store(store: Reader) -> Self {
        let mut problems: Vec<String> = store.problems().iter().map(ToString::to_string).collect();
        let windows = store.positions_of_kind(frames::WINDOW).collect();
        let mut events = Vec::new();
        for position in store.positions_of_kind(frames::EVENT) {
            let decoded = store
                .read(position)
                .map_err(|e| e.to_string())
                .and_then(|frame| {
                    frames::decode_event(&frame.payload)
                        .map(|event| TimedEvent {
                            time_ns: frame.time_ns,
                            event,
                        })
                        .map_err(|e| e.to_string())
                });
            match decoded {
                Ok(event) => events.push(event),
                Err(why) => problems.push(format!("event frame {position} skipped: {why}")),
            }
        }
        // Marks come from another process, at their own times: the timeline is by time.
        events.sort_by_key(|e| e.time_ns);
        Self {
            store,
            windows,
            events,
            problems,
        }
    }

    /// Number of windows.
    #[must_use]
    pub fn window_count(&self) -> usize {
        self.windows.len()
    }

    /// The time (unix ns, the end of the window) of each window, in order.
    #[must_use]
    pub fn window_times(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.windows
            .iter()
            .map(|&p| self.store.entries()[p].time_ns)
    }

    /// The times of the first and last windows, which `--from`/`--to` are read against; `None`
    /// when the recording holds no window.
    #[must_use]
    pub fn span(&self) -> Option<super::when::Span> {
        let mut times = self.window_times();
        let start_ns = times.next()?;
        let end_ns = times.last().unwrap_or(start_ns);
        Some(super::when::Span { start_ns, end_ns })
    }

    /// The snapshot of window `index`.
    pub fn window(&self, index: usize) -> Result<Snapshot, WindowError> {
        let position = *self.windows.get(index).ok_or(store::Error::NoFrame {
            position: index,
            frames: self.windows.len(),
        })?;
        let frame = self.store.read(position)?;
        frames::decode_window(&frame.payload).map_err(|source| WindowError::Decode {
            time: format_time(frame.time_ns),
            source,
        })
    }

    /// The index of the last window ending at or before `time_ns`, or the first window when
    /// the time is before the recording.
    #[must_use]
    pub fn window_at(&self, time_ns: u64) -> Option<usize> {
        if self.windows.is_empty() {
            return None;
        }
        let after = self.window_times().take_while(|&t| t <= time_ns).count();
        Some(after.saturating_sub(1))
    }

    /// Events and marks, by time.
    #[must_use]
    pub fn events(&self) -> &[TimedEvent] {
        &self.events
    }

    /// Damage and undecodable frames that were stepped over.
    #[must_use]
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The store beneath, for its segments and index.
    #[must_use]
    pub fn store(&self) -> &Reader {
        &self.store
    }
}

/// A unix time in ns as RFC 3339 UTC with milliseconds, for messages and reports.
#[must_use]
pub fn format_time(time_ns: u64) -> String {
    let ns = i128::from(time_ns);
    jiff::Timestamp::from_nanosecond(ns)
        .map_or_else(|_| format!("{time_ns} ns"), |t| format!("{t:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::Untrusted, recording::recorder::Recorder};

    /// Five windows a second apart, a mark after the third.
    fn recorded(dir: &Path) {
        let mut recorder = Recorder::open(dir, store::Config::default()).unwrap();
        let mut snapshot = crate::testing::fixture::snapshot();
        for i in 0..5 {
            snapshot.window.start_unix_seconds = 1_700_000_000.0 + f64::from(i);
            snapshot.window.duration_seconds = 1.0;
            recorder.record(&snapshot).unwrap();
            if i == 2 {
                recorder.mark(Untrusted::new("after the third")).unwrap();
            }
        }
        recorder.close().unwrap();
    }

    #[test]
    fn windows_and_the_timeline_read_back() {
        let dir = tempfile::tempdir().unwrap();
        recorded(dir.path());
        let recording = Recording::open(dir.path()).unwrap();
        assert_eq!(recording.problems(), &[] as &[String]);
        assert_eq!(recording.window_count(), 5);
        let times: Vec<u64> = recording.window_times().collect();
        assert_eq!(times[0], 1_700_000_001_000_000_000);
        assert_eq!(recording.window_at(times[2] + 500_000_000), Some(2));
        assert_eq!(recording.window_at(0), Some(0));
        let snapshot = recording.window(4).unwrap();
        assert!((snapshot.window.start_unix_seconds - 1_700_000_004.0).abs() < 1e-6);
        assert!(recording.events().iter().any(
            |e| matches!(&e.event, Event::Mark { text } if text.exact() == "after the third")
        ));
    }

    #[test]
    fn a_damaged_window_is_reported_and_the_others_still_read() {
        let dir = tempfile::tempdir().unwrap();
        recorded(dir.path());
        // Inside the third window's frame, in the segment that holds it: the mark is stamped
        // with the wall clock, later than the windows' times, so the window after it starts a
        // new segment (the store keeps each segment in time order).
        let clean = Recording::open(dir.path()).unwrap();
        let third = clean.store().entries()[clean.windows[2]];
        let segment = clean.store().segments()[third.segment].path.clone();
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = usize::try_from(third.offset).unwrap() + 40;
        bytes[at] ^= 0xff;
        std::fs::write(&segment, bytes).unwrap();
        let recording = Recording::open(dir.path()).unwrap();
        let read: Vec<bool> = (0..recording.window_count())
            .map(|i| recording.window(i).is_ok())
            .collect();
        assert_eq!(
            read,
            [true, true, false, true, true],
            "{:?}",
            recording.problems()
        );
        assert!(matches!(recording.window(2), Err(WindowError::Store(_))));
    }
}
