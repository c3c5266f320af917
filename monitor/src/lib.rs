//! kvmtop: live per-VM and per-vCPU performance of a KVM host, from eBPF.
//!
//! Layers, each importing only those before it: [`model`] (what users see, the vocabulary of
//! every other layer); [`host`], [`discovery`] and [`bpf`] (reading procfs, sysfs and tracefs,
//! finding VMs, loading kernel programs); [`family`] and [`families`] (one folder per signal
//! family turning kernel maps into model figures); [`session`] (samples and windows);
//! [`output`], [`tui`] and [`advice`] (presenting the model and reasoning about it); [`app`]
//! and [`cli`]. See ARCHITECTURE.md.

pub mod advice;
pub mod app;
pub mod bpf;
pub mod cli;
pub mod control;
pub mod discovery;
pub mod families;
pub mod family;
pub mod format;
pub mod host;
pub mod model;
pub mod output;
pub mod privileges;
pub mod recording;
pub mod report;
pub mod session;
#[cfg(test)]
mod testing;
pub mod tui;
