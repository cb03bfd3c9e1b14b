//! Stories 4.1 and 4.3: the real-time quota check (from memory, never writing) and the
//! example of the standard denial envelope.

use crate::domain::{Metric, OrgId, PeriodKey};
use crate::http::context::tag_org;
use crate::http::denial::Limits;
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, Json};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckBody {
    org_id: Option<String>,
    metric: Option<String>,
    cost: Option<u64>,
}

pub async fn check(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    Json(body): Json<CheckBody>,
) -> ApiResult<HttpResponse> {
    let mut f = Fields::new();
    let org = f.required("orgId", body.org_id.as_deref(), OrgId::parse);
    let metric = f.required("metric", body.metric.as_deref(), |m| {
        fields::known_metric(state.engine.catalogue(), m)
    });
    let cost = match body.cost {
        None => Some(1),
        Some(c) => f.check("cost", fields::amount(c)),
    };
    let (Some(org), Some(metric), Some(cost)) = (org, metric, cost) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&req, &org);
    let now = state.now();
    let outcome = state.engine.check(&org, &metric, cost, now).await?;
    let limits = Limits {
        metric: &metric,
        period: outcome.period,
        included: outcome.included,
        remaining: outcome.decision.remaining,
        now,
    };
    if !outcome.decision.allow {
        return Err(limits.denial());
    }
    let mut res = HttpResponse::Ok();
    limits.apply(&mut res);
    Ok(res.json(serde_json::json!({
        "allow": true,
        "remaining": outcome.decision.remaining,
    })))
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
