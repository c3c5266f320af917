//! VM exits: how many (counts), how long each took to handle (latency), and what they were about
//! (details), per VMM process and vCPU thread.
//!
//! No "is this a watched VM?" filter is needed here: every tracepoint used fires only in vCPU
//! threads of KVM users, so every event is one we want. The VMM is identified from the current
//! task. The one exception, `sys_enter_ioctl`, filters on `KVM_RUN` in its first instructions.

mod counts;
mod details;
mod harness;
mod latency;
