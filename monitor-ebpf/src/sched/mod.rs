//! Scheduling of VMM threads (run-queue wait, on-CPU time, switches, migrations by topology
//! class, contenders). Unlike the exit tracepoints, the scheduler ones fire for every task on the
//! host: every program tests the watched-thread bitmap first (see `monitor_common::sched`). The process lifecycle programs
//! (`lifecycle.rs`) test the watched-VMM bitmap first and mark changes for discovery.

mod account;
mod harness;
mod lifecycle;
mod programs;
mod raw_programs;
