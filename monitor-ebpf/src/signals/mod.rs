//! One module per signal family.
pub mod block;
pub mod exits;
pub mod sched;
pub mod tlb;
pub mod vmms;
