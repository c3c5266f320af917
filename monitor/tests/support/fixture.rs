//! The fixture host's window as integration tests see it: the golden JSON the output tests keep
//! in step with the library's fixture, read back as a snapshot.

use kvmtop::model::Snapshot;

/// The fixture host's window.
pub fn snapshot() -> Snapshot {
    let golden =
        include_str!("../../src/output/snapshots/kvmtop__output__golden__the_fixture_as_json.snap");
    // An insta file: a header between two `---` lines, then the JSON.
    let json = golden
        .splitn(3, "---\n")
        .nth(2)
        .expect("the golden file's header ends with ---");
    serde_json::from_str(json).expect("the golden JSON reads back as a snapshot")
}

/// A recording of the fixture host in `dir`: `windows` windows of 1 s, the first starting
/// `first_start_ago` seconds before now, the first VM's steal `steal(i)` in window `i`, the VM
/// renamed `vm_name` if given, and `mark.1` put on the timeline before window `mark.0`.
pub fn record_steal(
    dir: &std::path::Path,
    windows: u32,
    first_start_ago: f64,
    steal: impl Fn(u32) -> f64,
    mark: (u32, &str),
    vm_name: Option<&str>,
) {
    use kvmtop::{
        model::Untrusted,
        recording::{recorder::Recorder, store},
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut recorder = Recorder::open(dir, store::Config::default()).unwrap();
    let mut snapshot = snapshot();
    if let Some(name) = vm_name {
        snapshot.vms[0].name = Untrusted::new(name);
    }
    snapshot.window.duration_seconds = 1.0;
    for i in 0..windows {
        if i == mark.0 {
            recorder.mark(Untrusted::new(mark.1)).unwrap();
        }
        let steal = steal(i);
        let vm = &mut snapshot.vms[0];
        vm.families.sched.vcpus.steal = Some(steal);
        for vcpu in &mut vm.vcpus {
            if let Some(sched) = &mut vcpu.sched {
                sched.figures.steal = Some(steal);
            }
        }
        snapshot.window.start_unix_seconds = now - first_start_ago + f64::from(i);
        recorder.record(&snapshot).unwrap();
    }
    recorder.close().unwrap();
}
