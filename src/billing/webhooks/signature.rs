//! Stripe webhook signatures, verified as Stripe specifies: the `Stripe-Signature` header
//! `t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`; a signature is HMAC-SHA256 with the
//! endpoint's secret over `"{t}.{raw body}"`. Any `v1` may match any configured secret
//! (rotation keeps old and new secrets valid together); `v0` and unknown schemes are
//! ignored; the timestamp must be within the tolerance of now, both ways (a replayed old
//! delivery and a clock far ahead are both refused). Comparison is constant-time.
//!
//! The header is checked in two steps so that a request with a malformed or stale header
//! is refused before its body is read: [`parse`] and [`Header::check_time`] need only the
//! header, [`Header::verify`] then needs the body.

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Most `v1` values looked at (Stripe sends one per active secret; a hostile header
/// could send thousands, each costing an HMAC per secret).
const MAX_CANDIDATES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature timestamp is outside the {0} s tolerance")]
    Stale(i64),
    #[error("no v1 signature matches a configured webhook secret")]
    Mismatch,
}

/// A `Stripe-Signature` header whose shape is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub timestamp: i64,
    candidates: Vec<[u8; 32]>,
}

/// The HMAC of `"{timestamp}.{body}"` with `secret`, as Stripe computes it.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts a key of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Parses the header's shape: one `t=` timestamp and at least one well-formed `v1`.
pub fn parse(header: Option<&str>) -> Result<Header, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (scheme, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match scheme {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not a Unix timestamp"))?;
                timestamp = Some(t);
            }
            "v1" if candidates.len() < MAX_CANDIDATES => {
                // A v1 that is not 32 bytes of hex can never match; skip it like Stripe.
                let mut sig = [0u8; 32];
                if hex::decode_to_slice(value, &mut sig).is_ok() {
                    candidates.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    Ok(Header {
        timestamp,
        candidates,
    })
}

impl Header {
    /// Whether the timestamp is within `tolerance_secs` of `now_unix`, either way. The
    /// difference cannot overflow, whatever the header says.
    pub fn check_time(&self, now_unix: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
        let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
        if now_unix.abs_diff(self.timestamp) > tolerance {
            return Err(SignatureError::Stale(tolerance_secs));
        }
        Ok(())
    }

    /// Whether any `v1` is the signature of `body` under any of `secrets`.
    pub fn verify(&self, body: &[u8], secrets: &[Secret]) -> Result<(), SignatureError> {
        let mut matched = false;
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            let expected = sign(secret.expose(), self.timestamp, body);
            for candidate in &self.candidates {
                // Not short-circuited: the time taken does not depend on which one matched.
                matched |= bool::from(expected.ct_eq(candidate));
            }
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Checks `header` for `body` against `secrets` at `now_unix` (all three steps).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let h = parse(header)?;
    h.check_time(now_unix, tolerance_secs)?;
    h.verify(body, secrets)?;
    Ok(h.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_773_489_600;

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", hex::encode(sign(secret, t, body)))
    }

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn a_valid_signature_passes_and_a_tampered_body_fails() {
        let h = header("whsec_a", NOW, b"{\"id\":1}");
        let s = secrets(&["whsec_a"]);
        assert_eq!(verify(Some(&h), b"{\"id\":1}", &s, NOW, 300), Ok(NOW));
        assert_eq!(
            verify(Some(&h), b"{\"id\":2}", &s, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_v1_may_match_any_secret_and_v0_is_ignored() {
        let body = b"{}";
        let good = hex::encode(sign("whsec_new", NOW, body));
        let h = format!("t={NOW},v0={good},v1={},v1={good}", "00".repeat(32));
        let s = secrets(&["whsec_old", "whsec_new"]);
        assert!(verify(Some(&h), body, &s, NOW, 300).is_ok());
        let only_v0 = format!("t={NOW},v0={good}");
        assert_eq!(
            verify(Some(&only_v0), body, &s, NOW, 300),
            Err(SignatureError::Malformed("no v1 signature"))
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_fail_both_ways() {
        let s = secrets(&["k"]);
        for t in [NOW - 301, NOW + 301] {
            let h = header("k", t, b"x");
            assert_eq!(
                verify(Some(&h), b"x", &s, NOW, 300),
                Err(SignatureError::Stale(300))
            );
        }
        let h = header("k", NOW - 300, b"x");
        assert!(verify(Some(&h), b"x", &s, NOW, 300).is_ok());
    }

    #[test]
    fn extreme_timestamps_are_stale_not_an_overflow() {
        let s = secrets(&["k"]);
        let pairs = [
            (i64::MIN, NOW),
            (i64::MIN, i64::MAX),
            (i64::MAX, NOW),
            (i64::MAX, i64::MIN),
            (i64::MIN + 1, NOW),
        ];
        for (t, now) in pairs {
            let h = format!("t={t},v1={}", "00".repeat(32));
            assert_eq!(
                verify(Some(&h), b"x", &s, now, 300),
                Err(SignatureError::Stale(300)),
                "t={t} now={now}"
            );
        }
    }

    #[test]
    fn malformed_headers_fail() {
        let s = secrets(&["k"]);
        for h in ["", "garbage", "t=abc,v1=00", "v1=00"] {
            assert!(
                matches!(
                    verify(Some(h), b"x", &s, NOW, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{h}"
            );
        }
        assert_eq!(
            verify(None, b"x", &s, NOW, 300),
            Err(SignatureError::Missing)
        );
    }
}
