//! The record layouts of `kvm:kvm_exit` and `kvm:kvm_userspace_exit` on this kernel.

use std::path::Path;

use monitor_common::{FIELD_ABSENT, Isa, KvmExitLayout, UserspaceExitLayout};

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
    fn missing_field_is_an_error() {
        let dir = fixture(&[(
            "kvm_userspace_exit",
            "\tfield:__u32 reason;\toffset:8;\tsize:4;\tsigned:0;\n",
        )]);
        let err = userspace_exit(&TraceFs::new(dir.path())).unwrap_err();
        assert!(err.contains("errno"), "{err}");
    }
}
