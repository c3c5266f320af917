//! The running kernel's BTF (`/sys/kernel/btf/vmlinux`, or a file the operator names for kernels
//! built without it): where the struct fields the raw-argument programs read are, and what
//! arguments a tracepoint passes its raw programs.
//!
//! Rust eBPF programs get no CO-RE relocations, so the offsets are resolved here at start-up and
//! handed to the programs as load-time constants. Anything missing (a renamed field, an older
//! argument list) is an error that names it: the hook tables then keep the classic tracepoint.
//!
//! The file is read as it is, with one index of where each type starts, and searched for the
//! handful of names kvmtop asks about. A vmlinux BTF holds some 150,000 types: parsing them all
//! into owned tables (as BTF crates do; the permissively licensed one took 55 MiB here, several
//! times the rest of the agent) would set kvmtop's peak memory for a few lookups at start-up.
//! The format is the kernel's stable UAPI (`include/uapi/linux/btf.h`,
//! Documentation/bpf/btf.rst), read here for little-endian hosts.

use std::path::{Path, PathBuf};

/// Where the kernel publishes its own BTF.
pub const SYSTEM_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `BTF_MAGIC` as a little-endian file starts with it.
const MAGIC: u16 = 0xeb9f;
/// Size of `struct btf_type`: `name_off`, `info`, then `size` or `type`.
const TYPE_HEADER: usize = 12;

/// The kinds kvmtop reads (`BTF_KIND_*`).
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC_PROTO: u32 = 13;
    pub const FLOAT: u32 = 16;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// A BTF file, as read, with where each of its types starts.
pub struct KernelBtf {
    bytes: Vec<u8>,
    /// Where the string section starts, and its length.
    strings: (usize, usize),
    /// Offset in `bytes` of type id `i + 1` (id 0 is `void`, which has no entry).
    types: Vec<u32>,
    path: PathBuf,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("path", &self.path)
            .field("types", &self.types.len())
            .finish_non_exhaustive()
    }
}

/// One `struct btf_type` and what follows it.
#[derive(Clone, Copy)]
struct Type<'a> {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    vlen: usize,
    /// `size` or `type`, by kind.
    size_or_id: u32,
    /// The kind-specific data after the header.
    extra: &'a [u8],
}

/// A struct or union member.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(chunk.try_into().ok()?))
}

/// Bytes of kind-specific data after a type's header, or `None` for a kind this reader does not
/// know (the rest of the section cannot then be walked).
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        kind::INT | 14 | 17 => 4, // INT, VAR, DECL_TAG
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | 15 | kind::ENUM64 => vlen.checked_mul(12)?, // 15: DATASEC
        kind::ENUM | kind::FUNC_PROTO => vlen.checked_mul(8)?,
        kind::PTR
        | 7
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | 12
        | kind::FLOAT
        | kind::TYPE_TAG => 0, // 7: FWD, 12: FUNC
        _ => return None,
    })
}

impl KernelBtf {
    /// Reads the BTF file at `path` and indexes its types.
    pub fn open(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("the kernel's BTF ({}) is unreadable: {e}", path.display()))?;
        Self::from_bytes(bytes, path)
            .map_err(|why| format!("the kernel's BTF ({}) is malformed: {why}", path.display()))
    }

    /// Indexes BTF already read; `path` names where it came from in messages.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self, String> {
        let header = |at: usize| u32_at(&bytes, at).ok_or("shorter than its header");
        let magic = bytes.get(..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if magic != Some(MAGIC) {
            return Err("no little-endian BTF magic".into());
        }
        let header_len = header(4)? as usize;
        let section = |offset: usize, len: usize| -> Result<(usize, usize), String> {
            let start = header_len
                .checked_add(header(offset)? as usize)
                .ok_or("section offset overflows")?;
            let len = header(len)? as usize;
            match start.checked_add(len) {
                Some(end) if end <= bytes.len() => Ok((start, len)),
                _ => Err("a section runs past the end of the file".into()),
            }
        };
        let (type_start, type_len) = section(8, 12)?;
        let strings = section(16, 20)?;
        let mut types = Vec::new();
        let mut at = type_start;
        let end = type_start + type_len;
        while at < end {
            let info = u32_at(&bytes, at + 4).ok_or("a type runs past its section")?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = extra_len(kind, vlen).ok_or_else(|| format!("unknown type kind {kind}"))?;
            let next = at + TYPE_HEADER + extra;
            if next > end {
                return Err("a type runs past its section".into());
            }
            types.push(u32::try_from(at).map_err(|_| "larger than 4 GiB")?);
            at = next;
        }
        Ok(Self {
            bytes,
            strings,
            types,
            path: path.to_owned(),
        })
    }

    /// The file this was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The type of id `id`; `None` for `void` and ids past the last.
    fn get(&self, id: u32) -> Option<Type<'_>> {
        let at = *self.types.get((id as usize).checked_sub(1)?)? as usize;
        let info = u32_at(&self.bytes, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let start = at + TYPE_HEADER;
        Some(Type {
            name_off: u32_at(&self.bytes, at)?,
            kind,
            kind_flag: info >> 31 == 1,
            vlen,
            size_or_id: u32_at(&self.bytes, at + 8)?,
            extra: self.bytes.get(start..start + extra_len(kind, vlen)?)?,
        })
    }

    /// Every type with its id, in id order.
    fn all(&self) -> impl Iterator<Item = (u32, Type<'_>)> {
        (1..=u32::try_from(self.types.len()).unwrap_or(u32::MAX))
            .filter_map(|id| Some((id, self.get(id)?)))
    }

    /// The string at `offset` of the string section ("" when out of range or not UTF-8).
    fn name(&self, offset: u32) -> &str {
        let (start, len) = self.strings;
        let Some(tail) = (offset as usize)
            .checked_add(start)
            .filter(|_| (offset as usize) < len)
            .and_then(|at| self.bytes.get(at..start + len))
        else {
            return "";
        };
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or("")
    }

    /// The members of a struct or union.
    fn members<'a>(ty: &Type<'a>) -> impl Iterator<Item = Member> + 'a {
        let (extra, kind_flag) = (ty.extra, ty.kind_flag);
        extra.chunks_exact(12).map(move |m| {
            let word = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
            let offset = word(8);
            // With the kind flag set, the high 8 bits are a bit field's width.
            let (bit_offset, bitfield_size) = if kind_flag {
                (offset & 0x00ff_ffff, offset >> 24)
            } else {
                (offset, 0)
            };
            Member {
                name_off: word(0),
                type_id: word(4),
                bit_offset,
                bitfield_size,
            }
        })
    }

    /// `id` with typedefs and qualifiers (const, volatile, restrict, type tags) looked through.
    fn resolve(&self, mut id: u32) -> Option<(u32, Type<'_>)> {
        // A chain longer than this is a loop in a damaged file.
        for _ in 0..32 {
            let ty = self.get(id)?;
            match ty.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = ty.size_or_id;
                }
                _ => return Some((id, ty)),
            }
        }
        None
    }

    /// The size in bytes of type `id`. Arrays are walked in a loop with a bound: a damaged file
    /// can make an array of itself.
    fn size_of(&self, mut id: u32) -> Option<usize> {
        let mut count: usize = 1;
        for _ in 0..32 {
            let (_, ty) = self.resolve(id)?;
            let size = match ty.kind {
                kind::INT
                | kind::STRUCT
                | kind::UNION
                | kind::ENUM
                | kind::ENUM64
                | kind::FLOAT => ty.size_or_id as usize,
                kind::PTR => std::mem::size_of::<usize>(),
                kind::ARRAY => {
                    count = count.checked_mul(u32_at(ty.extra, 8)? as usize)?;
                    id = u32_at(ty.extra, 0)?;
                    continue;
                }
                _ => return None,
            };
            return size.checked_mul(count);
        }
        None
    }

    /// The member `name` of the struct or union `ty`, looked for through anonymous members too,
    /// with its bit offset from the start of `ty`. `budget` bounds the members visited: a
    /// damaged file can nest a union in itself.
    fn member(&self, ty: &Type<'_>, name: &str, budget: &mut u32, depth: u8) -> Option<Member> {
        // Kernel structs nest anonymous members a few levels deep.
        if depth > 16 {
            return None;
        }
        for member in Self::members(ty) {
            *budget = budget.checked_sub(1)?;
            if member.name_off != 0 {
                if self.name(member.name_off) == name {
                    return Some(member);
                }
                continue;
            }
            let Some((_, inner)) = self.resolve(member.type_id) else {
                continue;
            };
            if matches!(inner.kind, kind::STRUCT | kind::UNION)
                && let Some(found) = self.member(&inner, name, budget, depth + 1)
            {
                return Some(Member {
                    bit_offset: found.bit_offset.checked_add(member.bit_offset)?,
                    ..found
                });
            }
        }
        None
    }

    /// The byte offset of `field` (a dotted path such as `thread_info.cpu`) in `struct name`,
    /// checking that the field is `size` bytes wide.
    pub fn offset(&self, name: &str, field: &str, size: usize) -> Result<u32, String> {
        let missing = || format!("struct {name} has no field {field} in this kernel's BTF");
        let mut ty = self
            .all()
            .find(|(_, t)| t.kind == kind::STRUCT && self.name(t.name_off) == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("this kernel's BTF has no struct {name}"))?;
        let mut bits = 0_u32;
        let mut found = None;
        for part in field.split('.') {
            if !matches!(ty.kind, kind::STRUCT | kind::UNION) {
                return Err(missing());
            }
            // task_struct, the largest, has a few hundred members with its anonymous ones.
            let mut budget = 10_000;
            let member = self.member(&ty, part, &mut budget, 0).ok_or_else(missing)?;
            if member.bitfield_size != 0 {
                return Err(format!("{name}.{field} is a bit field"));
            }
            bits = bits.checked_add(member.bit_offset).ok_or_else(missing)?;
            ty = self.resolve(member.type_id).ok_or_else(missing)?.1;
            found = Some(member.type_id);
        }
        let field_type = found.ok_or_else(missing)?;
        if !bits.is_multiple_of(8) {
            return Err(format!("{name}.{field} is a bit field"));
        }
        let actual = self.size_of(field_type).ok_or_else(missing)?;
        if actual != size {
            return Err(format!(
                "{name}.{field} is {actual} bytes wide in this kernel, not {size}"
            ));
        }
        Ok(bits / 8)
    }

    /// The value of the enumerator `value` (of any enum).
    pub fn enum_value(&self, value: &str) -> Result<u32, String> {
        self.all()
            .find_map(|(_, t)| {
                let width = match t.kind {
                    kind::ENUM => 8,
                    // A 64-bit enumerator: low word, then high word, which must be 0 here.
                    kind::ENUM64 => 12,
                    _ => return None,
                };
                t.extra.chunks_exact(width).find_map(|e| {
                    let word = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
                    (self.name(word(0)) == value && (width == 8 || word(8) == 0)).then(|| word(4))
                })
            })
            .ok_or_else(|| format!("this kernel's BTF has no enumerator {value}"))
    }

    /// How many arguments the tracepoint `event` passes its raw programs, from the kernel's
    /// `btf_trace_<event>` typedef (a pointer to a function whose first parameter is the
    /// tracepoint's private data, not an argument).
    pub fn tracepoint_args(&self, event: &str) -> Result<usize, String> {
        let typedef = format!("btf_trace_{event}");
        let missing = || format!("this kernel's BTF does not describe tracepoint {event}");
        let (_, named) = self
            .all()
            .find(|(_, t)| t.kind == kind::TYPEDEF && self.name(t.name_off) == typedef)
            .ok_or_else(missing)?;
        let (_, pointer) = self.resolve(named.size_or_id).ok_or_else(missing)?;
        if pointer.kind != kind::PTR {
            return Err(missing());
        }
        let (_, function) = self.resolve(pointer.size_or_id).ok_or_else(missing)?;
        if function.kind != kind::FUNC_PROTO {
            return Err(missing());
        }
        Ok(function.vlen.saturating_sub(1))
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
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// A BTF file built by hand: types in order from id 1, and their names.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let at = u32::try_from(self.strings.len()).unwrap();
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            at
        }

        fn words(&mut self, words: &[u32]) {
            for word in words {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
        }

        fn header(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size: u32) {
            let name = self.name(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            self.words(&[name, info, size]);
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let types = u32::try_from(self.types.len()).unwrap();
            let strings = u32::try_from(self.strings.len()).unwrap();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for word in [24, 0, types, types, strings] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// ids: 1 u32, 2 `typedef u32 pid_t`, 3 `const pid_t`, 4 pointer to 1, 5 anonymous
    /// `union { u32 a; u32 *b }`, 6 `struct task { pid_t pid @0; const pid_t tgid @4; union @8;
    /// u32 flags:3 @128; u32 arr[4] @160 }`, 7 `enum op { OP_READ = 0, OP_WRITE = 1 }`, 8 func
    /// proto `(void *, u32, u32 *)`, 9 pointer to 8, 10 `typedef btf_trace_ev`, 11 enum64
    /// `{ BIG = 1 << 40, SMALL = 7 }`, 12 array of 4 u32.
    pub(crate) fn synthetic() -> Vec<u8> {
        let mut b = Builder::new();
        b.header("unsigned int", kind::INT, 0, false, 4);
        b.words(&[32]);
        b.header("pid_t", kind::TYPEDEF, 0, false, 1);
        b.header("", kind::CONST, 0, false, 2);
        b.header("", kind::PTR, 0, false, 1);
        b.header("", kind::UNION, 2, false, 8);
        let (a, p) = (b.name("a"), b.name("b"));
        b.words(&[a, 1, 0, p, 4, 0]);
        b.header("task", kind::STRUCT, 5, true, 40);
        let names = ["pid", "tgid", "", "flags", "arr"].map(|n| b.name(n));
        b.words(&[names[0], 2, 0, names[1], 3, 32, names[2], 5, 64]);
        b.words(&[names[3], 1, (3 << 24) | 128, names[4], 12, 160]);
        b.header("op", kind::ENUM, 2, false, 4);
        let (read, write) = (b.name("OP_READ"), b.name("OP_WRITE"));
        b.words(&[read, 0, write, 1]);
        b.header("", kind::FUNC_PROTO, 3, false, 0);
        b.words(&[0, 4, 0, 1, 0, 4]);
        b.header("", kind::PTR, 0, false, 8);
        b.header("btf_trace_ev", kind::TYPEDEF, 0, false, 9);
        b.header("wide", kind::ENUM64, 2, false, 8);
        let (big, small) = (b.name("BIG"), b.name("SMALL"));
        b.words(&[big, 0, 1 << 8, small, 7, 0]);
        b.header("", kind::ARRAY, 0, false, 0);
        b.words(&[1, 1, 4]);
        b.bytes()
    }

    fn parsed(bytes: Vec<u8>) -> Result<KernelBtf, String> {
        KernelBtf::from_bytes(bytes, Path::new("synthetic"))
    }

    #[test]
    fn fields_are_found_through_typedefs_qualifiers_and_anonymous_unions() {
        let btf = parsed(synthetic()).unwrap();
        assert_eq!(btf.offset("task", "pid", 4), Ok(0));
        assert_eq!(btf.offset("task", "tgid", 4), Ok(4));
        // Members of an anonymous union are the struct's own.
        assert_eq!(btf.offset("task", "a", 4), Ok(8));
        assert_eq!(btf.offset("task", "b", 8), Ok(8));
        assert_eq!(btf.offset("task", "arr", 16), Ok(20));
        let err = btf.offset("task", "flags", 4).unwrap_err();
        assert!(err.contains("bit field"), "{err}");
        let err = btf.offset("task", "pid.x", 4).unwrap_err();
        assert!(err.contains("no field pid.x"), "{err}");
        assert_eq!(btf.enum_value("OP_WRITE"), Ok(1));
        assert_eq!(btf.enum_value("SMALL"), Ok(7));
        // A 64-bit value does not fit what the programs take.
        assert!(btf.enum_value("BIG").is_err());
        assert_eq!(btf.tracepoint_args("ev"), Ok(2));
        assert!(btf.tracepoint_args("pid_t").is_err());
    }

    #[test]
    fn truncated_and_damaged_files_are_errors_not_panics() {
        let whole = synthetic();
        for len in 0..whole.len() {
            // Every prefix either fails or reads (the string section may end early).
            let _ = parsed(whole[..len].to_vec()).map(|btf| {
                let _ = btf.offset("task", "a", 4);
                let _ = btf.enum_value("OP_READ");
            });
        }
        let mut unknown_kind = whole.clone();
        // The first type's info word: kind 31.
        unknown_kind[24 + 7] = 31;
        let err = parsed(unknown_kind).unwrap_err();
        assert!(err.contains("unknown type kind 31"), "{err}");
        let mut wrong_magic = whole.clone();
        wrong_magic[0] = 0;
        assert!(parsed(wrong_magic).is_err());
        // A typedef that names itself is a loop, not a hang.
        let mut looped = whole;
        looped[24 + 16 + 8] = 2;
        let btf = parsed(looped).unwrap();
        assert!(btf.offset("task", "pid", 4).is_err());
        // A union whose 1,000 anonymous members are itself: bounded, not 1,000^depth.
        let mut b = Builder::new();
        b.header("s", kind::STRUCT, 1, false, 8);
        b.words(&[0, 2, 0]);
        b.header("", kind::UNION, 1000, false, 8);
        for _ in 0..1000 {
            b.words(&[0, 2, 0]);
        }
        let btf = parsed(b.bytes()).unwrap();
        assert!(btf.offset("s", "x", 4).is_err());
        // An array of itself (found by the fuzz target): an error, not endless recursion.
        let mut b = Builder::new();
        b.header("s", kind::STRUCT, 1, false, 8);
        let field = b.name("f");
        b.words(&[field, 2, 0]);
        b.header("", kind::ARRAY, 0, false, 0);
        b.words(&[2, 2, 4]);
        let btf = parsed(b.bytes()).unwrap();
        assert!(btf.offset("s", "f", 4).is_err());
    }
}
