//! Field validation for request bodies: parse each raw field into its domain type and
//! collect every problem, so one 400 names all of them. Also the usage record body,
//! shared by `usage/record` and its batch form so each event is checked the same way.

use super::error::{ApiError, ApiResult, Detail};
use crate::domain::{Catalogue, Metric, OrgId, ParseError, RequestId};
use crate::quota::RecordRequest;
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

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

/// An email address as Stripe accepts it: one `@`, a dotted domain, no spaces, at most
/// 254 bytes (RFC 5321's path limit).
pub fn email(raw: String) -> Result<String, ParseError> {
    let bad = || ParseError::new("must be an email address like name@example.com");
    if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
    let labels_ok = domain.split('.').all(|l| !l.is_empty());
    if local.is_empty() || domain.contains('@') || !domain.contains('.') || !labels_ok {
        return Err(bad());
    }
    Ok(raw)
}

/// An id Stripe issued (`pm_...`, `in_...`): ASCII letters, digits and `_`, 1..=255.
pub fn stripe_id(raw: String) -> Result<String, ParseError> {
    let ok = (1..=255).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(raw)
    } else {
        Err(ParseError::new(
            "must be a Stripe id (letters, digits and _, at most 255)",
        ))
    }
}

/// A plan code or price lookup key: 1..=64 of `[A-Za-z0-9_.-]` (checked against the
/// catalogue by the billing service).
pub fn plan_code(raw: String) -> Result<String, ParseError> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(raw)
    } else {
        Err(ParseError::new("must be a plan code such as plan_pro_m"))
    }
}

/// A Unix time in seconds as RFC 3339 UTC (the service's time format).
pub fn rfc3339(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The header carrying the cursor of a list's next page.
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// Parses a `limit` query parameter in `1..=max`.
pub fn limit_param(raw: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    match raw {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::field("limit", format!("must be a whole number from 1 to {max}"))
            }),
    }
}

/// A metric name that some plan of the catalogue defines.
pub fn known_metric(catalogue: &Catalogue, raw: &str) -> Result<Metric, ParseError> {
    let metric = Metric::parse(raw)?;
    if catalogue.is_known_metric(&metric) {
        Ok(metric)
    } else {
        Err(ParseError::new(format!("unknown metric {raw:?}")))
    }
}

/// The `orgId` every billing body carries, checked against the caller's credential.
pub fn org_field(f: &mut Fields, raw: Option<&str>) -> Option<OrgId> {
    f.required("orgId", raw, OrgId::parse)
}

/// A string field borrowed from the body's bytes when it holds no escapes, owned when
/// it does: the hot routes' ids and names are parsed straight from the request, not
/// copied into a `String` each first. Refuses a non-string exactly as `String` does.
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An optional field's text.
    pub fn of<'s>(field: &'s Option<Text<'a>>) -> Option<&'s str> {
        field.as_ref().map(Text::as_str)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Cow<'de, str>;
            // `String`'s words, so that errors read the same whichever is parsed.
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_string(Visit).map(Text)
    }
}

/// How far in the future `occurredAt` may be (clock skew between callers and us).
const MAX_AHEAD: chrono::Duration = chrono::Duration::minutes(5);

/// One usage record as sent (alone, or one event of a batch).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordBody<'a> {
    #[serde(borrow)]
    org_id: Option<Text<'a>>,
    #[serde(borrow)]
    metric: Option<Text<'a>>,
    value: Option<u64>,
    #[serde(borrow)]
    occurred_at: Option<Text<'a>>,
    #[serde(rename = "request_id", borrow)]
    request_id: Option<Text<'a>>,
}

fn occurred_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ParseError> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| ParseError::new("must be an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    if at > now + MAX_AHEAD {
        return Err(ParseError::new(
            "must not be more than 5 minutes in the future",
        ));
    }
    Ok(at)
}

/// The checked fields of one record (alone, or one event of a batch).
pub fn record_request(
    catalogue: &Catalogue,
    body: RecordBody<'_>,
    now: DateTime<Utc>,
) -> ApiResult<(OrgId, RecordRequest)> {
    let mut f = Fields::new();
    let org = f.required("orgId", Text::of(&body.org_id), OrgId::parse);
    let metric = f.required("metric", Text::of(&body.metric), |m| {
        known_metric(catalogue, m)
    });
    let value = f.required("value", body.value, amount);
    let at = f.required("occurredAt", Text::of(&body.occurred_at), |r| {
        occurred_at(r, now)
    });
    let request = f.required("request_id", Text::of(&body.request_id), RequestId::parse);
    let (Some(org), Some(metric), Some(value), Some(at), Some(request)) =
        (org, metric, value, at, request)
    else {
        return Err(f.error());
    };
    let usage = RecordRequest {
        metric,
        value,
        occurred_at: at,
        request,
    };
    Ok((org, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.org"] {
            assert!(email(ok.into()).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@b..co", "a@.co",
        ] {
            assert!(email(bad.into()).is_err(), "{bad}");
        }
    }

    /// A `Text` borrows when it can, unescapes when it must, and refuses what `String`
    /// refuses in `String`'s words (a batch's event answers must equal the single
    /// record's, error text included).
    #[test]
    fn text_borrows_plain_strings_and_refuses_like_string() {
        let t: Text<'_> = serde_json::from_str(r#""org_1""#).unwrap();
        assert!(matches!(t.0, Cow::Borrowed("org_1")));
        let t: Text<'_> = serde_json::from_str(r#""a\"b\u00e9""#).unwrap();
        assert_eq!(t.as_str(), "a\"bé");
        for bad in ["5", "true", "null", "[1]", "{}", "\"open"] {
            let text = serde_json::from_str::<Text<'_>>(bad)
                .err()
                .map(|e| e.to_string());
            let string = serde_json::from_str::<String>(bad)
                .err()
                .map(|e| e.to_string());
            assert!(text.is_some(), "{bad}");
            assert_eq!(text, string, "{bad}");
        }
    }

    #[test]
    fn stripe_ids() {
        assert!(stripe_id("pm_card_visa".into()).is_ok());
        assert!(stripe_id("".into()).is_err());
        assert!(stripe_id("pm_x/../y".into()).is_err());
        assert!(stripe_id("x".repeat(256)).is_err());
    }
}
