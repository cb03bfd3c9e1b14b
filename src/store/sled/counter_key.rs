//! A counter's ledger key as the writer's cache holds it: inline up to 62 bytes (an org
//! id of 30, its period and a metric name of up to 25 fit), on the heap beyond.
//!
//! Why: the writer looks a counter up in a cache of every live org's counters on each
//! commit; with heap keys, the compare after the hash probe missed the cache a second
//! time (measured: half the writer's CPU under a consume load over 10,000 orgs).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes held inline; with the length and the tag the type is 64 bytes.
const INLINE: usize = 62;

#[derive(Clone)]
pub enum CounterKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl CounterKey {
    pub fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            // `key.len() <= INLINE < 256`.
            Self::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(key.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(b) => b,
        }
    }
}

// Equal, and hashed, as the bytes are (so that a map of these is searched by `&[u8]`).
impl PartialEq for CounterKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for CounterKey {}

impl Hash for CounterKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl Borrow<[u8]> for CounterKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for CounterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::HashMap;

    #[test]
    fn short_and_long_keys_are_found_by_their_bytes() {
        assert_eq!(std::mem::size_of::<CounterKey>(), 64);
        let keys: Vec<Vec<u8>> = [0, 1, 45, INLINE, INLINE + 1, 200]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        let mut map = HashMap::default();
        for (i, k) in keys.iter().enumerate() {
            let held = CounterKey::new(k);
            assert_eq!(held.as_bytes(), k.as_slice());
            assert_eq!(matches!(held, CounterKey::Inline { .. }), k.len() <= INLINE);
            map.insert(held, i);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(k.as_slice()), Some(&i), "{} bytes", k.len());
        }
        assert_eq!(map.get(&[7u8][..]), None);
    }
}
