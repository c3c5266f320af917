//! The host the VMs share, as the live view's header shows it: its CPUs, memory and swap beside
//! the VMs' demand (`kvmtop_vm_vcpus`, the VMs' memory), and how its memory management is set.
//! One series each, without labels but the info series'; a figure kvmtop could not read has no
//! series rather than a made-up value.

use crate::{
    model::{Snapshot, host::HostState},
    output::series::plain::{Gathered, Series},
};

/// The host's gauges and its info series.
pub fn register(gathered: &mut Gathered, snapshot: &Snapshot) {
    let state = &snapshot.host.state;
    let gauges: [(&'static str, &'static str, Option<u64>); 6] = [
        (
            "kvmtop_host_cpus",
            "Online CPUs of the host. vCPU overcommit: sum(kvmtop_vm_vcpus) / kvmtop_host_cpus.",
            state.cpus.map(u64::from),
        ),
        (
            "kvmtop_host_memory_bytes",
            "The host's memory (MemTotal).",
            state.memory_bytes,
        ),
        (
            "kvmtop_host_memory_available_bytes",
            "Memory the host can still give without swapping (MemAvailable).",
            state.memory_available_bytes,
        ),
        (
            "kvmtop_host_swap_bytes",
            "The host's swap (SwapTotal).",
            state.swap_bytes,
        ),
        (
            "kvmtop_host_swap_free_bytes",
            "Swap still free (SwapFree).",
            state.swap_free_bytes,
        ),
        (
            "kvmtop_host_ksm_pages_sharing",
            "Guest pages KSM maps to a shared page (/sys/kernel/mm/ksm/pages_sharing): memory \
             it saves, in pages.",
            state.ksm_pages_sharing,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            let mut gauge = Series::gauge(name, help, &[]);
            gauge.with_label_values(&[]).set(value);
            gathered.add(gauge);
        }
    }
    if let Some(busy) = state.cpu_busy {
        let mut gauge = Series::gauge(
            "kvmtop_host_cpu_busy_ratio",
            "Share of all the host's CPU time not idle over the last window (0 to 1, \
             /proc/stat).",
            &[],
        );
        gauge.with_label_values(&[]).set(busy);
        gathered.add(gauge);
    }
    gathered.add(info(snapshot, state));
}

/// Always 1: the kernel and the memory-management settings as labels, each empty when unknown.
fn info(snapshot: &Snapshot, state: &HostState) -> Series {
    let mut info = Series::gauge(
        "kvmtop_host_info",
        "Always 1: the host's kernel and memory-management settings as labels (thp: \
         transparent huge pages' enabled choice; ksm: running, stopped or unmerged; \
         numa_balancing: on, off or tiering; empty when unknown).",
        &["kernel", "thp", "ksm", "numa_balancing"],
    );
    let thp = state
        .transparent_hugepages
        .as_ref()
        .map_or("", |thp| thp.exact());
    info.with_label_values(&[
        &snapshot.host.kernel,
        thp,
        state.ksm_label().unwrap_or(""),
        state.numa_balancing_label().unwrap_or(""),
    ])
    .set(1);
    info
}

#[cfg(test)]
mod tests {
    use crate::{output::metrics::tests::full, testing::fixture};

    #[test]
    fn the_host_is_served_as_read_and_unknowns_have_no_series() {
        let mut snapshot = fixture::snapshot();
        let text = full(&snapshot);
        let state = &snapshot.host.state;
        assert!(
            text.contains(&format!("\nkvmtop_host_cpus {}\n", state.cpus.unwrap())),
            "{text}"
        );
        assert!(text.contains("\nkvmtop_host_info{kernel=\""), "{text}");
        snapshot.host.state = crate::model::host::HostState::default();
        let text = full(&snapshot);
        assert!(!text.contains("kvmtop_host_cpus"), "{text}");
        assert!(!text.contains("kvmtop_host_cpu_busy_ratio"), "{text}");
        assert!(
            text.contains(
                "kvmtop_host_info{kernel=\"6.18.0\",ksm=\"\",numa_balancing=\"\",thp=\"\"} 1"
            ),
            "{text}"
        );
    }
}
