//! kvmtop: live per-VM and per-vCPU performance of a KVM host, from eBPF.
//!
//! Layout: [`discovery`] finds VMs in procfs; [`bpf`] loads the kernel programs; [`signals`] has
//! one module per signal family turning kernel maps into domain values; [`session`] samples both;
//! [`window`] turns two samples into a [`model::Snapshot`]; [`output`] and [`tui`] present it.

pub mod advice;
pub mod app;
pub mod bpf;
pub mod cli;
pub mod discovery;
pub mod format;
pub mod host;
pub mod model;
pub mod output;
pub mod privileges;
pub mod recording;
pub mod session;
pub mod signals;
#[cfg(test)]
mod testing;
pub mod tui;
pub mod window;
