//! Maps of a few entries, built for every vCPU, VM and counter key each window.

use std::collections::BTreeMap;

/// The map of `pairs`, built by inserting them one by one. `collect` gathers the pairs into a
/// vector and sorts it before it builds the tree: for a map of a few entries, an allocation
/// more than the map itself, and such maps are built by the thousand each window at 100 VMs.
pub fn inserted<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        map.insert(key, value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_pair_replaces_an_earlier_one_of_the_same_key_as_collect_does() {
        let pairs = [(2, "b"), (1, "a"), (2, "c")];
        assert_eq!(
            inserted(pairs),
            pairs.into_iter().collect::<BTreeMap<_, _>>()
        );
    }
}
