//! Tracepoint record layouts, read from `<tracefs>/events/<system>/<event>/format`.
//!
//! Record layouts change between kernels (fields are added, widened or moved), so the kernel
//! programs never hard-code offsets: the loader reads them here and hands them over as globals.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
};

/// Where tracefs is mounted, or a fixture directory with the same layout.
#[derive(Clone, Debug)]
pub struct TraceFs {
    root: PathBuf,
}

impl Default for TraceFs {
    fn default() -> Self {
        Self::new("/sys/kernel/tracing")
    }
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// The fields of one tracepoint's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    pub fields: Vec<Field>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("tracepoint {system}:{event} does not exist on this kernel ({path} is missing)")]
    Missing {
        system: String,
        event: String,
        path: PathBuf,
    },
    #[error("cannot read {path}: {source}; {}", unreadable_remedy(.source))]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do about an unreadable format file: a refusal is about privileges (tracefs is root's
/// only), anything else most likely about tracefs not being mounted.
fn unreadable_remedy(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        "tracefs is root's only: run kvmtop as root, or give it CAP_DAC_READ_SEARCH"
    } else {
        "is tracefs mounted? (mount -t tracefs nodev /sys/kernel/tracing)"
    }
}

impl TraceFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether listing the events is refused: tracefs is root's only (mode 0700). A tracefs
    /// that is missing or not mounted is not a refusal: it is reported per tracepoint, with what
    /// to do about it.
    #[must_use]
    pub fn refuses_listing(&self) -> bool {
        fs::read_dir(self.root.join("events"))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    }

    /// Reads and parses the format of `system:event`.
    pub fn event_format(&self, system: &str, event: &str) -> Result<EventFormat, FormatError> {
        let path = self
            .root
            .join("events")
            .join(system)
            .join(event)
            .join("format");
        let mut text = String::new();
        // Format files are a few KiB; the bound keeps a hostile or broken file from costing much.
        match fs::File::open(&path).and_then(|f| f.take(1 << 20).read_to_string(&mut text)) {
            Ok(_) => Ok(EventFormat::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FormatError::Missing {
                system: system.to_owned(),
                event: event.to_owned(),
                path,
            }),
            Err(source) => Err(FormatError::Unreadable { path, source }),
        }
    }

    /// Like [`Self::event_format`], returning the offsets/sizes of the named fields or saying
    /// which is missing.
    pub fn fields<const N: usize>(
        &self,
        system: &str,
        event: &str,
        names: [&str; N],
    ) -> Result<[Option<Field>; N], FormatError> {
        let format = self.event_format(system, event)?;
        Ok(names.map(|name| format.field(name).cloned()))
    }
}

impl EventFormat {
    /// Parses lines like `\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;`.
    /// Lines that do not look like that are ignored.
    pub fn parse(text: &str) -> Self {
        let fields = text.lines().filter_map(parse_field_line).collect();
        Self { fields }
    }

    #[must_use]
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn parse_field_line(line: &str) -> Option<Field> {
    let mut declaration = None;
    let mut offset = None;
    let mut size = None;
    for part in line.trim().split(';') {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("field:") {
            declaration = Some(rest);
        } else if let Some(rest) = part.strip_prefix("offset:") {
            offset = rest.parse().ok();
        } else if let Some(rest) = part.strip_prefix("size:") {
            size = rest.parse().ok();
        }
    }
    // The name is the last identifier of the C declaration, before any array suffix:
    // `unsigned int exit_reason`, `__data_loc char[] comm`, `char comm[16]`.
    let declaration: String = declaration?
        .split('[')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once(']').map_or("", |(_, rest)| rest)
            }
        })
        .collect();
    let name = declaration.split_whitespace().last()?;
    let name = name.trim_start_matches('*');
    if name.is_empty() {
        return None;
    }
    Some(Field {
        name: name.to_owned(),
        offset: offset?,
        size: size?,
    })
}

/// A required field of the expected size, or why not.
pub fn sized(field: Option<Field>, event: &str, name: &str, size: u32) -> Result<Field, String> {
    let field = field.ok_or_else(|| format!("{event} has no {name} field on this kernel"))?;
    if field.size == size {
        Ok(field)
    } else {
        Err(format!(
            "{event} field {name} has size {}, expected {size}",
            field.size
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal needs an unprivileged user: `least_privilege_e2e` runs kvmtop as `nobody`.
    #[test]
    fn a_missing_or_readable_tracefs_is_not_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!TraceFs::new(dir.path().join("not-mounted")).refuses_listing());
        std::fs::create_dir(dir.path().join("events")).unwrap();
        assert!(!TraceFs::new(dir.path()).refuses_listing());
    }

    // Captured from Linux 6.18 (x86-64).
    const KVM_EXIT_6_18: &str = "name: kvm_exit
ID: 103
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:u32 isa;\toffset:24;\tsize:4;\tsigned:0;
\tfield:u64 info1;\toffset:32;\tsize:8;\tsigned:0;
\tfield:u64 info2;\toffset:40;\tsize:8;\tsigned:0;
\tfield:u32 intr_info;\toffset:48;\tsize:4;\tsigned:0;
\tfield:u32 error_code;\toffset:52;\tsize:4;\tsigned:0;
\tfield:unsigned int vcpu_id;\toffset:56;\tsize:4;\tsigned:0;
\tfield:u64 requests;\toffset:64;\tsize:8;\tsigned:0;

print fmt: \"vcpu %u reason %s\", REC->vcpu_id
";

    #[test]
    fn parses_kvm_exit_fields() {
        let format = EventFormat::parse(KVM_EXIT_6_18);
        assert_eq!(
            format.field("exit_reason"),
            Some(&Field {
                name: "exit_reason".into(),
                offset: 8,
                size: 4
            })
        );
        assert_eq!(format.field("isa").map(|f| f.offset), Some(24));
        assert_eq!(format.field("vcpu_id").map(|f| f.offset), Some(56));
        assert_eq!(format.field("common_pid").map(|f| f.size), Some(4));
        assert!(format.field("print").is_none());
    }

    #[test]
    fn parses_array_and_data_loc_fields() {
        let format = EventFormat::parse(
            "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
             \tfield:__data_loc char[] name;\toffset:24;\tsize:4;\tsigned:0;\n",
        );
        assert_eq!(format.field("comm").map(|f| f.size), Some(16));
        assert_eq!(format.field("name").map(|f| f.offset), Some(24));
    }

    #[test]
    fn garbage_yields_no_fields() {
        let format =
            EventFormat::parse("field:;offset:x;size:;\n\0\u{fffd}field: ;offset:1;size:2;");
        assert!(format.fields.is_empty());
    }

    #[test]
    fn missing_event_is_reported_by_name() {
        let dir = std::env::temp_dir().join(format!("kvmtop-tracefs-{}", std::process::id()));
        let err = TraceFs::new(&dir)
            .event_format("kvm", "kvm_exit")
            .unwrap_err();
        assert!(matches!(err, FormatError::Missing { .. }));
        assert!(
            err.to_string().contains("kvm:kvm_exit does not exist"),
            "{err}"
        );
    }
}
