//! The ledger's counter totals as the writer sees them: the ones committed since the last
//! checkpoint (in the log, not yet in the tree: "dirty") and, beside them, the ones read
//! from the tree lately, so that an org's next commit does not pay a tree look-up. A
//! checkpoint writes each dirty total once, however many commits moved it; the clean ones
//! are dropped whenever they pass a cap, so the cache stays bounded by the live counters.

use super::ledger;
use std::collections::HashMap;

/// Clean totals kept before the cache is emptied of them.
const CLEAN_CAP: usize = 200_000;

#[derive(Default)]
pub struct CounterCache {
    totals: HashMap<Vec<u8>, Slot>,
    dirty: usize,
}

struct Slot {
    total: u64,
    dirty: bool,
}

impl CounterCache {
    pub fn get(&self, key: &[u8]) -> Option<u64> {
        self.totals.get(key).map(|s| s.total)
    }

    /// A total read from the tree.
    pub fn remember(&mut self, key: Vec<u8>, total: u64) {
        self.totals.entry(key).or_insert(Slot {
            total,
            dirty: false,
        });
    }

    /// A total committed (durable in the log), for the next checkpoint to store.
    pub fn commit(&mut self, key: Vec<u8>, total: u64) {
        let slot = self.totals.entry(key).or_insert(Slot {
            total,
            dirty: false,
        });
        slot.total = total;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty += 1;
        }
    }

    pub fn has_dirty(&self) -> bool {
        self.dirty > 0
    }

    /// The dirty totals as one tree batch.
    pub fn dirty_batch(&self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, slot) in &self.totals {
            if slot.dirty {
                batch.insert(key.as_slice(), ledger::encode_counter(slot.total));
            }
        }
        batch
    }

    /// The dirty totals are in the tree now.
    pub fn mark_clean(&mut self) {
        if self.totals.len() > CLEAN_CAP {
            self.totals.clear();
        } else {
            for slot in self.totals.values_mut() {
                slot.dirty = false;
            }
        }
        self.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_committed_totals_are_written_and_each_once() {
        let mut c = CounterCache::default();
        c.remember(b"read".to_vec(), 5);
        c.commit(b"moved".to_vec(), 1);
        c.commit(b"moved".to_vec(), 2);
        assert_eq!(c.get(b"moved"), Some(2));
        assert_eq!(c.dirty, 1, "one put for the moved counter");
        c.mark_clean();
        assert!(!c.has_dirty());
        assert_eq!(c.get(b"read"), Some(5), "clean totals stay cached");
        c.remember(b"moved".to_vec(), 0);
        assert_eq!(
            c.get(b"moved"),
            Some(2),
            "a stale tree read never replaces a total"
        );
    }
}
