//! The ledger's counter totals as the writer sees them: the ones committed since the last
//! checkpoint (in the log, not yet in the tree: "dirty") and, beside them, the ones read
//! from the tree lately, so that an org's next commit does not pay a tree look-up. A
//! checkpoint writes each dirty total once, however many commits moved it — in chunks,
//! so that the writer never stops for all of them at once; the clean ones are dropped
//! whenever they pass a cap, so the cache stays bounded by the live counters.

use super::ledger;
use foldhash::HashMap;

/// Clean totals kept before the cache is emptied of them.
const CLEAN_CAP: usize = 200_000;

#[derive(Default)]
pub struct CounterCache {
    totals: HashMap<Vec<u8>, Slot>,
    /// The keys of the dirty totals, each once.
    dirty: Vec<Vec<u8>>,
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

    /// A total committed (durable in the log), for a checkpoint to store.
    pub fn commit(&mut self, key: Vec<u8>, total: u64) {
        match self.totals.get_mut(&key) {
            Some(slot) => {
                slot.total = total;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(key);
                }
            }
            None => {
                self.totals.insert(key.clone(), Slot { total, dirty: true });
                self.dirty.push(key);
            }
        }
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Up to `limit` dirty totals as one tree batch, counted clean: call only with the
    /// tree's lock on this cache held until the batch is applied (or put back).
    pub fn take_dirty(&mut self, limit: usize) -> (sled::Batch, Vec<Vec<u8>>) {
        let at = self.dirty.len().saturating_sub(limit);
        let keys = self.dirty.split_off(at);
        let mut batch = sled::Batch::default();
        for key in &keys {
            if let Some(slot) = self.totals.get_mut(key) {
                slot.dirty = false;
                batch.insert(key.as_slice(), ledger::encode_counter(slot.total));
            }
        }
        (batch, keys)
    }

    /// A taken batch did not reach the tree: its totals are dirty again.
    pub fn put_back(&mut self, keys: Vec<Vec<u8>>) {
        for key in keys {
            if let Some(slot) = self.totals.get_mut(&key) {
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(key);
                }
            }
        }
    }

    /// Drops the clean totals once they pass the cap.
    pub fn trim(&mut self) {
        if self.totals.len() > CLEAN_CAP {
            self.totals.retain(|_, slot| slot.dirty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_committed_totals_are_written_each_once_and_in_chunks() {
        let mut c = CounterCache::default();
        c.remember(b"read".to_vec(), 5);
        c.commit(b"moved".to_vec(), 1);
        c.commit(b"moved".to_vec(), 2);
        c.commit(b"other".to_vec(), 7);
        assert_eq!(c.get(b"moved"), Some(2));
        assert_eq!(c.dirty.len(), 2, "one put per moved counter");
        let (_, first) = c.take_dirty(1);
        assert_eq!(first.len(), 1);
        assert!(c.has_dirty(), "the rest waits for the next chunk");
        let (_, second) = c.take_dirty(10);
        assert_eq!(second.len(), 1);
        assert!(!c.has_dirty());
        c.put_back(second);
        assert!(c.has_dirty(), "a batch that failed is dirty again");
        let _ = c.take_dirty(10);
        assert_eq!(c.get(b"read"), Some(5), "clean totals stay cached");
        c.remember(b"moved".to_vec(), 0);
        assert_eq!(
            c.get(b"moved"),
            Some(2),
            "a stale tree read never replaces a total"
        );
    }
}
