//! Incident recordings.

pub mod store;
