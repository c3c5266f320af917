//! The churn test's parts: the VMs and their ledger, a strict reader of the exposition, the
//! checks of each scrape, kvmtop's resources and its kernel maps.

pub mod checks;
pub mod exposition;
pub mod maps;
pub mod resources;
pub mod vms;
