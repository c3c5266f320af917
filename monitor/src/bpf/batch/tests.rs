//! The batch commands on a real kernel map, at the level of single calls: what `ENOSPC` and
//! `ENOENT` mean and carry, which the typed reads rely on. Skipped where no map can be created
//! (not root).

use std::os::fd::{AsFd as _, BorrowedFd};

use aya::maps::{HashMap, MapData};

use super::{
    buffer::read_all,
    sys::{self, LookupBuffers},
};

const KEYS: u32 = 3_000;

/// A hash map holding `n` keys (`k → k * 10`), or `None` (the skip reported).
fn filled(test: &str, n: u32) -> Option<HashMap<MapData, u32, u64>> {
    let mut map = match HashMap::<MapData, u32, u64>::create(4_096, 0) {
        Ok(map) => map,
        Err(e) => {
            crate::testing::skip(test, &format!("cannot create a BPF map here: {e}"));
            return None;
        }
    };
    for k in 0..n {
        map.insert(k, u64::from(k) * 10, 0).expect("inserting");
    }
    Some(map)
}

fn fd(map: &HashMap<MapData, u32, u64>) -> BorrowedFd<'_> {
    aya::maps::IterableMap::map(map).fd().as_fd()
}

/// One call from the start of the map with room for `capacity` entries.
fn first_call(map: &HashMap<MapData, u32, u64>, capacity: usize) -> Result<usize, sys::BatchError> {
    let mut keys = vec![0; capacity * 4];
    let mut values = vec![0; capacity * 8];
    let mut next = [0; 8];
    let mut buffers = LookupBuffers {
        keys: &mut keys,
        values: &mut values,
        key_size: 4,
        value_size: 8,
        resume: None,
        next: &mut next,
    };
    sys::lookup_batch(fd(map), &mut buffers, capacity)
}

#[test]
fn the_last_call_returns_enoent_with_the_last_entries() {
    let test = "the_last_call_returns_enoent_with_the_last_entries";
    let Some(map) = filled(test, KEYS) else {
        return;
    };
    let error = first_call(&map, 2 * KEYS as usize).expect_err("the end of the map");
    assert_eq!(error.errno(), Some(libc::ENOENT));
    assert_eq!(error.count, KEYS as usize);

    let Some(empty) = filled(test, 0) else {
        return;
    };
    let error = first_call(&empty, 16).expect_err("the end of the map");
    assert_eq!((error.errno(), error.count), (Some(libc::ENOENT), 0));
    let raw = read_all(fd(&empty), 4, 8, 16).expect("reading an empty map");
    assert_eq!(raw.len, 0);
}

#[test]
fn a_bucket_larger_than_the_room_given_is_retried_with_more() {
    let test = "a_bucket_larger_than_the_room_given_is_retried_with_more";
    let Some(map) = filled(test, KEYS) else {
        return;
    };
    // 3 000 keys in 4 096 buckets: some bucket holds two or more, so room for one entry is not
    // enough somewhere. Walk with room for one until the kernel says so.
    let mut resume: Option<[u8; 8]> = None;
    let mut saw_enospc = false;
    for _ in 0..=KEYS {
        let (mut keys, mut values, mut next) = ([0; 4], [0; 8], [0; 8]);
        let mut buffers = LookupBuffers {
            keys: &mut keys,
            values: &mut values,
            key_size: 4,
            value_size: 8,
            resume: resume.as_ref().map(<[u8; 8]>::as_slice),
            next: &mut next,
        };
        match sys::lookup_batch(fd(&map), &mut buffers, 1) {
            Ok(n) => {
                assert_eq!(n, 1);
                resume = Some(next);
            }
            Err(e) if e.errno() == Some(libc::ENOSPC) => {
                assert_eq!(e.count, 0);
                saw_enospc = true;
                break;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(saw_enospc, "no bucket of two keys among {KEYS} keys");

    let raw = read_all(fd(&map), 4, 8, 1).expect("reading with room for one at first");
    let mut entries: Vec<(u32, u64)> = (0..raw.len).map(|i| (raw.key(i), raw.value(i))).collect();
    entries.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..KEYS).map(|k| (k, u64::from(k) * 10)).collect();
    assert_eq!(entries, expected);
}

#[test]
fn a_batch_deletion_stops_at_a_missing_key_and_counts_the_deleted() {
    let test = "a_batch_deletion_stops_at_a_missing_key_and_counts_the_deleted";
    let Some(map) = filled(test, 10) else {
        return;
    };
    let error = sys::delete_batch(fd(&map), &[1u32, 2, 99, 3]).expect_err("99 is missing");
    assert_eq!((error.errno(), error.count), (Some(libc::ENOENT), 2));
    let mut left: Vec<u32> = map.keys().map(Result::unwrap).collect();
    left.sort_unstable();
    assert_eq!(left, [0, 3, 4, 5, 6, 7, 8, 9]);
}
