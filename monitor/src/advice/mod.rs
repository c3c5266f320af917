//! Tuning advice: configuration facts of the host and its VMs, observations over a window,
//! and a rules engine turning both into recommendations that each carry their evidence, the
//! change to make and the source behind it.
//!
//! - [`facts`] reads the host's settings from procfs/sysfs and derives each VM's from its
//!   discovered command line and thread affinities;
//! - [`inputs`] bundles facts and observations; anything not collected is simply absent;
//! - [`config`] holds every threshold, with documented defaults, loadable from TOML;
//! - [`observe`] and [`advisor`] take observations from each snapshot and from procfs, and run
//!   the engine window after window;
//! - [`rules`] evaluates the rules (with hysteresis in [`rules::Engine`]) and describes them
//!   for `kvmtop explain`.

pub mod advisor;
pub mod config;
pub mod facts;
pub mod inputs;
pub mod observe;
pub mod rules;
#[cfg(test)]
pub(crate) mod testutil;

pub use advisor::Advisor;
pub use config::{ConfigError, Thresholds};
pub use facts::{HostFacts, Roots, VmFacts};
pub use inputs::{
    BlockObservation, HostObservations, Inputs, VcpuObservations, VmInputs, VmObservations,
};
pub use rules::{
    Engine, Evaluation, Evidence, Recommendation, Severity, Target, catalog, evaluate, explain,
};
