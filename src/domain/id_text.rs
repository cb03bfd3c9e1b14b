//! The text of an id or a metric name, held inline when it is short enough — as every
//! server-generated id (`org_` or `key_` + a ULID, 30 bytes) is — and on the heap
//! otherwise.
//!
//! Why: the hot path finds an org's counters by its id among tens of thousands, and a
//! heap string there costs a cache miss of its own for the key compare, besides an
//! allocation for every clone (each consume queues its org by id; each flushed counter
//! carries its metric). Inline, the compare reads the map bucket it already loaded and a
//! clone is a 32-byte copy.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Bytes held inline; with the length and the tag the type is 32 bytes.
const INLINE: usize = 30;

#[derive(Clone)]
pub enum IdText {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl IdText {
    pub fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            // `s.len() <= INLINE < 256`.
            Self::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(s.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // SAFETY: the bytes are a whole `&str`'s, copied by `new` (the only way in).
            Self::Inline { .. } => unsafe { std::str::from_utf8_unchecked(self.as_bytes()) },
            Self::Heap(s) => s,
        }
    }
}

// Equality, order and hash are the text's, whichever way it is held (`new` picks by
// length alone, so equal texts are always held alike, but nothing relies on that).
impl PartialEq for IdText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IdText {}

impl PartialOrd for IdText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdText {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for IdText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// As a string, exactly as the `String` it replaces was (stored records keep their
/// encoding).
impl Serialize for IdText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = IdText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IdText, E> {
                Ok(IdText::new(v))
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn short_and_long_texts_read_back_compare_and_hash_as_their_strings() {
        assert_eq!(std::mem::size_of::<IdText>(), 32);
        let samples = [
            "",
            "a",
            "org_01JABCDEFGHJKMNPQRSTVWXYZ0",
            "é".repeat(15).as_str(),
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("org_{}", "x".repeat(27)), "z".repeat(128)])
        .collect::<Vec<_>>();
        for s in &samples {
            let t = IdText::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(matches!(t, IdText::Inline { .. }), s.len() <= INLINE, "{s}");
            assert_eq!(hash_of(&t), hash_of(s.as_str()));
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
            for o in &samples {
                assert_eq!(t == IdText::new(o), s == o);
                assert_eq!(t.cmp(&IdText::new(o)), s.as_str().cmp(o.as_str()));
            }
        }
    }

    #[test]
    fn encodes_exactly_as_a_string_did() {
        for s in ["org_1", &"k".repeat(90)] {
            let t = IdText::new(s);
            let as_string = postcard::to_allocvec(&s.to_string()).unwrap();
            assert_eq!(postcard::to_allocvec(&t).unwrap(), as_string);
            assert_eq!(postcard::from_bytes::<IdText>(&as_string).unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<IdText>(&json).unwrap(), t);
        }
    }
}
