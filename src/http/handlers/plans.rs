//! Stories 5.1–5.3: previewing a plan change, upgrading now with prorated invoicing, and
//! scheduling a downgrade for the end of the period.

use crate::http::context::tag_org;
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, Json};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeBody {
    org_id: Option<String>,
    new_plan_code: Option<String>,
    proration_date_unix: Option<i64>,
}

/// Checks a plan-change request: Stripe configured, fields valid, the caller's org.
fn accept(
    state: &AppState,
    auth: &Auth,
    body: ChangeBody,
) -> ApiResult<(crate::domain::OrgId, String, Option<i64>)> {
    super::require_stripe(state)?;
    let mut f = Fields::new();
    let org = fields::org_field(&mut f, body.org_id.as_deref());
    let plan = f.required("newPlanCode", body.new_plan_code, fields::plan_code);
    if body.proration_date_unix.is_some_and(|d| d <= 0) {
        f.problem(
            "prorationDateUnix",
            "must be a positive Unix time in seconds",
        );
    }
    let (Some(org), Some(plan)) = (org, plan) else {
        return Err(f.error());
    };
    if !f.is_clean() {
        return Err(f.error());
    }
    auth.require_org(&org)?;
    tag_org(&org);
    Ok((org, plan, body.proration_date_unix))
}

pub async fn preview(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ChangeBody>,
) -> ApiResult<HttpResponse> {
    let (org, plan, _) = accept(&state, &auth, body)?;
    let p = state.billing.preview(&org, &plan).await?;
    let items: Vec<_> = p
        .items
        .iter()
        .map(|l| {
            json!({
                "description": l.description,
                "amount": l.amount,
                "proration": l.proration,
                "periodStart": fields::rfc3339(l.period_start),
                "periodEnd": fields::rfc3339(l.period_end),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "amount": p.amount,
        "currency": p.currency,
        "proration": p.proration,
        "prorationDateUnix": p.proration_date_unix,
        "items": items,
    })))
}

pub async fn upgrade_now(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ChangeBody>,
) -> ApiResult<HttpResponse> {
    let (org, plan, proration_date) = accept(&state, &auth, body)?;
    let plan = state
        .billing
        .upgrade_now(&org, &plan, proration_date)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "planCode": plan.as_str(), "effective": "immediate" })))
}

pub async fn downgrade_schedule(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ChangeBody>,
) -> ApiResult<HttpResponse> {
    let (org, plan, _) = accept(&state, &auth, body)?;
    let pending = state.billing.schedule_downgrade(&org, &plan).await?;
    Ok(HttpResponse::Ok().json(json!({
        "effectiveAt": fields::rfc3339(pending.effective_unix),
        "pendingPlanCode": pending.plan.as_str(),
    })))
}
