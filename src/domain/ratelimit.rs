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
        self.field('q', self.included, 'w', self.period.length_secs())
    }

    pub fn state_header(&self) -> String {
        self.field('r', self.remaining, 't', self.reset_secs())
    }

    /// `"<metric>";<a>=<x>;<b>=<y>` in one exact-size allocation: both headers are on
    /// every decision, and `format!`'s machinery cost more than the rest of the answer.
    fn field(&self, a: char, x: u64, b: char, y: u64) -> String {
        let (mut xs, mut ys) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (x, y) = (xs.format(x), ys.format(y));
        let metric = self.metric.as_str();
        let mut s = String::with_capacity(metric.len() + x.len() + y.len() + 8);
        s.push('"');
        s.push_str(metric);
        s.push_str("\";");
        s.push(a);
        s.push('=');
        s.push_str(x);
        s.push(';');
        s.push(b);
        s.push('=');
        s.push_str(y);
        s
    }

    /// Whole seconds until the period ends (and the quota resets).
    pub fn reset_secs(&self) -> u64 {
        self.period.secs_until_end(self.now)
    }
}

/// The header (name, value) on a decision made while the shared store is unreachable,
/// from this node's memory alone.
pub const DEGRADED_HEADER: (&str, &str) = ("x-edgequota-degraded", "store");

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn headers_name_the_metric_quota_window_and_reset() {
        let metric = Metric::parse("api_call").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 2, 27, 0, 0, 0).unwrap();
        let state = QuotaState {
            metric: &metric,
            period: PeriodKey::containing(now),
            included: 1_000,
            remaining: 7,
            now,
        };
        // February 2026 has 28 days; two days are left of it.
        assert_eq!(state.policy_header(), "\"api_call\";q=1000;w=2419200");
        assert_eq!(state.state_header(), "\"api_call\";r=7;t=172800");
    }
}
