//! `IdemFilter`: a Bloom filter over the keys of the usage idempotency entries that older
//! releases stored in the `ledger` tree (entries are now written to the idempotency runs,
//! never to the tree), so that recording a new `request_id` — nearly every record — skips
//! the sled look-up that would find nothing.
//!
//! It may answer "maybe" for a key that is absent (then the tree is read, as without the
//! filter) but never "no" for a key that is present: no key is added to the tree after
//! start, and the start-up scan adds every stored key before the filter is marked ready;
//! until then every answer is "maybe". Entries purged later leave their bits set, which
//! only raises the false-positive rate until the next start.
//! Bits are set with atomic OR, so arbiters share it without a lock.

use super::ledger;
use crate::store::StoreResult;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Probes per key: about 0.2% false positives at 10 million keys in 2^27 bits.
const PROBES: u64 = 7;

pub struct IdemFilter {
    words: Box<[AtomicU64]>,
    bit_mask: u64,
    ready: AtomicBool,
    abandon: AtomicBool,
    hasher: std::hash::RandomState,
}

impl IdemFilter {
    /// A filter of `2^bits_log2` bits (clamped to 2^10..=2^34).
    pub fn new(bits_log2: u32) -> Self {
        let bits_log2 = bits_log2.clamp(10, 34);
        let words = 1usize << (bits_log2 - 6);
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            bit_mask: (1u64 << bits_log2) - 1,
            ready: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn probes(&self, key: &[u8]) -> impl Iterator<Item = u64> + '_ {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        let hash = h.finish();
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.bit_mask)
    }

    fn insert(&self, key: &[u8]) {
        for bit in self.probes(key) {
            let word = &self.words[(bit >> 6) as usize];
            let mask = 1u64 << (bit & 63);
            if word.load(Ordering::Relaxed) & mask == 0 {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    /// `false` only when the key is certainly not in the store.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        // Acquire pairs with the Release in `mark_ready`: once ready is seen, so are
        // all the bits the scan set.
        if !self.ready.load(Ordering::Acquire) {
            return true;
        }
        self.probes(key).all(|bit| {
            self.words[(bit >> 6) as usize].load(Ordering::Relaxed) & (1u64 << (bit & 63)) != 0
        })
    }

    /// Adds every idempotency key in the ledger, then starts answering "no". Returns the
    /// number of keys, or `None` if `abandon` was called meanwhile (shutdown).
    pub fn build_from(&self, ledger_tree: &sled::Tree) -> StoreResult<Option<u64>> {
        let mut n = 0u64;
        for key in ledger::all_idem_keys(ledger_tree) {
            if n.is_multiple_of(4096) && self.abandon.load(Ordering::Relaxed) {
                return Ok(None);
            }
            self.insert(&key?);
            n += 1;
        }
        if self.abandon.load(Ordering::Relaxed) {
            return Ok(None);
        }
        self.ready.store(true, Ordering::Release);
        Ok(Some(n))
    }

    /// Whether the start-up scan has finished (answers can be "no").
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Stops a running `build_from` early (it then leaves the filter answering "maybe").
    pub fn abandon(&self) {
        self.abandon.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrgId, RequestId};
    use crate::store::sled::ledger::{encode_idem, idem_key, IdemEntry};

    #[test]
    fn never_denies_a_stored_or_inserted_key() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("ledger").unwrap();
        let org = OrgId::parse("org_a").unwrap();
        let entry = IdemEntry {
            fingerprint: [0; 16],
            body: b"{}".to_vec(),
            created_ms: 1,
        };
        for i in 0..2_000 {
            let req = RequestId::parse(&format!("stored-{i}")).unwrap();
            tree.insert(idem_key(&org, &req), encode_idem(&entry))
                .unwrap();
        }
        let filter = IdemFilter::new(16);
        let probe = |s: &str| idem_key(&org, &RequestId::parse(s).unwrap());
        assert!(
            filter.may_contain(&probe("anything")),
            "not ready: always maybe"
        );
        assert_eq!(filter.build_from(&tree).unwrap(), Some(2_000));
        for i in 0..2_000 {
            assert!(filter.may_contain(&probe(&format!("stored-{i}"))));
        }
        filter.insert(&probe("fresh"));
        assert!(filter.may_contain(&probe("fresh")));
        let false_positives = (0..10_000)
            .filter(|i| filter.may_contain(&probe(&format!("absent-{i}"))))
            .count();
        assert!(
            false_positives < 100,
            "{false_positives} false positives in 10,000"
        );
    }

    #[test]
    fn an_abandoned_build_keeps_answering_maybe() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("ledger").unwrap();
        let filter = IdemFilter::new(12);
        filter.abandon();
        assert_eq!(filter.build_from(&tree).unwrap(), None);
        assert!(filter.may_contain(b"x"));
    }
}
