//! Facts about the host read from the kernel's pseudo-filesystems. Every reader takes its root
//! directory as a value so tests can point it at fixtures.
pub mod clock;
pub mod cpu;
pub mod topology;
pub mod tracefs;
