//! Story 7.1 and the operator endpoints: quota reset across orgs, the DebugLog, and a
//! read of one org's stored usage in any period (history survives rollover).

use crate::domain::{OrgId, PeriodKey};
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, Json, Query};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetBody {
    period_key: Option<String>,
    force: Option<bool>,
}

pub async fn quotas_reset(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ResetBody>,
) -> ApiResult<HttpResponse> {
    auth.require_admin()?;
    let mut f = Fields::new();
    let Some(period) = f.required("periodKey", body.period_key.as_deref(), PeriodKey::parse) else {
        return Err(f.error());
    };
    let force = body.force.unwrap_or(false);
    let updated = state.engine.rollover(period, force, "admin").await?;
    Ok(HttpResponse::Ok().json(json!({ "updated": updated, "periodKey": period.to_string() })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DebugLogQuery {
    correlation_id: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugLogLine {
    at: String,
    method: String,
    route: String,
    status: u16,
    latency_us: u64,
    correlation_id: String,
    request_id: String,
    org_id: Option<String>,
}

pub async fn debug_log(
    state: web::Data<AppState>,
    auth: Auth,
    Query(query): Query<DebugLogQuery>,
) -> ApiResult<HttpResponse> {
    auth.require_admin()?;
    let limit = fields::limit_param(query.limit.as_deref(), 100, 1000)?;
    let correlation = query.correlation_id.filter(|c| !c.is_empty());
    let entries = state
        .engine
        .backend()
        .debug_log
        .recent(correlation, limit)
        .await?;
    let lines: Vec<DebugLogLine> = entries
        .into_iter()
        .map(|e| DebugLogLine {
            at: chrono::DateTime::from_timestamp_millis(e.at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            method: e.method,
            route: e.route,
            status: e.status,
            latency_us: e.latency_us,
            correlation_id: e.correlation_id,
            request_id: e.request_id,
            org_id: e.org_id,
        })
        .collect();
    Ok(HttpResponse::Ok().json(lines))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageQuery {
    org_id: Option<String>,
    period_key: Option<String>,
}

pub async fn usage_read(
    state: web::Data<AppState>,
    auth: Auth,
    Query(query): Query<UsageQuery>,
) -> ApiResult<HttpResponse> {
    auth.require_admin()?;
    let mut f = Fields::new();
    let org = f.required("orgId", query.org_id.as_deref(), OrgId::parse);
    let period = f.required("periodKey", query.period_key.as_deref(), PeriodKey::parse);
    let (Some(org), Some(period)) = (org, period) else {
        return Err(f.error());
    };
    let stored = state.engine.stored(&org, period).await?;
    let metrics: serde_json::Map<String, serde_json::Value> = stored
        .counters
        .into_iter()
        .map(|(m, used)| (m.to_string(), json!({ "used": used })))
        .collect();
    // The org's period as stored (what the rollover sweep wrote), read without
    // touching its actor: reads elsewhere roll an org on the spot.
    Ok(HttpResponse::Ok().json(json!({
        "orgId": org.as_str(),
        "periodKey": period.to_string(),
        "storedPeriodKey": stored.state.map(|s| s.period.to_string()),
        "metrics": metrics,
    })))
}
