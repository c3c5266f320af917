//! Each guest's private directory (sockets, logs, disk images) and the clean-up of those left
//! behind by test processes killed without unwinding.

use std::fs;
use std::path::Path;

use tempfile::TempDir;

use crate::Error;

const GUEST_DIR_PREFIX: &str = "kvmtop-guest-";
/// File in a guest directory naming the pid of the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Creates this guest's private directory in `work_dir`, after removing the directories that
/// processes killed without unwinding (Ctrl-C on `cargo test`, SIGKILL) left there, disk images
/// included.
pub(crate) fn create_guest_dir(work_dir: &Path) -> Result<TempDir, Error> {
    let context = || format!("creating a guest directory in \"{}\"", work_dir.display());
    fs::create_dir_all(work_dir).map_err(|e| Error::io(context(), e))?;
    remove_orphaned_guest_dirs(work_dir);
    let dir = tempfile::Builder::new()
        .prefix(GUEST_DIR_PREFIX)
        .tempdir_in(work_dir)
        .map_err(|e| Error::io(context(), e))?;
    fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
        .map_err(|e| Error::io(context(), e))?;
    Ok(dir)
}

/// Best effort: a directory whose owner file names a pid that no longer exists is an orphan.
/// Directories without an owner file may be in the middle of being created and are left alone.
fn remove_orphaned_guest_dirs(work_dir: &Path) {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_guest_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(GUEST_DIR_PREFIX));
        if !is_guest_dir {
            continue;
        }
        let Some(owner) = fs::read_to_string(entry.path().join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_of_dead_owners_are_removed() {
        let work = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = work.path().join(name);
            fs::create_dir(&dir).unwrap();
            if let Some(owner) = owner {
                fs::write(dir.join(OWNER_FILE), owner).unwrap();
            }
            dir
        };
        // Above the kernel's largest pid_max (2^22), so it can never be alive.
        let orphan = make("kvmtop-guest-dead", Some("4194305".into()));
        let ours = make("kvmtop-guest-live", Some(std::process::id().to_string()));
        let unowned = make("kvmtop-guest-new", None);
        let unrelated = make("something-else", Some("4194305".into()));

        remove_orphaned_guest_dirs(work.path());
        assert!(!orphan.exists());
        assert!(ours.exists() && unowned.exists() && unrelated.exists());
    }
}
