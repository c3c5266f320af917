//! Installs what building, running and testing kvmtop needs. Every step checks first and only
//! installs what is missing, so running it again is fast.

pub mod apt;
mod disk;
mod kernel;
mod linker;
mod llvm;
mod rust;
mod tools;

use anyhow::Result;

use crate::util::{Phase, PhaseResult, is_root};

/// What the caller is about to do, which decides the steps.
#[derive(Clone, Copy)]
pub enum Purpose {
    /// Build and run kvmtop: toolchains, bpf-linker, kernel checks.
    Run,
    /// Also the tools tests, demo and bench drive guests and cross-check numbers with.
    Test,
}

pub fn ensure(purpose: Purpose) -> Result<PhaseResult> {
    let phase = Phase::start("setup");
    let result = steps(purpose);
    let timing = phase.finish(result.is_ok());
    result.map(|()| timing)
}

fn steps(purpose: Purpose) -> Result<()> {
    if !is_root() {
        println!("not running as root: apt-get, mount and kvmtop will be run with sudo");
    }
    let for_tests = matches!(purpose, Purpose::Test);
    let mut apt = apt::Apt::default();

    disk::ensure(for_tests)?;
    rust::ensure(for_tests)?;
    let llvm_major = rust::nightly_llvm_major()?;
    llvm::ensure(&mut apt, llvm_major)?;
    linker::ensure(llvm_major)?;
    if for_tests {
        tools::ensure(&mut apt)?;
        crate::fuzz::ensure()?;
    }
    kernel::ensure()
}
