//! The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) every quota
//! answer carries, whichever front it leaves by (HTTP, forward auth, Envoy's rate limit
//! service): `RateLimit-Policy: "<metric>";q=<included>;w=<seconds in period>`,
//! `RateLimit: "<metric>";r=<remaining>;t=<seconds to period end>`, and on a denial
//! `Retry-After: <seconds to period end>`.

use super::{Metric, PeriodKey};
use chrono::{DateTime, Utc};

/// A quota's state as the headers describe it.
#[derive(Debug, Clone, Copy)]
pub struct QuotaState<'a> {
    pub metric: &'a Metric,
    pub period: PeriodKey,
    pub included: u64,
    pub remaining: u64,
    pub now: DateTime<Utc>,
}

impl QuotaState<'_> {
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.metric,
            self.included,
            self.period.length_secs()
        )
    }

    pub fn state_header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.metric,
            self.remaining,
            self.reset_secs()
        )
    }

    /// Whole seconds until the period ends (and the quota resets).
    pub fn reset_secs(&self) -> u64 {
        self.period.secs_until_end(self.now)
    }
}

/// The header (name, value) on a decision made while the shared store is unreachable,
/// from this node's memory alone.
pub const DEGRADED_HEADER: (&str, &str) = ("x-edgequota-degraded", "store");
