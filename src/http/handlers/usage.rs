//! Stories 1.5 and 4.2: seed an org's counter for a period, and record usage —
//! idempotent on `request_id`, answered only once the record is durable. The batch
//! form (4.7) is in `usage_batch.rs`.

use crate::domain::{OrgId, ParseError, PeriodKey, RequestId};
use crate::http::context::tag_org;
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, Json};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use crate::quota::RecordRequest;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// How far in the future `occurredAt` may be (clock skew between callers and us).
const MAX_AHEAD: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedBody {
    org_id: Option<String>,
    period_key: Option<String>,
}

pub async fn seed(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    Json(body): Json<SeedBody>,
) -> ApiResult<HttpResponse> {
    let mut f = Fields::new();
    let org = f.required("orgId", body.org_id.as_deref(), OrgId::parse);
    let period = f.required("periodKey", body.period_key.as_deref(), PeriodKey::parse);
    let (Some(org), Some(period)) = (org, period) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&req, &org);
    let reply = state.engine.seed(&org, period).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "used": reply.used,
        "remaining": reply.remaining,
        "periodKey": reply.period.to_string(),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordBody {
    org_id: Option<String>,
    metric: Option<String>,
    value: Option<u64>,
    occurred_at: Option<String>,
    #[serde(rename = "request_id")]
    request_id: Option<String>,
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
pub(super) fn record_request(
    state: &AppState,
    body: RecordBody,
    now: DateTime<Utc>,
) -> ApiResult<(OrgId, RecordRequest)> {
    let mut f = Fields::new();
    let org = f.required("orgId", body.org_id.as_deref(), OrgId::parse);
    let metric = f.required("metric", body.metric.as_deref(), |m| {
        fields::known_metric(state.engine.catalogue(), m)
    });
    let value = f.required("value", body.value, fields::amount);
    let at = f.required("occurredAt", body.occurred_at.as_deref(), |r| {
        occurred_at(r, now)
    });
    let request = f.required("request_id", body.request_id.as_deref(), RequestId::parse);
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

pub async fn record(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    Json(body): Json<RecordBody>,
) -> ApiResult<HttpResponse> {
    let now = state.now();
    let (org, usage) = record_request(&state, body, now)?;
    auth.require_org(&org)?;
    tag_org(&req, &org);
    let reply = state.engine.record(&org, usage, now).await?;
    let mut res = HttpResponse::Ok();
    if reply.replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    Ok(res
        .content_type("application/json")
        .body(reply.body.to_vec()))
}
