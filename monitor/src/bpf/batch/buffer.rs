//! A whole-map read into byte buffers, as few batch calls as it takes, and the decoding of those
//! buffers into typed entries.

use std::{io, mem::size_of, os::fd::BorrowedFd, ptr};

use aya::Pod;

use super::sys::{self, BatchError, LookupBuffers};

/// The most entries one call is given room for, whatever the map holds: the buffers of a
/// per-CPU map grow with the CPUs (2 KiB a `u64` key on a 256-CPU host), and the calls go on
/// from where the previous one stopped.
const MAX_CAPACITY: usize = 1 << 16;

/// How each entry's value lies in the kernel's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueLayout {
    /// One value of the map's value size.
    Single,
    /// One value per possible CPU, each at a stride of the value size rounded up to 8 bytes
    /// (`round_up(value_size, 8) * num_possible_cpus()` bytes per entry).
    PerCpu { cpus: usize },
}

impl ValueLayout {
    /// Bytes of one entry's value(s) for values of type `V`.
    #[must_use]
    pub fn entry_size<V>(self) -> usize {
        match self {
            Self::Single => size_of::<V>(),
            Self::PerCpu { cpus } => cpu_stride::<V>() * cpus,
        }
    }
}

fn cpu_stride<V>() -> usize {
    size_of::<V>().next_multiple_of(8)
}

/// Entries as the kernel wrote them: `len` keys of `key_size` bytes and `len` values of
/// `value_size` bytes, one after the other.
#[derive(Debug, Default)]
pub struct RawEntries {
    pub keys: Vec<u8>,
    pub values: Vec<u8>,
    pub len: usize,
    pub key_size: usize,
    pub value_size: usize,
}

impl RawEntries {
    /// The `index`th key.
    #[must_use]
    pub fn key<K: Pod>(&self, index: usize) -> K {
        debug_assert_eq!(size_of::<K>(), self.key_size);
        read(&self.keys, index * self.key_size)
    }

    /// The `index`th value of a map with one value per key.
    #[must_use]
    pub fn value<V: Pod>(&self, index: usize) -> V {
        debug_assert_eq!(size_of::<V>(), self.value_size);
        read(&self.values, index * self.value_size)
    }

    /// The `index`th entry's values of a per-CPU map, by CPU id.
    #[must_use]
    pub fn per_cpu<V: Pod>(&self, index: usize, cpus: usize) -> Vec<V> {
        debug_assert_eq!(cpu_stride::<V>() * cpus, self.value_size);
        let start = index * self.value_size;
        (0..cpus)
            .map(|cpu| read(&self.values, start + cpu * cpu_stride::<V>()))
            .collect()
    }
}

/// A `T` from `size_of::<T>()` bytes of `bytes` at `offset`, whatever their alignment. Panics
/// when they are not all inside `bytes`.
fn read<T: Pod>(bytes: &[u8], offset: usize) -> T {
    let bytes = &bytes[offset..offset + size_of::<T>()];
    // SAFETY: `bytes` holds exactly `size_of::<T>()` initialised bytes, read without any
    // alignment requirement, and a `Pod` type is valid for every bit pattern.
    unsafe { ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Every entry of the map behind `map`, with `key_size`-byte keys and `value_size`-byte values
/// (all CPUs' for a per-CPU map: see [`ValueLayout`]). The first call has room for `capacity`
/// entries, each next one for twice as many, so a map of n entries takes about
/// log2(n / capacity) + 1 calls, and one when `capacity` is enough.
///
/// What the caller gets when the programs change the map meanwhile: the kernel copies a hash
/// bucket under its lock, never splits one between calls, and resumes at the next bucket. So
/// each key present for the whole read is returned exactly once, with a value copied at one
/// moment of the read (a per-CPU value CPU by CPU, racing with that CPU's updates as any lookup
/// does); a key added or removed during the read may or may not be returned, and never twice.
pub fn read_all(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    capacity: usize,
) -> Result<RawEntries, BatchError> {
    let mut raw = RawEntries {
        key_size,
        value_size,
        ..RawEntries::default()
    };
    // Hash maps resume at a bucket index (four bytes); other types at a key.
    let position = key_size.max(size_of::<u64>());
    let mut resume: Option<Vec<u8>> = None;
    let mut next = vec![0; position];
    let mut capacity = capacity.clamp(1, MAX_CAPACITY);
    loop {
        raw.keys.resize((raw.len + capacity) * key_size, 0);
        raw.values.resize((raw.len + capacity) * value_size, 0);
        let mut buffers = LookupBuffers {
            keys: &mut raw.keys[raw.len * key_size..],
            values: &mut raw.values[raw.len * value_size..],
            key_size,
            value_size,
            resume: resume.as_deref(),
            next: &mut next,
        };
        match sys::lookup_batch(map, &mut buffers, capacity) {
            // The kernel stops short of a full buffer only at its end (ENOENT), so a call that
            // returns nothing without reaching it would repeat for ever.
            Ok(0) => {
                return Err(BatchError {
                    error: io::Error::other("a batch lookup returned no entry"),
                    count: 0,
                });
            }
            Ok(count) => {
                raw.len += count;
                resume
                    .get_or_insert_with(|| vec![0; position])
                    .copy_from_slice(&next);
                capacity = (capacity * 2).min(MAX_CAPACITY);
            }
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                raw.len += e.count;
                break;
            }
            // One bucket holds more entries than there is room for: retry it with more.
            Err(e) if e.errno() == Some(libc::ENOSPC) && capacity < MAX_CAPACITY => {
                capacity = (capacity * 2).min(MAX_CAPACITY);
            }
            Err(e) => return Err(e),
        }
    }
    raw.keys.truncate(raw.len * key_size);
    raw.values.truncate(raw.len * value_size);
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries laid out as the kernel writes them.
    fn raw(keys: &[&[u8]], values: &[Vec<u8>]) -> RawEntries {
        RawEntries {
            keys: keys.iter().flat_map(|k| k.iter()).copied().collect(),
            values: values.iter().flatten().copied().collect(),
            len: keys.len(),
            key_size: keys[0].len(),
            value_size: values[0].len(),
        }
    }

    #[test]
    fn values_are_read_at_any_alignment() {
        let bytes: Vec<u8> = (0..24).collect();
        for offset in 0..8 {
            let expected = u64::from_ne_bytes(bytes[offset..offset + 8].try_into().unwrap());
            assert_eq!(read::<u64>(&bytes, offset), expected);
        }
    }

    #[test]
    fn a_per_cpu_entry_takes_the_value_size_rounded_up_to_8_per_possible_cpu() {
        let cpus = 3;
        assert_eq!(ValueLayout::PerCpu { cpus }.entry_size::<u64>(), 24);
        assert_eq!(ValueLayout::PerCpu { cpus }.entry_size::<u32>(), 24);
        assert_eq!(ValueLayout::PerCpu { cpus }.entry_size::<[u8; 12]>(), 48);
        assert_eq!(ValueLayout::PerCpu { cpus }.entry_size::<[u64; 3]>(), 72);
        assert_eq!(ValueLayout::Single.entry_size::<[u8; 12]>(), 12);
    }

    #[test]
    fn keys_and_single_values_are_read_one_after_the_other() {
        let keys: [&[u8]; 3] = [
            &7u32.to_ne_bytes(),
            &8u32.to_ne_bytes(),
            &9u32.to_ne_bytes(),
        ];
        let values: Vec<Vec<u8>> = [[1u64, 2], [3, 4], [5, 6]]
            .iter()
            .map(|v| v.iter().flat_map(|x| x.to_ne_bytes()).collect())
            .collect();
        let raw = raw(&keys, &values);
        let decoded: Vec<(u32, [u64; 2])> =
            (0..raw.len).map(|i| (raw.key(i), raw.value(i))).collect();
        assert_eq!(decoded, [(7, [1, 2]), (8, [3, 4]), (9, [5, 6])]);
    }

    #[test]
    fn per_cpu_values_are_read_at_the_rounded_stride_and_their_padding_ignored() {
        let cpus = 3;
        // 12-byte values: each CPU's at a 16-byte stride, the last 4 bytes padding.
        let entry = |base: u8| -> Vec<u8> {
            (0..cpus)
                .flat_map(|cpu| {
                    let mut v: Vec<u8> = (0..12).map(|b| base + cpu * 12 + b).collect();
                    v.extend([0xFF; 4]);
                    v
                })
                .collect()
        };
        let keys: [&[u8]; 2] = [&1u32.to_ne_bytes(), &2u32.to_ne_bytes()];
        let values = vec![entry(0), entry(100)];
        assert_eq!(
            values[0].len(),
            ValueLayout::PerCpu {
                cpus: usize::from(cpus)
            }
            .entry_size::<[u8; 12]>()
        );
        let raw = raw(&keys, &values);
        for (index, base) in [(0, 0u8), (1, 100)] {
            let per_cpu: Vec<[u8; 12]> = raw.per_cpu(index, usize::from(cpus));
            assert_eq!(per_cpu.len(), 3);
            for (cpu, value) in (0u8..).zip(&per_cpu) {
                let expected: Vec<u8> = (0..12).map(|b| base + cpu * 12 + b).collect();
                assert_eq!(value.as_slice(), expected.as_slice(), "cpu {cpu}");
            }
        }
        assert_eq!(raw.key::<u32>(1), 2);
    }

    #[test]
    fn per_cpu_values_of_a_multiple_of_8_bytes_are_packed() {
        let values: Vec<u8> = [10u64, 11, 20, 21]
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect();
        let raw = RawEntries {
            keys: [1u32, 2].iter().flat_map(|x| x.to_ne_bytes()).collect(),
            values,
            len: 2,
            key_size: 4,
            value_size: 16,
        };
        assert_eq!(raw.per_cpu::<u64>(0, 2), [10, 11]);
        assert_eq!(raw.per_cpu::<u64>(1, 2), [20, 21]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn an_entry_beyond_the_buffer_is_refused_not_read() {
        let raw = RawEntries {
            keys: vec![0; 4],
            values: vec![0; 8],
            len: 1,
            key_size: 4,
            value_size: 8,
        };
        let _: u64 = raw.value(1);
    }
}
