//! Stories 1.2 and 1.3: the org's Stripe customer and its trial subscription.

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
pub struct EnsureBody {
    org_id: Option<String>,
    email: Option<String>,
}

pub async fn ensure_customer(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<EnsureBody>,
) -> ApiResult<HttpResponse> {
    super::require_stripe(&state)?;
    let mut f = Fields::new();
    let org = fields::org_field(&mut f, body.org_id.as_deref());
    let email = f.required("email", body.email, fields::email);
    let (Some(org), Some(email)) = (org, email) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    let id = state.billing.ensure_customer(&org, &email).await?;
    Ok(HttpResponse::Ok().json(json!({ "stripeCustomerId": id })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeBody {
    org_id: Option<String>,
    price_lookup: Option<String>,
}

pub async fn create_subscription(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<SubscribeBody>,
) -> ApiResult<HttpResponse> {
    super::require_stripe(&state)?;
    let mut f = Fields::new();
    let org = fields::org_field(&mut f, body.org_id.as_deref());
    let plan = f.required("priceLookup", body.price_lookup, fields::plan_code);
    let (Some(org), Some(plan)) = (org, plan) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    let out = state.billing.create_trial(&org, &plan).await?;
    Ok(HttpResponse::Ok().json(json!({
        "subscriptionId": out.subscription_id,
        "status": out.status,
        "trialEndsAt": out.trial_end_unix.and_then(fields::rfc3339),
    })))
}
