#![no_std]
// The programs live in the `monitor` binary target; this empty library lets `cargo` and clippy
// treat the crate like any other.
