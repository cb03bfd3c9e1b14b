//! A run's Bloom filter, stored in its file: so the hash must be stable across builds and
//! restarts (std's hashers promise neither), and the filter is blocked (all of a key's
//! bits in one 64-byte line) so a look-up costs one cache miss per run, not seven.

use serde::{Deserialize, Serialize};

/// Bits per expected entry. Every fresh request id is looked up in every run, and a
/// false positive costs a block read and decode (~40 key compares): at 10 bits (about
/// 1.3% per run, blocked) those were a fifth of the writer thread's time under batch
/// load with a dozen runs. 16 bits (about 0.1%) cost 0.75 more bytes per entry held.
/// Old runs keep the size they were written with (the block count comes from the
/// stored words), so both read alike.
const BITS_PER_ENTRY: u64 = 16;
const WORDS_PER_BLOCK: usize = 8;
const PROBES: u32 = 8;

/// A stable 64-bit hash of a key (a multiply-xorshift over 8-byte words with a
/// SplitMix64 finish: fast, and well mixed enough for a filter).
pub fn hash(key: &[u8]) -> u64 {
    const M: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(M).rotate_left(29);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(last)).wrapping_mul(M);
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    pub fn with_capacity(entries: u64) -> Self {
        Self::with_bits(entries, BITS_PER_ENTRY)
    }

    fn with_bits(entries: u64, bits_per_entry: u64) -> Self {
        let blocks = (entries.max(1) * bits_per_entry).div_ceil(64 * WORDS_PER_BLOCK as u64);
        Self {
            words: vec![0; blocks as usize * WORDS_PER_BLOCK],
        }
    }

    /// The block, and the 8 bit positions (9 bits each) inside it, for a hash.
    fn probes(&self, hash: u64) -> (usize, impl Iterator<Item = usize>) {
        let blocks = (self.words.len() / WORDS_PER_BLOCK).max(1) as u64;
        let block = ((hash >> 32).wrapping_mul(blocks) >> 32) as usize * WORDS_PER_BLOCK;
        // A second, independent mix for the in-block positions.
        let inner = hash.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(17);
        (
            block,
            (0..PROBES).map(move |i| ((inner >> (i * 8)) as usize ^ (i as usize * 67)) & 511),
        )
    }

    pub fn insert(&mut self, hash: u64) {
        let (block, bits) = self.probes(hash);
        for bit in bits {
            if let Some(w) = self.words.get_mut(block + bit / 64) {
                *w |= 1 << (bit % 64);
            }
        }
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        let (block, mut bits) = self.probes(hash);
        bits.all(|bit| {
            self.words
                .get(block + bit / 64)
                .is_none_or(|w| w & (1 << (bit % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Stored filters depend on it: a change here makes every run file lie.
        let pinned: Vec<u64> = [&b""[..], b"i\0org_1\0req-1", b"i\0org_1\0req-2"]
            .iter()
            .map(|k| hash(k))
            .collect();
        assert_eq!(
            pinned,
            vec![0, 0xe984_e7c0_34ca_ade0, 0x1744_9ae4_68fe_2b01]
        );
    }

    /// False positives in 100,000 keys not inserted, for a filter of 10,000 keys that
    /// holds every inserted one.
    fn false_positives(mut f: Bloom) -> usize {
        for i in 0..10_000u32 {
            f.insert(hash(format!("i\0org\0in-{i}").as_bytes()));
        }
        assert!((0..10_000u32).all(|i| f.may_contain(hash(format!("i\0org\0in-{i}").as_bytes()))));
        (0..100_000u32)
            .filter(|i| f.may_contain(hash(format!("i\0org\0out-{i}").as_bytes())))
            .count()
    }

    #[test]
    fn holds_every_key_and_rejects_nearly_all_others() {
        let new = false_positives(Bloom::with_capacity(10_000));
        assert!(new < 300, "{new} false positives in 100,000");
        // Runs written before at 10 bits per entry still hold every key.
        let old = false_positives(Bloom::with_bits(10_000, 10));
        assert!(old < 3_000, "{old} false positives in 100,000");
        eprintln!("false positives in 100,000: {new} at 16 bits per entry, {old} at 10");
    }
}
