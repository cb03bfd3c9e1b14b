//! A short byte string held inline, and on the heap only when it is longer than `N`:
//! the text of ids and metric names (`id_text.rs`), and the writer's counter keys.
//!
//! Why: the hot paths find an org by its id, and the writer a counter by its key, among
//! tens of thousands; with heap strings the compare after the hash probe missed the cache
//! a second time, and every clone allocated. Inline, the compare reads the map bucket it
//! already loaded and a clone is a copy of `N + 2` bytes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// `N` must be under 256 (the inline length is a byte).
#[derive(Clone)]
pub enum InlineBytes<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    pub fn new(b: &[u8]) -> Self {
        match u8::try_from(b.len()) {
            Ok(len) if b.len() <= N => {
                let mut bytes = [0u8; N];
                bytes[..b.len()].copy_from_slice(b);
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(b.into()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(b) => b,
        }
    }
}

// Equal, ordered and hashed as the bytes are, whichever way they are held (so that a
// map of these is searched by `&[u8]`).
impl<const N: usize> PartialEq for InlineBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for InlineBytes<N> {}

impl<const N: usize> PartialOrd for InlineBytes<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for InlineBytes<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl<const N: usize> Hash for InlineBytes<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl<const N: usize> Borrow<[u8]> for InlineBytes<N> {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize> std::fmt::Debug for InlineBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::HashMap;

    #[test]
    fn short_and_long_bytes_are_found_compared_and_sized_as_promised() {
        assert_eq!(std::mem::size_of::<InlineBytes<30>>(), 32);
        assert_eq!(std::mem::size_of::<InlineBytes<62>>(), 64);
        let samples: Vec<Vec<u8>> = [0, 1, 45, 62, 63, 200, 300]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        let mut map = HashMap::default();
        for (i, s) in samples.iter().enumerate() {
            let held = InlineBytes::<62>::new(s);
            assert_eq!(held.as_bytes(), s.as_slice());
            assert_eq!(matches!(held, InlineBytes::Inline { .. }), s.len() <= 62);
            for o in &samples {
                let other = InlineBytes::<62>::new(o);
                assert_eq!(held == other, s == o);
                assert_eq!(held.cmp(&other), s.cmp(o));
            }
            map.insert(held, i);
        }
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(map.get(s.as_slice()), Some(&i), "{} bytes", s.len());
        }
        assert_eq!(map.get(&[7u8][..]), None);
    }
}
