//! Stories 1.5 and 4.2: seed an org's counter for a period, and record usage —
//! idempotent on `request_id`, answered only once the record is durable. The batch
//! form (4.7) is in `usage_batch.rs`.

use crate::domain::{OrgId, PeriodKey};
use crate::http::context::tag_org;
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, Json, JsonBytes};
use crate::http::fields::{record_request, Fields, RecordBody};
use crate::http::json::parse_json;
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedBody {
    org_id: Option<String>,
    period_key: Option<String>,
}

pub async fn seed(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<SeedBody>,
) -> ApiResult<HttpResponse> {
    let mut f = Fields::new();
    let org = f.required("orgId", body.org_id.as_deref(), OrgId::parse);
    let period = f.required("periodKey", body.period_key.as_deref(), PeriodKey::parse);
    let (Some(org), Some(period)) = (org, period) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    let reply = state.engine.seed(&org, period).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "used": reply.used,
        "remaining": reply.remaining,
        "periodKey": reply.period.to_string(),
    })))
}

pub async fn record(
    state: web::Data<AppState>,
    auth: Auth,
    JsonBytes(raw): JsonBytes,
) -> ApiResult<HttpResponse> {
    let body: RecordBody<'_> = parse_json(&raw)?;
    let now = state.now();
    let (org, usage) = record_request(state.engine.catalogue(), body, now)?;
    auth.require_org(&org)?;
    tag_org(&org);
    let reply = state.engine.record(&org, usage, now).await?;
    let mut res = HttpResponse::Ok();
    if reply.replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    Ok(res
        .content_type("application/json")
        .body(reply.body.to_vec()))
}
