//! The VMMs kvmtop watched in a phase, from its snapshot: their threads are the watched ones, and
//! VMs other users or tests run at the same time show up here.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vmm {
    pub pid: u32,
    pub name: String,
    /// Started by this phase (false: another user's or test's VM).
    pub bench: bool,
}

/// The VMMs listed in a `kvmtop snapshot --format json` output.
pub fn vmms(snapshot: &str, ours: &[u32]) -> Vec<Vmm> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(snapshot) else {
        return Vec::new();
    };
    let Some(vms) = json["vms"].as_array() else {
        return Vec::new();
    };
    vms.iter()
        .filter_map(|vm| {
            let pid = u32::try_from(vm["pid"].as_u64()?).ok()?;
            Some(Vmm {
                pid,
                name: vm["name"].as_str().unwrap_or_default().to_owned(),
                bench: ours.contains(&pid),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_snapshot_vmms() {
        let json = r#"{"vms":[{"pid":10,"name":"bench-disk","vmm":"qemu"},
            {"pid":11,"name":"other","vmm":"qemu"},{"name":"no pid"}]}"#;
        let vmms = vmms(json, &[10]);
        assert_eq!(vmms.len(), 2);
        assert!(vmms[0].bench && !vmms[1].bench);
        assert_eq!(vmms[1].name, "other");
        assert!(super::vmms("not json", &[]).is_empty());
    }
}
