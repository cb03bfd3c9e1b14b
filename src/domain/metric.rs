//! Metric names: lowercase `[a-z0-9_]{1,64}`, as SPEC.md §3 fixes them.

use super::id_text::IdText;
use super::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Metric(IdText);

impl Metric {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(ParseError::new("must be 1 to 64 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ParseError::new("must match [a-z0-9_]{1,64}"));
        }
        Ok(Self(IdText::new(raw)))
    }

    pub fn api_call() -> Self {
        Self(IdText::new("api_call"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for Metric {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Metric::parse(&value)
    }
}

impl From<Metric> for String {
    fn from(value: Metric) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_spec_pattern() {
        assert!(Metric::parse("api_call").is_ok());
        assert!(Metric::parse("a1_b2").is_ok());
        assert!(Metric::parse("API_CALL").is_err());
        assert!(Metric::parse("api-call").is_err());
        assert!(Metric::parse("").is_err());
        assert!(Metric::parse(&"a".repeat(65)).is_err());
    }
}
