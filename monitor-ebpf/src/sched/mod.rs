//! Scheduling of VMM threads (run-queue wait, on-CPU time, switches, migrations by topology
//! class, contenders). Unlike the exit tracepoints, the scheduler ones fire for every task on the
//! host: every program tests the watched-thread bitmap first (see `monitor_common::sched`).

mod account;
mod harness;
mod programs;
mod raw_programs;
