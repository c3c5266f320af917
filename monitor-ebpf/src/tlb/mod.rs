//! TLB shootdowns: `tlb:tlb_flush` per CPU and reason for the whole host, and per VMM thread for
//! watched VMMs; KVM's paravirtual TLB flushes (`kvm:kvm_pv_tlb_flush`) per vCPU thread.
//! `tlb_flush` fires on every context switch that changes mm, so its program does the host-wide
//! per-CPU count (one array slot) and then tests the watched-VMM bitmap before anything else.

mod account;
mod harness;
mod programs;
mod raw_programs;
