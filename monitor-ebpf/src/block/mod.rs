//! Block I/O of VMM processes: each request is attributed to the submitting process, and its
//! device noted, when it is created, found again by its key (its address, or device and start
//! sector on classic tracepoints; see `monitor_common::block::RequestKey`) when it is issued and
//! completed, and its times and size are added to the histograms of its (VMM, device,
//! operation). See
//! `monitor_common::block` for which tracepoints play which part on which kernels.

mod account;
mod harness;
mod programs;
mod raw_programs;
