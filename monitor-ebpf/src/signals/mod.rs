//! One module per signal family.
pub mod exits;
