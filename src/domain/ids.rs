//! Identifier newtypes: org ids, usage request ids and API key ids.
//!
//! Ids travel into sled keys, logs and headers, so they are bounded (1..=128 bytes) and
//! may not contain control characters or the NUL byte that separates key segments.

use super::id_text::IdText;
use super::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;

pub const MAX_ID_BYTES: usize = 128;

fn check_id(raw: &str) -> Result<(), ParseError> {
    if raw.is_empty() {
        return Err(ParseError::new("must not be empty"));
    }
    if raw.len() > MAX_ID_BYTES {
        return Err(ParseError::new(format!(
            "must be at most {MAX_ID_BYTES} bytes"
        )));
    }
    // Ids are ASCII almost always and parsed on every request: check those as bytes,
    // and only the rest as chars.
    let b = raw.as_bytes();
    let (control, padded) = if raw.is_ascii() {
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_whitespace() || *b == 0x0b);
        (
            b.iter().any(|b| b.is_ascii_control()),
            edge(b.first()) || edge(b.last()),
        )
    } else {
        (raw.chars().any(char::is_control), raw.trim() != raw)
    };
    if control {
        return Err(ParseError::new("must not contain control characters"));
    }
    if padded {
        return Err(ParseError::new("must not start or end with white space"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(IdText);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                check_id(raw)?;
                Ok(Self(IdText::new(raw)))
            }
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }
    };
}

id_type!(
    /// An organisation; server-generated as `org_` + ULID, but any bounded id is looked up.
    OrgId
);
id_type!(
    /// The caller's idempotency key of one usage record (`request_id`).
    RequestId
);
id_type!(
    /// The public half of an org API key (`key_` + ULID).
    KeyId
);

impl OrgId {
    pub fn generate() -> Self {
        Self(IdText::new(&format!("org_{}", ulid::Ulid::new())))
    }
}

impl KeyId {
    pub fn generate() -> Self {
        Self(IdText::new(&format!("key_{}", ulid::Ulid::new())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(OrgId::parse("org_1").is_ok());
        assert!(OrgId::parse("").is_err());
        assert!(OrgId::parse(&"a".repeat(129)).is_err());
        assert!(OrgId::parse(&"a".repeat(128)).is_ok());
        assert!(RequestId::parse("a\u{0}b").is_err());
        assert!(RequestId::parse("a\nb").is_err());
        assert!(RequestId::parse(" a").is_err());
    }

    /// The byte checks for ASCII ids answer what the char checks answer.
    #[test]
    fn ascii_ids_are_judged_like_any_other() {
        let by_chars = |raw: &str| {
            if raw.chars().any(char::is_control) {
                Some("control")
            } else if raw.trim() != raw {
                Some("white space")
            } else {
                None
            }
        };
        let mut samples: Vec<String> = (0u8..=127)
            .flat_map(|b| {
                let c = char::from(b);
                [
                    format!("{c}a"),
                    format!("a{c}"),
                    format!("a{c}b"),
                    c.to_string(),
                ]
            })
            .collect();
        samples.extend(["\u{a0}a".into(), "a\u{2003}".into(), "é\u{85}".into()]);
        for raw in &samples {
            let got = check_id(raw).err().map(|e| e.0);
            let want = by_chars(raw);
            assert_eq!(
                got.as_deref().map(|m| m.contains(want.unwrap_or("-"))),
                want.map(|_| true),
                "{raw:?}: {got:?}"
            );
        }
    }

    #[test]
    fn generated_org_ids_have_the_documented_shape() {
        let id = OrgId::generate();
        assert!(id.as_str().starts_with("org_"));
        assert_eq!(id.as_str().len(), 4 + 26);
    }
}
