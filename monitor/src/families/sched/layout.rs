//! The record layouts of the scheduler tracepoints on this kernel, read from tracefs.

use monitor_common::sched::{SchedWakeupLayout, SwitchLayout};

use crate::host::tracefs::{Field, TraceFs};

fn required(field: Option<Field>, event: &str, name: &str) -> Result<Field, String> {
    field.ok_or_else(|| format!("sched:{event} has no {name} field on this kernel"))
}

/// A pid or CPU field: an `int` everywhere so far; anything else is a layout we do not know.
fn int(field: Option<Field>, event: &str, name: &str) -> Result<u32, String> {
    let field = required(field, event, name)?;
    if field.size == 4 {
        Ok(field.offset)
    } else {
        Err(format!(
            "sched:{event} field {name} has unexpected size {}",
            field.size
        ))
    }
}

pub fn switch(tracefs: &TraceFs) -> Result<SwitchLayout, String> {
    const EVENT: &str = "sched_switch";
    let [prev_pid, prev_state, next_pid] = tracefs
        .fields("sched", EVENT, ["prev_pid", "prev_state", "next_pid"])
        .map_err(|e| e.to_string())?;
    let state = required(prev_state, EVENT, "prev_state")?;
    if !matches!(state.size, 4 | 8) {
        return Err(format!(
            "sched:{EVENT} field prev_state has unexpected size {}",
            state.size
        ));
    }
    Ok(SwitchLayout {
        prev_pid_offset: int(prev_pid, EVENT, "prev_pid")?,
        prev_state_offset: state.offset,
        prev_state_size: state.size,
        next_pid_offset: int(next_pid, EVENT, "next_pid")?,
    })
}

pub fn wakeup(tracefs: &TraceFs) -> Result<SchedWakeupLayout, String> {
    const EVENT: &str = "sched_wakeup";
    let [pid] = tracefs
        .fields("sched", EVENT, ["pid"])
        .map_err(|e| e.to_string())?;
    Ok(SchedWakeupLayout {
        pid_offset: int(pid, EVENT, "pid")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(event: &str, format: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events/sched").join(event);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("format"), format).unwrap();
        dir
    }

    #[test]
    fn missing_events_and_fields_say_which() {
        let dir = fixture(
            "sched_switch",
            "\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n",
        );
        let tracefs = TraceFs::new(dir.path());
        let err = switch(&tracefs).unwrap_err();
        assert!(err.contains("prev_state"), "{err}");
        let err = wakeup(&tracefs).unwrap_err();
        assert!(err.contains("sched:sched_wakeup does not exist"), "{err}");
    }

    #[test]
    fn this_kernel_matches_the_built_in_layouts() {
        // The programs read at compile-time offsets only when these match; if this fails on a
        // new kernel, the fallback path is taken there, correctly but more slowly.
        let tracefs = TraceFs::default();
        let events = tracefs.root().join("events/sched");
        if !events.exists() {
            crate::testing::skip(
                "signals::sched::layout::tests::this_kernel_matches_the_built_in_layouts",
                &format!(
                    "no sched events in tracefs ({} is missing or not readable)",
                    events.display()
                ),
            );
            return;
        }
        assert_eq!(switch(&tracefs), Ok(SwitchLayout::DEFAULT));
        assert_eq!(wakeup(&tracefs), Ok(SchedWakeupLayout::DEFAULT));
    }
}
