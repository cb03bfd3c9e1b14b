//! The text of an id or a metric name: inline up to 30 bytes — every server-generated id
//! (`org_` or `key_` + a ULID) fits — else on the heap (`inline_bytes.rs` says why).

use super::inline_bytes::InlineBytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Always a whole `&str`'s bytes: `new` is the only way in.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdText(InlineBytes<30>);

impl IdText {
    pub fn new(s: &str) -> Self {
        Self(InlineBytes::new(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: the bytes are a whole `&str`'s, copied by `new` (the only way in).
        unsafe { std::str::from_utf8_unchecked(self.0.as_bytes()) }
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

    #[test]
    fn texts_read_back_and_order_as_their_strings() {
        let samples = [
            "",
            "a",
            "é".repeat(15).as_str(),
            "org_01JABCDEFGHJKMNPQRSTVWXYZ0",
        ]
        .map(String::from)
        .into_iter()
        .chain(["z".repeat(31), "z".repeat(128)])
        .collect::<Vec<_>>();
        for s in &samples {
            let t = IdText::new(s);
            assert_eq!(t.as_str(), s);
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
