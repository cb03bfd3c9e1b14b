//! Field validation for request bodies: parse each raw field into its domain type and
//! collect every problem, so one 400 names all of them.

use super::error::{ApiError, Detail};
use crate::domain::ParseError;

#[derive(Default)]
pub struct Fields(Vec<Detail>);

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn problem(&mut self, field: &str, problem: impl Into<String>) {
        self.0.push(Detail::new(field, problem));
    }

    /// Parses a required field.
    pub fn required<R, T>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, ParseError>,
    ) -> Option<T> {
        match raw {
            None => {
                self.problem(field, "is required");
                None
            }
            Some(r) => self.check(field, parse(r)),
        }
    }

    pub fn check<T>(&mut self, field: &str, parsed: Result<T, ParseError>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(field, e.0);
                None
            }
        }
    }

    /// The 400 for everything collected (call when a required value is missing).
    pub fn error(self) -> ApiError {
        if self.0.is_empty() {
            ApiError::field("body", "is invalid")
        } else {
            ApiError::invalid(self.0)
        }
    }

    pub fn is_clean(&self) -> bool {
        self.0.is_empty()
    }
}

/// A human text field (names, user ids): 1..=256 bytes, no control characters.
pub fn text(raw: String) -> Result<String, ParseError> {
    if raw.trim().is_empty() {
        return Err(ParseError::new("must not be empty"));
    }
    if raw.len() > 256 {
        return Err(ParseError::new("must be at most 256 bytes"));
    }
    if raw.chars().any(char::is_control) {
        return Err(ParseError::new("must not contain control characters"));
    }
    Ok(raw)
}

/// An amount: a whole number from 1 to 1,000,000,000.
pub fn amount(raw: u64) -> Result<u64, ParseError> {
    if (1..=1_000_000_000).contains(&raw) {
        Ok(raw)
    } else {
        Err(ParseError::new(
            "must be a whole number from 1 to 1000000000",
        ))
    }
}
