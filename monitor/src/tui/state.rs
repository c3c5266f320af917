//! What the live table shows, separate from how it is drawn.

use std::time::Duration;

use crate::model::{Snapshot, Vm};

pub struct App {
    pub interval: Duration,
    pub snapshot: Option<Snapshot>,
    /// Selected VM, by pid, so the selection follows the VM when the list reorders.
    pub selected_pid: Option<u32>,
    pub view: View,
    /// Where a replay stands, its timeline and its prompts; `None` in the live view.
    pub replay: Option<super::replay_status::Status>,
}

/// Which screen is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Every VM, one row each.
    Vms,
    /// The selected VM's exits: per reason rate, share, latency, and what they were about.
    VmExits,
    /// The selected VM's vCPUs: exit rates and where their time went.
    Vcpus,
    /// The selected VM's block devices and TLB shootdowns.
    Io,
    /// Every recommendation in force, with its evidence and the change to make.
    Advice,
}

impl App {
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            snapshot: None,
            selected_pid: None,
            view: View::Vms,
            replay: None,
        }
    }

    /// The selected VM, if it is still there.
    #[must_use]
    pub fn selected_vm(&self) -> Option<&Vm> {
        let pid = self.selected_pid?;
        self.snapshot.as_ref()?.vms.iter().find(|vm| vm.pid == pid)
    }

    /// Enter: from the list into the selected VM's exits.
    pub fn open(&mut self) {
        if self.view == View::Vms && self.selected_vm().is_some() {
            self.view = View::VmExits;
        }
    }

    /// Tab: cycle through a VM's views: exits, vCPUs, I/O.
    pub fn toggle_vm_view(&mut self) {
        self.view = match self.view {
            View::VmExits => View::Vcpus,
            View::Vcpus => View::Io,
            View::Io => View::VmExits,
            View::Vms if self.selected_vm().is_some() => View::Vcpus,
            View::Vms => View::Vms,
            View::Advice => View::Advice,
        };
    }

    /// i: the selected VM's I/O view.
    pub fn open_io(&mut self) {
        if self.selected_vm().is_some() {
            self.view = View::Io;
        }
    }

    /// a: the recommendations, or back from them.
    pub fn toggle_advice(&mut self) {
        self.view = if self.view == View::Advice {
            View::Vms
        } else {
            View::Advice
        };
    }

    /// Esc/Backspace: back to the list. Returns false when already there (Esc then quits).
    pub fn back(&mut self) -> bool {
        let moved = self.view != View::Vms;
        self.view = View::Vms;
        moved
    }

    pub fn update(&mut self, mut snapshot: Snapshot) {
        // Busiest VMs first; ties by name so rows do not jump around.
        snapshot.vms.sort_by(|a, b| {
            let busy =
                |vm: &crate::model::Vm| vm.families.exits.total + vm.families.exits.userspace_total;
            busy(b).cmp(&busy(a)).then_with(|| a.name.cmp(&b.name))
        });
        if self
            .selected_pid
            .is_none_or(|pid| snapshot.vms.iter().all(|vm| vm.pid != pid))
        {
            // The VM being looked at has gone: back to the list rather than show another VM
            // under the same heading.
            self.view = View::Vms;
            self.selected_pid = snapshot.vms.first().map(|vm| vm.pid);
        }
        self.snapshot = Some(snapshot);
    }

    /// Row index of the selected VM.
    #[must_use]
    pub fn selected_row(&self) -> Option<usize> {
        let pid = self.selected_pid?;
        self.snapshot
            .as_ref()?
            .vms
            .iter()
            .position(|vm| vm.pid == pid)
    }

    pub fn select_next(&mut self) {
        self.move_selection(1);
    }

    pub fn select_previous(&mut self) {
        self.move_selection(-1);
    }

    fn move_selection(&mut self, step: isize) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        if snapshot.vms.is_empty() {
            return;
        }
        let row = self.selected_row().unwrap_or(0);
        let last = snapshot.vms.len() - 1;
        let next = row.saturating_add_signed(step).min(last);
        self.selected_pid = Some(snapshot.vms[next].pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn busiest_first_and_selection_follows_the_vm() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        assert_eq!(app.selected_pid, Some(4242));
        app.select_next();
        assert_eq!(app.selected_pid, Some(5000));
        app.select_next();
        assert_eq!(app.selected_pid, Some(5000), "stays on the last row");
        // The selected VM keeps its selection when rows reorder.
        let mut snapshot = fixture::snapshot();
        snapshot.vms.reverse();
        app.update(snapshot);
        assert_eq!(app.selected_row(), Some(1));
        app.select_previous();
        assert_eq!(app.selected_pid, Some(4242));
    }

    #[test]
    fn selection_resets_when_the_vm_exits() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        app.select_next();
        let mut snapshot = fixture::snapshot();
        snapshot.vms.retain(|vm| vm.pid != 5000);
        app.open();
        assert_eq!(app.view, View::VmExits);
        app.update(snapshot);
        assert_eq!(app.selected_pid, Some(4242));
        assert_eq!(app.view, View::Vms, "the VM being looked at is gone");
    }

    #[test]
    fn drill_down_and_back() {
        let mut app = App::new(Duration::from_secs(1));
        assert!(!app.back());
        app.open();
        assert_eq!(
            app.view,
            View::Vms,
            "nothing to open before the first sample"
        );
        app.update(fixture::snapshot());
        app.open();
        assert_eq!(app.view, View::VmExits);
        app.toggle_vm_view();
        assert_eq!(app.view, View::Vcpus);
        app.toggle_vm_view();
        assert_eq!(app.view, View::Io);
        app.toggle_vm_view();
        assert_eq!(app.view, View::VmExits);
        assert!(app.back());
        assert_eq!(app.view, View::Vms);
        app.open_io();
        assert_eq!(app.view, View::Io);
    }
}
