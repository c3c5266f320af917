//! Scheduling of VMM threads (run-queue wait, on-CPU time, switches, migrations by topology
//! class, contenders) and their NUMA hinting faults. Unlike the exit tracepoints, the scheduler
//! ones fire for every task on the host: every program tests the watched-thread bitmap first
//! (see `monitor_common::sched`).

mod account;
mod harness;
mod numa;
mod programs;
