//! Incident recordings: every window's snapshot and the events of the timeline, written as
//! they happen and read back for export, replay and reports.
//!
//! - [`store`]: checksummed, compressed frames in bounded segment files; knows nothing of
//!   their contents.
//! - [`frames`]: what the frames hold and how they are encoded; [`redact`] takes secrets out
//!   of every string first.
//! - [`events`]: the timeline, found by comparing consecutive windows.
//! - [`flight`]: the ring of the last minutes `serve` and the live view keep, and its dumps.
//! - [`recorder`] writes a recording, [`playback`] reads one; [`when`] reads the times operators
//!   type to pick a moment in one.

pub mod events;
pub mod flight;
pub mod frames;
pub mod playback;
pub mod recorder;
pub mod redact;
pub mod store;
pub mod when;
