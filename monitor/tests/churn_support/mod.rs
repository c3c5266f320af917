//! The churn test's parts: the VMs and their ledger, a strict reader of the exposition, the
//! checks of each scrape, kvmtop's resources and its kernel maps.
#![allow(
    dead_code,
    reason = "shared with the support of other tests only in part"
)]

pub mod checks;
pub mod exposition;
pub mod maps;
pub mod resources;
pub mod vms;
