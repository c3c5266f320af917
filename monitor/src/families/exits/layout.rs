//! The record layouts of the exit tracepoints on this kernel, read from tracefs.

use std::path::Path;

use monitor_common::{
    FIELD_ABSENT,
    exits::{
        Isa, KvmExitLayout, UserspaceExitLayout,
        details::{DetailEvent, DetailLayout},
        latency::{FpuLayout, WakeupLayout},
    },
};

use crate::host::{cpu, tracefs::TraceFs};

/// Reads the `kvm_exit` layout. `exit_reason` is required; `isa` and `vcpu_id` are optional
/// (older kernels lack them), in which case the host CPU flags give the ISA.
pub fn kvm_exit(tracefs: &TraceFs, proc_root: &Path) -> Result<KvmExitLayout, String> {
    let [reason, isa, vcpu_id] = tracefs
        .fields("kvm", "kvm_exit", ["exit_reason", "isa", "vcpu_id"])
        .map_err(|e| e.to_string())?;
    let reason = reason.ok_or("kvm:kvm_exit has no exit_reason field on this kernel")?;
    if reason.size != 4 && reason.size != 8 {
        return Err(format!(
            "kvm:kvm_exit exit_reason has unexpected size {}",
            reason.size
        ));
    }
    let default_isa = cpu::virtualization_isa(proc_root).unwrap_or(Isa::Vmx);
    Ok(KvmExitLayout {
        exit_reason_offset: reason.offset,
        exit_reason_size: reason.size,
        isa_offset: isa.map_or(FIELD_ABSENT, |f| f.offset),
        vcpu_id_offset: vcpu_id.map_or(FIELD_ABSENT, |f| f.offset),
        default_isa: default_isa as u32,
    })
}

/// Reads the `kvm_userspace_exit` layout; both fields are required.
pub fn userspace_exit(tracefs: &TraceFs) -> Result<UserspaceExitLayout, String> {
    let [reason, errno] = tracefs
        .fields("kvm", "kvm_userspace_exit", ["reason", "errno"])
        .map_err(|e| e.to_string())?;
    let reason = reason.ok_or("kvm:kvm_userspace_exit has no reason field on this kernel")?;
    let errno = errno.ok_or("kvm:kvm_userspace_exit has no errno field on this kernel")?;
    Ok(UserspaceExitLayout {
        reason_offset: reason.offset,
        errno_offset: errno.offset,
    })
}

/// Reads a detail event's two fields; either may be absent (it then reads as 0), but not both,
/// and a present one must be 1, 2, 4 or 8 bytes.
pub fn detail(tracefs: &TraceFs, event: &DetailEvent) -> Result<DetailLayout, String> {
    let [sub, value] = tracefs
        .fields("kvm", event.event, [event.sub_field, event.value_field])
        .map_err(|e| e.to_string())?;
    let place = |name: &str, field: Option<crate::host::tracefs::Field>| match field {
        None => Ok((FIELD_ABSENT, 0)),
        Some(f) if matches!(f.size, 1 | 2 | 4 | 8) => Ok((f.offset, f.size)),
        Some(f) => Err(format!(
            "kvm:{} field {name} has unexpected size {}",
            event.event, f.size
        )),
    };
    let (sub_offset, sub_size) = place(event.sub_field, sub)?;
    let (value_offset, value_size) = place(event.value_field, value)?;
    if sub_offset == FIELD_ABSENT && value_offset == FIELD_ABSENT {
        return Err(format!(
            "kvm:{} has none of the fields {:?} on this kernel",
            event.event,
            [event.sub_field, event.value_field]
        ));
    }
    Ok(DetailLayout {
        sub_offset,
        sub_size,
        value_offset,
        value_size,
    })
}

/// Reads the `kvm_vcpu_wakeup` layout: `ns` and `waited` required, `valid` optional.
pub fn vcpu_wakeup(tracefs: &TraceFs) -> Result<WakeupLayout, String> {
    let [ns, waited, valid] = tracefs
        .fields("kvm", "kvm_vcpu_wakeup", ["ns", "waited", "valid"])
        .map_err(|e| e.to_string())?;
    let ns = ns.ok_or("kvm:kvm_vcpu_wakeup has no ns field on this kernel")?;
    let waited = waited.ok_or("kvm:kvm_vcpu_wakeup has no waited field on this kernel")?;
    Ok(WakeupLayout {
        ns_offset: ns.offset,
        waited_offset: waited.offset,
        valid_offset: valid.map_or(FIELD_ABSENT, |f| f.offset),
    })
}

/// Reads where `load` sits in `kvm:kvm_fpu`.
pub fn fpu(tracefs: &TraceFs) -> Result<FpuLayout, String> {
    let [load] = tracefs
        .fields("kvm", "kvm_fpu", ["load"])
        .map_err(|e| e.to_string())?;
    let load = load.ok_or("kvm:kvm_fpu has no load field on this kernel")?;
    if load.size != 4 {
        return Err(format!(
            "kvm:kvm_fpu's load field has an unexpected size {}",
            load.size
        ));
    }
    Ok(FpuLayout {
        load_offset: load.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(events: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (event, format) in events {
            let path = dir.path().join("events/kvm").join(event);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("format"), format).unwrap();
        }
        dir
    }

    #[test]
    fn reads_widened_svm_reason_and_missing_isa() {
        // A kernel that made exit_reason a u64 and has no isa/vcpu_id fields.
        let dir = fixture(&[(
            "kvm_exit",
            "\tfield:u64 exit_reason;\toffset:8;\tsize:8;\tsigned:0;\n",
        )]);
        let layout = kvm_exit(&TraceFs::new(dir.path()), dir.path()).unwrap();
        assert_eq!(layout.exit_reason_offset, 8);
        assert_eq!(layout.exit_reason_size, 8);
        assert_eq!(layout.isa_offset, FIELD_ABSENT);
        assert_eq!(layout.vcpu_id_offset, FIELD_ABSENT);
    }

    #[test]
    fn missing_tracepoint_names_itself() {
        let dir = fixture(&[]);
        let err = userspace_exit(&TraceFs::new(dir.path())).unwrap_err();
        assert!(
            err.contains("kvm:kvm_userspace_exit does not exist"),
            "{err}"
        );
    }

    #[test]
    fn this_kernel_matches_the_built_in_layouts() {
        // The programs read at compile-time offsets only when these match; if this fails on a
        // new kernel, the fallback path is taken there, correctly but more slowly.
        let tracefs = TraceFs::default();
        if !tracefs.root().join("events/kvm").exists() {
            return crate::testing::skip(
                "families::exits::layout::tests::this_kernel_matches_the_built_in_layouts",
                "tracefs has no kvm events (not mounted, or KVM not loaded)",
            );
        }
        for event in monitor_common::exits::details::DETAIL_EVENTS {
            assert_eq!(
                detail(&tracefs, &event),
                Ok(event.default),
                "{}",
                event.event
            );
        }
        assert_eq!(vcpu_wakeup(&tracefs), Ok(WakeupLayout::DEFAULT));
        assert_eq!(fpu(&tracefs), Ok(FpuLayout::DEFAULT));
    }

    #[test]
    fn detail_fields_may_be_partly_absent() {
        let dir = fixture(&[(
            "kvm_hypercall",
            "\tfield:unsigned long nr;\toffset:16;\tsize:8;\tsigned:0;\n",
        )]);
        let layout = detail(
            &TraceFs::new(dir.path()),
            &monitor_common::exits::details::HYPERCALL,
        );
        assert_eq!(
            layout,
            Ok(DetailLayout {
                sub_offset: FIELD_ABSENT,
                sub_size: 0,
                value_offset: 16,
                value_size: 8
            })
        );
        let odd = fixture(&[(
            "kvm_pio",
            "\tfield:unsigned int rw;\toffset:8;\tsize:3;\tsigned:0;\n",
        )]);
        let err = detail(&TraceFs::new(odd.path()), &monitor_common::exits::details::PIO).unwrap_err();
        assert!(err.contains("unexpected size 3"), "{err}");
    }

    #[test]
    fn missing_field_is_an_error() {
        let dir = fixture(&[(
            "kvm_userspace_exit",
            "\tfield:__u32 reason;\toffset:8;\tsize:4;\tsigned:0;\n",
        )]);
        let err = userspace_exit(&TraceFs::new(dir.path())).unwrap_err();
        assert!(err.contains("errno"), "{err}");
    }
}
