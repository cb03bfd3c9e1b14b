//! The ledger's counter totals as the writer sees them: the ones committed since the last
//! checkpoint (in the log, not yet in the tree: "dirty") and, beside them, the ones read
//! from the tree lately, so that an org's next commit does not pay a tree look-up. A
//! checkpoint writes each dirty total once, however many commits moved it — in chunks,
//! so that the writer never stops for all of them at once; the clean ones are dropped
//! whenever they pass a cap, so the cache stays bounded by the live counters.

use super::ledger;
use crate::domain::inline_bytes::InlineBytes;
use foldhash::HashMap;

/// A counter's key, inline up to 62 bytes: an org id of 30, its period and a metric name
/// of up to 25 fit (measured: with heap keys, the compare after the hash probe was half
/// the writer's CPU under a consume load over 10,000 orgs).
type CounterKey = InlineBytes<62>;

/// Clean totals kept before the cache is emptied of them.
const CLEAN_CAP: usize = 200_000;

#[derive(Default)]
pub struct CounterCache {
    totals: HashMap<CounterKey, Slot>,
    /// The keys of the dirty totals, each once (in `dirty` or in `due`).
    dirty: Vec<CounterKey>,
    /// The dirty keys when the log was last sealed: what the checkpoint in progress must
    /// store before the sealed segments may go.
    due: Vec<CounterKey>,
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
    pub fn remember(&mut self, key: &[u8], total: u64) {
        self.totals.entry(CounterKey::new(key)).or_insert(Slot {
            total,
            dirty: false,
        });
    }

    /// A total committed (durable in the log), for a checkpoint to store.
    pub fn commit(&mut self, key: &[u8], total: u64) {
        match self.totals.get_mut(key) {
            Some(slot) => {
                slot.total = total;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(CounterKey::new(key));
                }
            }
            None => {
                let key = CounterKey::new(key);
                self.totals.insert(key.clone(), Slot { total, dirty: true });
                self.dirty.push(key);
            }
        }
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.due.is_empty()
    }

    pub fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// The log was sealed: every total dirty now is due. A due total moved again later
    /// is stored at its latest (the newer segment holds that too).
    pub fn seal(&mut self) {
        self.due.append(&mut self.dirty);
    }

    /// Up to `limit` dirty totals (the due first; only those with `due_only`) as one tree
    /// batch, counted clean: call only with the tree's lock on this cache held until the
    /// batch is applied (or put back).
    pub fn take_dirty(&mut self, limit: usize, due_only: bool) -> (sled::Batch, Vec<CounterKey>) {
        let mut keys = self.due.split_off(self.due.len().saturating_sub(limit));
        if !due_only {
            let rest = limit - keys.len();
            keys.extend(self.dirty.split_off(self.dirty.len().saturating_sub(rest)));
        }
        let mut batch = sled::Batch::default();
        for key in &keys {
            if let Some(slot) = self.totals.get_mut(key) {
                slot.dirty = false;
                batch.insert(key.as_bytes(), ledger::encode_counter(slot.total));
            }
        }
        (batch, keys)
    }

    /// A taken batch did not reach the tree: its totals are dirty again (and due: the
    /// checkpoint that took them must store them).
    pub fn put_back(&mut self, keys: Vec<CounterKey>) {
        for key in keys {
            if let Some(slot) = self.totals.get_mut(&key) {
                if !slot.dirty {
                    slot.dirty = true;
                    self.due.push(key);
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
        c.remember(b"read", 5);
        c.commit(b"moved", 1);
        c.commit(b"moved", 2);
        c.commit(b"other", 7);
        assert_eq!(c.get(b"moved"), Some(2));
        assert_eq!(c.dirty.len(), 2, "one put per moved counter");
        let (_, first) = c.take_dirty(1, false);
        assert_eq!(first.len(), 1);
        assert!(c.has_dirty(), "the rest waits for the next chunk");
        let (_, second) = c.take_dirty(10, false);
        assert_eq!(second.len(), 1);
        assert!(!c.has_dirty());
        c.put_back(second);
        assert!(c.has_dirty(), "a batch that failed is dirty again");
        let _ = c.take_dirty(10, false);
        assert_eq!(c.get(b"read"), Some(5), "clean totals stay cached");
        c.remember(b"moved", 0);
        assert_eq!(
            c.get(b"moved"),
            Some(2),
            "a stale tree read never replaces a total"
        );
    }

    #[test]
    fn a_sealed_checkpoint_takes_only_what_was_dirty_at_the_seal_at_its_latest() {
        let mut c = CounterCache::default();
        c.commit(b"a", 1);
        c.commit(b"b", 1);
        c.seal();
        c.commit(b"a", 2);
        c.commit(b"c", 1);
        assert!(c.has_due());
        let (batch, keys) = c.take_dirty(10, true);
        assert_eq!(keys.len(), 2, "a and b, not c");
        assert!(!keys.contains(&CounterKey::new(b"c")));
        let mut tree = std::collections::BTreeMap::new();
        for (k, v) in sled_batch_puts(batch) {
            tree.insert(k, v);
        }
        assert_eq!(tree.get(&b"a"[..]), Some(&ledger::encode_counter(2)));
        assert!(!c.has_due(), "the checkpoint's share is done");
        assert!(c.has_dirty(), "c waits for the next checkpoint");
        c.commit(b"a", 3);
        let (_, keys) = c.take_dirty(10, false);
        assert_eq!(keys.len(), 2, "moved after it was stored: dirty again");
    }

    /// The puts of a sled batch, by applying it to a scratch tree.
    fn sled_batch_puts(batch: sled::Batch) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.apply_batch(batch).unwrap();
        db.iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }
}
