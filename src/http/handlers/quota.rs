//! Stories 4.1, 4.3 and 4.4: the real-time quota check (from memory, never writing), the
//! consume (decide and count in one step) and the example of the standard denial
//! envelope.

use crate::domain::{Metric, OrgId, PeriodKey};
use crate::http::context::tag_org;
use crate::http::denial::{flag_degraded, store_outage, Limits};
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, JsonBytes};
use crate::http::fields::{self, Fields, Text};
use crate::http::json::parse_json;
use crate::http::AppState;
use crate::quota::Decision;
use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckBody<'a> {
    #[serde(borrow)]
    org_id: Option<Text<'a>>,
    #[serde(borrow)]
    metric: Option<Text<'a>>,
    cost: Option<u64>,
}

/// The checked fields of a check or consume body.
fn decision_request(state: &AppState, body: CheckBody<'_>) -> ApiResult<(OrgId, Metric, u64)> {
    let mut f = Fields::new();
    let org = f.required("orgId", Text::of(&body.org_id), OrgId::parse);
    let metric = f.required("metric", Text::of(&body.metric), |m| {
        fields::known_metric(state.engine.catalogue(), m)
    });
    let cost = match body.cost {
        None => Some(1),
        Some(c) => f.check("cost", fields::amount(c)),
    };
    match (org, metric, cost) {
        (Some(org), Some(metric), Some(cost)) => Ok((org, metric, cost)),
        _ => Err(f.error()),
    }
}

/// 200 `{allow, remaining}` with the RateLimit headers, or the standard denial.
fn decision_response(
    metric: &Metric,
    decision: Decision,
    included: u64,
    period: PeriodKey,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<HttpResponse> {
    let limits = Limits {
        metric,
        period,
        included,
        remaining: decision.remaining,
        now,
    };
    if !decision.allow {
        return Err(limits.denial());
    }
    let mut res = HttpResponse::Ok();
    limits.apply(&mut res);
    Ok(res
        .content_type(ContentType::json())
        .body(allowed_body(decision.remaining)))
}

/// The allowed answer's body, `{"allow":true,"remaining":N}`, written as bytes in one
/// exact allocation: it is on every allowed decision, and serde's map machinery for two
/// fixed keys cost more than the RateLimit headers.
fn allowed_body(remaining: u64) -> Vec<u8> {
    const HEAD: &[u8] = br#"{"allow":true,"remaining":"#;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(remaining).as_bytes();
    let mut body = Vec::with_capacity(HEAD.len() + digits.len() + 1);
    body.extend_from_slice(HEAD);
    body.extend_from_slice(digits);
    body.push(b'}');
    body
}

/// Check or consume: the same request, the same answer; only whether it counts differs.
#[derive(Clone, Copy)]
enum Decide {
    Check,
    Consume,
}

async fn decide(state: &AppState, auth: &Auth, raw: &[u8], how: Decide) -> ApiResult<HttpResponse> {
    let body: CheckBody<'_> = parse_json(raw)?;
    let (org, metric, cost) = decision_request(state, body)?;
    auth.require_org(&org)?;
    tag_org(&org);
    let degraded = store_outage(state)?;
    let now = state.now();
    let (decision, included, period) = match how {
        Decide::Check => {
            let o = state.engine.check(&org, &metric, cost, now).await?;
            (o.decision, o.included, o.period)
        }
        Decide::Consume => {
            let o = state.engine.consume(&org, &metric, cost, now).await?;
            (o.decision, o.included, o.period)
        }
    };
    flag_degraded(
        decision_response(&metric, decision, included, period, now),
        degraded,
    )
}

pub async fn check(
    state: web::Data<AppState>,
    auth: Auth,
    JsonBytes(raw): JsonBytes,
) -> ApiResult<HttpResponse> {
    decide(&state, &auth, &raw, Decide::Check).await
}

/// As `check`, except that an allowed answer has counted the cost (`remaining` is
/// after it).
pub async fn consume(
    state: web::Data<AppState>,
    auth: Auth,
    JsonBytes(raw): JsonBytes,
) -> ApiResult<HttpResponse> {
    decide(&state, &auth, &raw, Decide::Consume).await
}

/// Any authenticated caller may see the envelope; it describes the free plan's
/// `api_call` quota in the current period.
pub async fn deny_example(state: web::Data<AppState>, _auth: Auth) -> ApiResult<HttpResponse> {
    let now = state.now();
    let metric = Metric::api_call();
    let free = state.engine.catalogue().free();
    Err(Limits {
        metric: &metric,
        period: PeriodKey::containing(now),
        included: free.included(&metric),
        remaining: 0,
        now,
    }
    .denial())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written body is the JSON object clients parse.
    #[test]
    fn allowed_body_is_the_json_object() {
        for remaining in [0, 7, 999, u64::MAX] {
            let parsed: serde_json::Value =
                serde_json::from_slice(&allowed_body(remaining)).unwrap();
            assert_eq!(
                parsed,
                serde_json::json!({"allow": true, "remaining": remaining})
            );
        }
    }
}
