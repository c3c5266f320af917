//! Writing a recording: each window's snapshot and the events found in it, and marks.

use std::{path::Path, time::SystemTime};

use super::{
    events::{Event, EventDetector},
    frames,
    store::{self, Writer, unix_ns},
};
use crate::model::{Snapshot, Untrusted};

/// Appends windows, events and marks to a recording directory.
pub struct Recorder {
    writer: Writer,
    detector: EventDetector,
    windows: u64,
    /// When the last window ended: where what is told at the close goes on the timeline.
    last_window_ns: Option<u64>,
    bytes: u64,
    cost: Cost,
    /// The last window's JSON; its room is kept for the next one.
    payload: Vec<u8>,
}

/// What has been recorded, for the cost figures `kvmtop record` reports (its CPU time is
/// measured by the caller, on the thread that records).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// Seconds of windows recorded, and VM-seconds (each window's duration times its VMs).
    pub seconds: f64,
    pub vm_seconds: f64,
}

impl Cost {
    /// `cpu_ns` of CPU time as a share of one core over the recorded time.
    #[must_use]
    pub fn core_share(&self, cpu_ns: u64) -> Option<f64> {
        #[expect(clippy::cast_precision_loss, reason = "ns of CPU, far below 2^52")]
        let cpu = cpu_ns as f64 / 1e9;
        (self.seconds > 0.0).then(|| cpu / self.seconds)
    }

    /// Bytes on disk per VM-second.
    #[must_use]
    pub fn bytes_per_vm_second(&self, bytes: u64) -> Option<f64> {
        #[expect(clippy::cast_precision_loss, reason = "bytes, far below 2^52")]
        let bytes = bytes as f64;
        (self.vm_seconds > 0.0).then(|| bytes / self.vm_seconds)
    }
}

/// The zstd level of a recording's frames. Sixty windows of 100 VMs (1.2 MB of JSON each) that
/// a flight recorder had recorded, written again at each level on one host: level 1 took
/// 4.2 ms and 81 KB a window, zstd's default level 3 8.8 ms and 89 KB, level −1 3.6 ms and
/// 119 KB. Against a key window that holds most of each window's text, the faster match
/// finder loses nothing; the flight recorder of `serve` pays this every window.
const COMPRESSION_LEVEL: i32 = 1;

impl Recorder {
    /// Starts a new segment in `dir` (created if missing); existing segments are kept, and
    /// bounded with them by `config`. Windows are compressed against a key window (consecutive
    /// snapshots differ in little but their numbers); events, small and rare, are not.
    pub fn open(dir: &Path, mut config: store::Config) -> Result<Self, store::Error> {
        config.delta_kinds = vec![frames::WINDOW];
        config.compression_level = COMPRESSION_LEVEL;
        Ok(Self {
            writer: Writer::open(dir, config)?,
            detector: EventDetector::default(),
            windows: 0,
            last_window_ns: None,
            bytes: 0,
            cost: Cost::default(),
            payload: Vec::new(),
        })
    }

    /// Appends a window's snapshot, then the events it shows. Returns the events.
    pub fn record(&mut self, snapshot: &Snapshot) -> Result<Vec<Event>, store::Error> {
        let window = &snapshot.window;
        let end = window.start_unix_seconds + window.duration_seconds;
        // Seconds to ns; the model's times are positive and far from overflowing.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let time_ns = (end * 1e9) as u64;
        // Events are found before the write, so a failed write does not report them again.
        let events = self.detector.detect(snapshot);
        let mut payload = std::mem::take(&mut self.payload);
        frames::encode_window_into(snapshot, &mut payload);
        let appended = self.append(time_ns, frames::WINDOW, &payload);
        self.payload = payload;
        appended?;
        self.windows += 1;
        self.last_window_ns = Some(time_ns);
        self.cost.seconds += window.duration_seconds;
        #[expect(clippy::cast_precision_loss, reason = "a count of VMs")]
        let vms = snapshot.vms.len() as f64;
        self.cost.vm_seconds += window.duration_seconds * vms;
        for event in &events {
            self.append(time_ns, frames::EVENT, &frames::encode_event(event))?;
        }
        Ok(events)
    }

    /// Puts a mark on the timeline now.
    pub fn mark(&mut self, text: Untrusted) -> Result<(), store::Error> {
        let payload = frames::encode_event(&Event::Mark { text });
        self.append(unix_ns(SystemTime::now()), frames::EVENT, &payload)
    }

    fn append(&mut self, time_ns: u64, kind: u16, payload: &[u8]) -> Result<(), store::Error> {
        self.writer.append(time_ns, kind, payload)?;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    /// Windows recorded so far.
    #[must_use]
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Bytes of payload recorded so far, before compression.
    #[must_use]
    pub fn raw_bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes written to disk so far, as stored (compressed, with frame headers).
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.writer.written_bytes()
    }

    /// What recording has cost so far.
    #[must_use]
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Problems the store stepped over (retention that could not delete a segment, …).
    pub fn take_warnings(&mut self) -> Vec<store::Error> {
        self.writer.take_warnings()
    }

    /// The recording directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.writer.dir()
    }

    /// Tells on the timeline what is still pending (losses of a source that is still losing),
    /// then flushes what was written to the disk and closes the segment.
    pub fn close(mut self) -> Result<(), store::Error> {
        let told = match self.last_window_ns {
            Some(time_ns) => self.detector.finish().iter().try_for_each(|event| {
                self.append(time_ns, frames::EVENT, &frames::encode_event(event))
            }),
            None => Ok(()),
        };
        let closed = self.writer.close();
        told.and(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording that ends while a source is losing events keeps every loss on its timeline.
    #[test]
    fn losses_still_pending_at_the_close_reach_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::open(dir.path(), store::Config::default()).unwrap();
        let mut snapshot = crate::testing::fixture::snapshot();
        snapshot.families.block.lost.clear();
        for _ in 0..4 {
            snapshot.window.start_unix_seconds += 1.0;
            recorder.record(&snapshot).unwrap();
        }
        let losing = crate::model::LostEvents { count: 5, total: 5 };
        snapshot
            .families
            .block
            .lost
            .insert("blk_rq_complete".into(), losing);
        for _ in 0..3 {
            snapshot.window.start_unix_seconds += 1.0;
            recorder.record(&snapshot).unwrap();
        }
        recorder.close().unwrap();
        let recording = crate::recording::playback::Recording::open(dir.path()).unwrap();
        let lost: Vec<(u64, u64)> = recording
            .events()
            .iter()
            .filter_map(|timed| match &timed.event {
                Event::EventsLost {
                    source,
                    count,
                    windows,
                    ..
                } if source == "blk_rq_complete" => Some((*count, *windows)),
                _ => None,
            })
            .collect();
        assert_eq!(lost, [(5, 1), (10, 2)]);
        let last_window = recording.window_times().last().unwrap();
        assert_eq!(recording.events().last().unwrap().time_ns, last_window);
    }

    #[test]
    fn the_cost_counts_recorded_time_vm_seconds_and_bytes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::open(dir.path(), store::Config::default()).unwrap();
        let mut snapshot = crate::testing::fixture::snapshot();
        // Without losses, which the close would tell after the figures were taken.
        snapshot.families.block.lost.clear();
        snapshot.window.duration_seconds = 2.0;
        let vms = snapshot.vms.len();
        assert!(vms > 0);
        for _ in 0..3 {
            snapshot.window.start_unix_seconds += 2.0;
            recorder.record(&snapshot).unwrap();
        }
        recorder.mark(Untrusted::new("a mark")).unwrap();
        let cost = recorder.cost();
        let stored = recorder.stored_bytes();
        recorder.close().unwrap();
        assert!((cost.seconds - 6.0).abs() < 1e-9, "{cost:?}");
        #[expect(clippy::cast_precision_loss, reason = "a small count")]
        let vm_seconds = 6.0 * vms as f64;
        assert!((cost.vm_seconds - vm_seconds).abs() < 1e-9, "{cost:?}");
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "kvmrec"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(stored, on_disk);
        #[expect(clippy::cast_precision_loss, reason = "a small count")]
        let per_vm = on_disk as f64 / vm_seconds;
        assert!((cost.bytes_per_vm_second(stored).unwrap() - per_vm).abs() < 1e-9);
    }
}
