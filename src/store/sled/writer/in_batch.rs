//! Which request ids one group commit has recorded already, and where: a repeat within
//! the commit is answered as the first record was. Found by the key's hash (computed for
//! the idempotency runs anyway) and an index into the commit's entries, so a record
//! copies neither its key nor its answer for this.

use foldhash::HashMap;
use std::collections::hash_map::Entry;

#[derive(Default)]
pub(super) struct InBatch {
    /// Hash → the first entry whose key has it.
    first: HashMap<u64, usize>,
    /// Entries whose key's hash an earlier, different key holds in `first`, by key. The
    /// hash is not keyed, so collisions can be made on purpose: each costs a key copy,
    /// never a scan.
    collided: HashMap<Vec<u8>, usize>,
}

impl InBatch {
    /// The entry of `key` (whose hash is `hash`); `key_at` reads an entry's key.
    pub(super) fn get<'e>(
        &self,
        key: &[u8],
        hash: u64,
        key_at: impl Fn(usize) -> Option<&'e [u8]>,
    ) -> Option<usize> {
        let first = *self.first.get(&hash)?;
        if key_at(first) == Some(key) {
            return Some(first);
        }
        self.collided.get(key).copied()
    }

    /// Notes that entry `at` holds `key` (not yet in this batch).
    pub(super) fn insert(&mut self, key: &[u8], hash: u64, at: usize) {
        match self.first.entry(hash) {
            Entry::Vacant(first) => {
                first.insert(at);
            }
            Entry::Occupied(_) => {
                self.collided.insert(key.to_vec(), at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys sharing a hash are each found at their own entry, and a key never recorded
    /// is not found whatever its hash.
    #[test]
    fn keys_that_share_a_hash_each_find_their_entry() {
        let keys: Vec<Vec<u8>> = ["a", "b", "c", "d"].map(|k| k.as_bytes().to_vec()).into();
        let key_at = |i: usize| keys.get(i).map(Vec::as_slice);
        let mut seen = InBatch::default();
        for (i, key) in keys.iter().enumerate().take(3) {
            assert_eq!(seen.get(key, 7, key_at), None);
            seen.insert(key, 7, i);
        }
        seen.insert(&keys[3], 8, 3);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(seen.get(key, if i < 3 { 7 } else { 8 }, key_at), Some(i));
        }
        assert_eq!(seen.get(b"e", 7, key_at), None);
        assert_eq!(seen.get(b"a", 9, key_at), None);
    }
}
