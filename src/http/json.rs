//! Parsing a JSON body the service's way: exactly one value (white space around it, nothing
//! else), refused in the envelope (400) naming the failing field, read from text once it
//! is known to be UTF-8.

use super::error::{ApiError, Detail};
use serde::Deserialize;

/// Parses exactly one JSON value (white space around it allowed, nothing else),
/// naming the failing field (`value`, `items[2].id`) in the details.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_json_str(text),
        Err(_) => parse_naming_the_field(bytes),
    }
}

/// `parse_json` of text already known to be UTF-8 (a batch's events, cut from a body
/// that was checked whole). Read from a `str`, serde_json checks no string's UTF-8
/// again; from bytes it checked every key and value on its own — a twentieth of a
/// batch's instructions.
pub fn parse_json_str<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ApiError> {
    // The plain parse is the hot path; only a body it refuses is parsed again, with
    // path tracking, to name the field in the error.
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(value) = T::deserialize(&mut de) {
        if de.end().is_ok() {
            return Ok(value);
        }
    }
    parse_naming_the_field(text.as_bytes())
}

fn parse_naming_the_field<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        let problem = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("is not valid JSON: {inner}")
            }
            _ => inner.to_string(),
        };
        ApiError::invalid(vec![Detail::new(field, problem)])
    })?;
    de.end()
        .map_err(|e| ApiError::field("body", format!("is not valid JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that is not UTF-8 is still refused in the envelope, naming the body, and
    /// the `str` path answers exactly what the bytes path does.
    #[test]
    fn bodies_parse_the_same_from_text_and_from_bytes() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct B<'a> {
            #[serde(borrow)]
            name: std::borrow::Cow<'a, str>,
            n: u64,
        }
        let good = r#" {"name":"caf\u00e9 ok","n":3} "#;
        let from_bytes: B = parse_json(good.as_bytes()).unwrap();
        let from_text: B = parse_json_str(good).unwrap();
        assert_eq!(from_bytes, from_text);
        assert_eq!(from_text.name, "caf\u{e9} ok");
        let err = |r: Result<B, ApiError>| r.unwrap_err().body().to_string();
        let bad_utf8 = b"{\"name\":\"a\xff\",\"n\":1}";
        let e = err(parse_json(bad_utf8));
        assert!(e.contains("\"field\":\"name\""), "{e}");
        for bad in [
            r#"{"name":"a","n":"x"}"#,
            r#"{"name":"a","n":1} x"#,
            r#"{"name":"a""#,
        ] {
            assert_eq!(
                err(parse_json(bad.as_bytes())),
                err(parse_json_str(bad)),
                "{bad}"
            );
        }
    }
}
