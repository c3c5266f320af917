//! Presenters that are not interactive: JSON, text, and the Prometheus endpoint.
pub mod json;
pub mod metrics;
pub mod serve;
pub mod text;
