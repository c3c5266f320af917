//! `cargo xtask run`: build kvmtop and replace this process with it.

use std::os::unix::process::CommandExt as _;

use anyhow::{Result, anyhow};

use crate::{
    setup::{self, Purpose},
    util::{self, echo, is_root},
};

pub fn run(release: bool, args: &[String]) -> Result<()> {
    setup::ensure(Purpose::Run)?;

    let binary = util::build_kvmtop_phase(release)?;

    // exec, not spawn: kvmtop is a TUI and gets the terminal, signals and exit status directly.
    // The user's working directory is kept so relative paths in its arguments work.
    let mut kvmtop = if is_root() {
        std::process::Command::new(&binary)
    } else {
        println!("kvmtop needs root to load its eBPF programs; starting it with sudo");
        let mut sudo = std::process::Command::new("sudo");
        sudo.arg("-E").arg(&binary);
        sudo
    };
    kvmtop.args(args);
    echo(&kvmtop);
    let err = kvmtop.exec();
    Err(anyhow!(err).context(format!("could not start {}", binary.display())))
}
