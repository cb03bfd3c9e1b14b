//! The RateLimit headers on an HTTP answer and the standard denial envelope (story 4.3)
//! that every quota denial uses.

use super::error::{ApiError, Code};
use crate::domain::{Metric, PeriodKey, QuotaState};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpResponseBuilder;
use chrono::{DateTime, SecondsFormat, Utc};

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const STATE: HeaderName = HeaderName::from_static("ratelimit");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");

/// What the RateLimit headers and the denial envelope describe.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    pub metric: &'a Metric,
    pub period: PeriodKey,
    pub included: u64,
    pub remaining: u64,
    pub now: DateTime<Utc>,
}

impl Limits<'_> {
    fn state(&self) -> QuotaState<'_> {
        QuotaState {
            metric: self.metric,
            period: self.period,
            included: self.included,
            remaining: self.remaining,
            now: self.now,
        }
    }

    fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        let state = self.state();
        [
            (POLICY, to_value(state.policy_header())),
            (STATE, to_value(state.state_header())),
        ]
    }

    pub fn apply(&self, res: &mut HttpResponseBuilder) {
        for h in self.headers() {
            res.insert_header(h);
        }
    }

    /// The 429 every quota denial answers.
    pub fn denial(&self) -> ApiError {
        let limits = Limits {
            remaining: 0,
            ..*self
        };
        let reset_at = self.period.end();
        let mut e = ApiError::new(
            Code::QuotaExceeded,
            format!(
                "quota for {} exhausted in period {}; it resets at {}",
                self.metric,
                self.period,
                reset_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        );
        let extra = &mut e.extra;
        extra.insert("allow".into(), false.into());
        extra.insert("remaining".into(), 0.into());
        extra.insert("metric".into(), self.metric.as_str().into());
        extra.insert("periodKey".into(), self.period.to_string().into());
        extra.insert("limit".into(), self.included.into());
        extra.insert(
            "resetAt".into(),
            reset_at.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
        );
        e.headers.extend(limits.headers());
        e.headers
            .push((RETRY_AFTER, to_value(self.state().reset_secs().to_string())));
        e
    }
}

fn to_value(s: String) -> HeaderValue {
    // Built only from metric names ([a-z0-9_]) and numbers, so always valid; from the
    // `String` itself, not a copy of it (two of these on every decision).
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

use crate::domain::ratelimit::DEGRADED_HEADER as DEGRADED;

/// Before a check or consume: whether the store is unreachable (flag the answer), or,
/// under `store.redis_outage = "deny"`, the 503 to answer instead.
pub fn store_outage(state: &crate::http::AppState) -> Result<bool, ApiError> {
    if !state.engine.context().degraded.is_degraded() {
        return Ok(false);
    }
    match state.settings.store.redis_outage {
        crate::config::OutagePolicy::ServeCached => Ok(true),
        crate::config::OutagePolicy::Deny => {
            let mut e = ApiError::new(
                Code::Unavailable,
                "the store is unreachable and store.redis_outage is \"deny\"",
            );
            e.headers.push(degraded_header());
            Err(e)
        }
    }
}

pub fn degraded_header() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(DEGRADED.0),
        HeaderValue::from_static(DEGRADED.1),
    )
}

/// Adds the degraded flag to a decision's answer (allowed or denied) when `degraded`.
pub fn flag_degraded(
    answer: Result<actix_web::HttpResponse, ApiError>,
    degraded: bool,
) -> Result<actix_web::HttpResponse, ApiError> {
    if !degraded {
        return answer;
    }
    match answer {
        Ok(mut res) => {
            let (name, value) = degraded_header();
            res.headers_mut().insert(name, value);
            Ok(res)
        }
        Err(mut e) => {
            e.headers.push(degraded_header());
            Err(e)
        }
    }
}
