//! The running kernel's BTF (`/sys/kernel/btf/vmlinux`, or a file the operator names for kernels
//! built without it): where the struct fields the raw-argument programs read are, and what
//! arguments a tracepoint passes its raw programs.
//!
//! Rust eBPF programs get no CO-RE relocations, so the offsets are resolved here at start-up and
//! handed to the programs as load-time constants. Anything missing (a renamed field, an older
//! argument list) is an error that names it: the hook tables then keep the classic tracepoint.

use std::path::{Path, PathBuf};

use btfparse::{Offset, Readable, TypeInformation, TypeVariant};

/// Where the kernel publishes its own BTF.
pub const SYSTEM_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A parsed BTF file.
pub struct KernelBtf {
    types: TypeInformation,
    path: PathBuf,
}

#[expect(
    clippy::missing_fields_in_debug,
    reason = "the parsed types are tens of MiB of tables"
)]
impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("path", &self.path)
            .finish()
    }
}

/// A BTF file's bytes, for the parser.
struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let chunk = start
            .checked_add(buffer.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or_else(|| {
                btfparse::Error::new(btfparse::ErrorKind::InvalidOffset, "read past the end")
            })?;
        buffer.copy_from_slice(chunk);
        Ok(())
    }
}

impl KernelBtf {
    /// Reads and parses the BTF file at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("the kernel's BTF ({}) is unreadable: {e}", path.display()))?;
        let types = TypeInformation::new(&Bytes(bytes))
            .map_err(|e| format!("the kernel's BTF ({}) is malformed: {e:?}", path.display()))?;
        Ok(Self {
            types,
            path: path.to_owned(),
        })
    }

    /// The file this was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The byte offset of `field` (a dotted path such as `thread_info.cpu`) in `struct name`,
    /// checking that the field is `size` bytes wide.
    pub fn offset(&self, name: &str, field: &str, size: usize) -> Result<u32, String> {
        let missing = || format!("struct {name} has no field {field} in this kernel's BTF");
        let id = self
            .struct_id(name)
            .ok_or_else(|| format!("this kernel's BTF has no struct {name}"))?;
        let (field_type, offset) = self.types.offset_of(id, field).map_err(|_| missing())?;
        let Offset::ByteOffset(offset) = offset else {
            return Err(format!("{name}.{field} is a bit field"));
        };
        let actual = self.types.size_of(field_type).map_err(|_| missing())?;
        if actual != size {
            return Err(format!(
                "{name}.{field} is {actual} bytes wide in this kernel, not {size}"
            ));
        }
        Ok(offset)
    }

    /// The value of the enumerator `value` (of any enum).
    pub fn enum_value(&self, value: &str) -> Result<u32, String> {
        self.types
            .get()
            .values()
            .find_map(|t| match t {
                TypeVariant::Enum(e) => e.named_value_list().iter().find_map(|v| {
                    (v.name == value).then_some(match v.value {
                        btfparse::Integer32Value::Signed(n) => n.cast_unsigned(),
                        btfparse::Integer32Value::Unsigned(n) => n,
                    })
                }),
                _ => None,
            })
            .ok_or_else(|| format!("this kernel's BTF has no enumerator {value}"))
    }

    /// How many arguments the tracepoint `event` passes its raw programs, from the kernel's
    /// `btf_trace_<event>` typedef (a pointer to a function whose first parameter is the
    /// tracepoint's private data, not an argument).
    pub fn tracepoint_args(&self, event: &str) -> Result<usize, String> {
        let typedef = format!("btf_trace_{event}");
        let missing = || format!("this kernel's BTF does not describe tracepoint {event}");
        let mut id = self.types.id_of(&typedef).ok_or_else(missing)?;
        for _ in 0..4 {
            match self.types.from_id(id).ok_or_else(missing)? {
                TypeVariant::Typedef(t) => id = *t.tid(),
                TypeVariant::Ptr(p) => id = *p.tid(),
                TypeVariant::FuncProto(f) => {
                    return Ok(f.parameter_list().len().saturating_sub(1));
                }
                _ => break,
            }
        }
        Err(missing())
    }

    /// Checks that `event` passes `expected` raw arguments: the raw programs read them by
    /// position, and several tracepoints changed theirs across kernel versions.
    pub fn expect_args(&self, event: &str, expected: usize) -> Result<(), String> {
        let actual = self.tracepoint_args(event)?;
        if actual == expected {
            Ok(())
        } else {
            Err(format!(
                "{event} passes {actual} raw arguments on this kernel, the raw program reads {expected}"
            ))
        }
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        // `id_of` may name a forward declaration; the definition is the struct itself.
        let id = self.types.id_of(name)?;
        match self.types.from_id(id)? {
            TypeVariant::Struct(_) => Some(id),
            _ => self.types.get().iter().find_map(|(id, t)| match t {
                TypeVariant::Struct(s) if s.name().as_deref() == Some(name) => Some(*id),
                _ => None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> Option<KernelBtf> {
        if !Path::new(SYSTEM_BTF).exists() {
            crate::testing::skip("host::btf::tests", "this kernel publishes no BTF");
            return None;
        }
        Some(KernelBtf::open(Path::new(SYSTEM_BTF)).unwrap())
    }

    #[test]
    fn this_kernel_s_task_and_request_fields_are_found() {
        let Some(btf) = system() else { return };
        assert!(btf.offset("task_struct", "pid", 4).unwrap() > 0);
        for (field, size) in [
            ("q", 8),
            ("__sector", 8),
            ("__data_len", 4),
            ("cmd_flags", 4),
        ] {
            btf.offset("request", field, size).unwrap();
        }
        assert_eq!(btf.enum_value("REQ_OP_READ"), Ok(0));
        assert_eq!(btf.enum_value("REQ_OP_WRITE"), Ok(1));
    }

    #[test]
    fn tracepoint_argument_counts_come_from_the_typedefs() {
        let Some(btf) = system() else { return };
        assert_eq!(btf.tracepoint_args("sched_switch"), Ok(4));
        assert_eq!(btf.tracepoint_args("sched_wakeup"), Ok(1));
        assert_eq!(btf.tracepoint_args("block_rq_complete"), Ok(3));
        assert!(btf.expect_args("sched_switch", 3).is_err());
        assert!(btf.tracepoint_args("no_such_event").is_err());
    }

    #[test]
    fn wrong_sizes_and_missing_names_say_what_is_wrong() {
        let Some(btf) = system() else { return };
        let err = btf.offset("task_struct", "pid", 8).unwrap_err();
        assert!(err.contains("4 bytes wide"), "{err}");
        let err = btf.offset("task_struct", "no_such_field", 4).unwrap_err();
        assert!(err.contains("no field no_such_field"), "{err}");
        let err = btf.offset("no_such_struct", "x", 4).unwrap_err();
        assert!(err.contains("no struct no_such_struct"), "{err}");
    }

    #[test]
    fn a_missing_or_malformed_file_is_an_error_not_a_panic() {
        assert!(KernelBtf::open(Path::new("/nonexistent/vmlinux")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("vmlinux");
        std::fs::write(&junk, b"\x9f\xeb\x01\x00garbage").unwrap();
        assert!(KernelBtf::open(&junk).is_err());
    }
}
