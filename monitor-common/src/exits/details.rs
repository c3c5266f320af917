//! Exit details: which port, MSR, guest-physical region, hypercall or IPI the exits of a VM were
//! about, counted in the kernel per (VMM, kind, sub-kind, value) from KVM's detail tracepoints.
//!
//! These tracepoints also fire on hosts where `kvm_exit` is silent (nested, PVM), so together with
//! userspace exits and halts they give an exit view there too.

/// Per-CPU hash map: [`DetailKey`] → events (u64).
pub const EXITS_DETAILS_MAP: &str = "EXITS_DETAILS";
/// Distinct (VM, kind, value) triples kept. A guest touching more distinct ports or pages than
/// this is counted in [`EXITS_DETAILS_OVERFLOW_MAP`] under its (VM, kind) instead: cardinality
/// stays bounded, and totals stay exact.
pub const EXITS_DETAILS_CAPACITY: u32 = 8_192;
/// Per-CPU hash map: [`DetailKey`] with `value` = [`DETAIL_OTHER`] → events that found
/// `EXITS_DETAILS` full.
pub const EXITS_DETAILS_OVERFLOW_MAP: &str = "EXITS_DETAILS_OVERFLOW";
/// VMs × detail kinds (8).
pub const EXITS_DETAILS_OVERFLOW_CAPACITY: u32 = 8_192;
pub const DETAIL_OTHER: u64 = u64::MAX;

/// Guest-physical addresses are counted per region, not per byte: MMIO per 4 KiB page (one
/// device's registers), page faults per 2 MiB (one huge page's worth of guest memory).
pub const MMIO_GPA_SHIFT: u32 = 12;
pub const FAULT_GPA_SHIFT: u32 = 21;
/// Page-fault error-code bits kept as the sub-kind: present, write, user, reserved, fetch.
pub const FAULT_ERROR_MASK: u64 = 0x1F;

/// What a detail counts.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailKind {
    /// `kvm_pio`: sub = direction (0 in, 1 out), value = port.
    Pio = 1,
    /// `kvm_mmio`: sub = type (0 unsatisfied read, 1 read, 2 write), value = page-aligned GPA.
    Mmio = 2,
    /// `kvm_msr`: sub = 0 read / 1 write, value = MSR index.
    Msr = 3,
    /// `kvm_page_fault`: sub = error-code bits, value = 2 MiB-aligned guest address.
    PageFault = 4,
    /// `kvm_hypercall`: value = hypercall number.
    Hypercall = 5,
    /// `kvm_apic_ipi`: sub = delivery mode (ICR bits 8–10), value = destination APIC id.
    ApicIpi = 6,
    /// `kvm_halt_poll_ns`: sub = 1 when the poll window grew, 0 when it shrank.
    HaltPoll = 7,
    /// `kvm_emulate_insn`: sub = 1 when emulation failed.
    Emulation = 8,
}

/// Key of `EXITS_DETAILS` (and of `EXITS_DETAILS_OVERFLOW`, with `value` = [`DETAIL_OTHER`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DetailKey {
    pub tgid: u32,
    /// [`DetailKind`] as u32.
    pub kind: u32,
    pub sub: u32,
    pub pad: u32,
    pub value: u64,
}

/// Where the two fields a detail program reads sit in its tracepoint record on this kernel.
/// Sizes are 1, 2, 4 or 8; offsets are [`crate::FIELD_ABSENT`] when the field does not exist
/// (the field then reads as 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetailLayout {
    pub sub_offset: u32,
    pub sub_size: u32,
    pub value_offset: u32,
    pub value_size: u32,
}

/// One detail tracepoint: its program, record fields and the layout built into the program.
#[derive(Clone, Copy, Debug)]
pub struct DetailEvent {
    pub kind: DetailKind,
    pub program: &'static str,
    pub event: &'static str,
    /// Read-only global holding this kernel's [`DetailLayout`].
    pub global: &'static str,
    /// Record fields read into `sub` and `value` (empty: not read).
    pub sub_field: &'static str,
    pub value_field: &'static str,
    /// The layout of Linux 6.x on x86-64; the loader checks it against tracefs.
    pub default: DetailLayout,
    /// The same program on the tracepoint's raw arguments, as a BTF and as a raw tracepoint.
    pub raw_programs: (&'static str, &'static str),
    /// How many raw arguments the raw programs expect (they read `sub` and `value` by position;
    /// a kernel passing another number falls back to the classic program).
    pub raw_args: usize,
}

const fn layout(sub: (u32, u32), value: (u32, u32)) -> DetailLayout {
    DetailLayout {
        sub_offset: sub.0,
        sub_size: sub.1,
        value_offset: value.0,
        value_size: value.1,
    }
}

pub const PIO: DetailEvent = DetailEvent {
    kind: DetailKind::Pio,
    program: "kvm_pio",
    event: "kvm_pio",
    global: "KVM_PIO_LAYOUT",
    sub_field: "rw",
    value_field: "port",
    default: layout((8, 4), (12, 4)),
    raw_programs: ("kvm_pio_btf", "kvm_pio_raw"),
    raw_args: 5,
};
pub const MMIO: DetailEvent = DetailEvent {
    kind: DetailKind::Mmio,
    program: "kvm_mmio",
    event: "kvm_mmio",
    global: "KVM_MMIO_LAYOUT",
    sub_field: "type",
    value_field: "gpa",
    default: layout((8, 4), (16, 8)),
    raw_programs: ("kvm_mmio_btf", "kvm_mmio_raw"),
    raw_args: 4,
};
pub const MSR: DetailEvent = DetailEvent {
    kind: DetailKind::Msr,
    program: "kvm_msr",
    event: "kvm_msr",
    global: "KVM_MSR_LAYOUT",
    sub_field: "write",
    value_field: "ecx",
    default: layout((8, 4), (12, 4)),
    raw_programs: ("kvm_msr_btf", "kvm_msr_raw"),
    raw_args: 4,
};
pub const PAGE_FAULT: DetailEvent = DetailEvent {
    kind: DetailKind::PageFault,
    program: "kvm_page_fault",
    event: "kvm_page_fault",
    global: "KVM_PAGE_FAULT_LAYOUT",
    sub_field: "error_code",
    value_field: "fault_address",
    default: layout((32, 8), (24, 8)),
    raw_programs: ("kvm_pf_btf", "kvm_pf_raw"),
    raw_args: 3,
};
pub const HYPERCALL: DetailEvent = DetailEvent {
    kind: DetailKind::Hypercall,
    program: "kvm_hypercall",
    event: "kvm_hypercall",
    global: "KVM_HYPERCALL_LAYOUT",
    sub_field: "",
    value_field: "nr",
    default: layout((crate::FIELD_ABSENT, 0), (8, 8)),
    raw_programs: ("kvm_hcall_btf", "kvm_hcall_raw"),
    raw_args: 5,
};
pub const APIC_IPI: DetailEvent = DetailEvent {
    kind: DetailKind::ApicIpi,
    program: "kvm_apic_ipi",
    event: "kvm_apic_ipi",
    global: "KVM_APIC_IPI_LAYOUT",
    sub_field: "icr_low",
    value_field: "dest_id",
    default: layout((8, 4), (12, 4)),
    raw_programs: ("kvm_ipi_btf", "kvm_ipi_raw"),
    raw_args: 2,
};
pub const HALT_POLL: DetailEvent = DetailEvent {
    kind: DetailKind::HaltPoll,
    program: "kvm_halt_poll_ns",
    event: "kvm_halt_poll_ns",
    global: "KVM_HALT_POLL_NS_LAYOUT",
    sub_field: "grow",
    value_field: "",
    default: layout((8, 1), (crate::FIELD_ABSENT, 0)),
    raw_programs: ("kvm_hpoll_btf", "kvm_hpoll_raw"),
    raw_args: 4,
};
pub const EMULATION: DetailEvent = DetailEvent {
    kind: DetailKind::Emulation,
    program: "kvm_emulate_insn",
    event: "kvm_emulate_insn",
    global: "KVM_EMULATE_INSN_LAYOUT",
    sub_field: "failed",
    value_field: "",
    default: layout((37, 1), (crate::FIELD_ABSENT, 0)),
    raw_programs: ("kvm_emul_btf", "kvm_emul_raw"),
    raw_args: 2,
};

/// Every detail tracepoint, in [`DetailKind`] order.
pub const DETAIL_EVENTS: [DetailEvent; 8] = [
    PIO, MMIO, MSR, PAGE_FAULT, HYPERCALL, APIC_IPI, HALT_POLL, EMULATION,
];

const _: () = assert!(core::mem::size_of::<DetailKey>() == 24);
const _: () = assert!(core::mem::size_of::<DetailLayout>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::DetailKey {}
    unsafe impl aya::Pod for super::DetailLayout {}
}
