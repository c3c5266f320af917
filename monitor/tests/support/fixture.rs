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
