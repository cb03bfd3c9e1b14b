//! Story 1.4 at the HTTP edge: provisioning an org in Stigg (through the durable outbox)
//! and reading the state of its provisioning.

use crate::billing::stigg::{ProvisionError, ProvisionRequest};
use crate::domain::OrgId;
use crate::http::context::{self, tag_org};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Auth, Json, Query};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use crate::store::jobs::JobState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionBody {
    org_id: Option<String>,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    plan_code: Option<String>,
}

pub async fn provision(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ProvisionBody>,
) -> ApiResult<HttpResponse> {
    if !state.provisioning.is_configured() {
        return Err(ProvisionError::NotConfigured.into());
    }
    let mut f = Fields::new();
    let org = f.required("orgId", body.org_id.as_deref(), OrgId::parse);
    let customer = f.required(
        "stripeCustomerId",
        body.stripe_customer_id,
        fields::stripe_id,
    );
    let subscription = f.required(
        "stripeSubscriptionId",
        body.stripe_subscription_id,
        fields::stripe_id,
    );
    let plan = f.required("planCode", body.plan_code, fields::plan_code);
    let (Some(org), Some(customer), Some(subscription), Some(plan)) =
        (org, customer, subscription, plan)
    else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    let id = state
        .provisioning
        .provision(ProvisionRequest {
            org,
            stripe_customer_id: customer,
            stripe_subscription_id: subscription,
            plan_code: plan,
            correlation_id: context::correlation_id(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "provisioned": true, "stiggCustomerId": id })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusQuery {
    org_id: Option<String>,
}

pub async fn status(
    state: web::Data<AppState>,
    auth: Auth,
    Query(query): Query<StatusQuery>,
) -> ApiResult<HttpResponse> {
    let mut f = Fields::new();
    let Some(org) = f.required("orgId", query.org_id.as_deref(), OrgId::parse) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    let job = state
        .provisioning
        .status(&org)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no Stigg provisioning for org {org}")))?;
    let state = match job.state {
        JobState::Queued => "pending",
        JobState::Done | JobState::Ignored => "provisioned",
        JobState::Dead => "failed",
    };
    Ok(HttpResponse::Ok().json(json!({
        "state": state,
        "attempts": job.attempts,
        "lastError": job.last_error,
        "planCode": job.payload.plan_code,
        "scheduleStrategy": job.payload.strategy.as_graphql(),
    })))
}
