//! Stories 2.1, 2.2 and 6.2: collecting a card (SetupIntent), making it the default
//! payment method, and the Stripe customer portal.

use crate::domain::OrgId;
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
pub struct OrgBody {
    org_id: Option<String>,
}

/// Checks a body that names only the org: Stripe configured, `orgId` valid and the
/// caller's.
fn accept_org(state: &AppState, auth: &Auth, body: OrgBody) -> ApiResult<OrgId> {
    super::require_stripe(state)?;
    let mut f = Fields::new();
    let Some(org) = fields::org_field(&mut f, body.org_id.as_deref()) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    Ok(org)
}

pub async fn setup_intent(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<OrgBody>,
) -> ApiResult<HttpResponse> {
    let org = accept_org(&state, &auth, body)?;
    let secret = state.billing.setup_intent(&org).await?;
    Ok(HttpResponse::Ok().json(json!({ "clientSecret": secret })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultMethodBody {
    org_id: Option<String>,
    payment_method_id: Option<String>,
}

pub async fn default_method(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<DefaultMethodBody>,
) -> ApiResult<HttpResponse> {
    super::require_stripe(&state)?;
    let mut f = Fields::new();
    let org = fields::org_field(&mut f, body.org_id.as_deref());
    let pm = f.required("paymentMethodId", body.payment_method_id, fields::stripe_id);
    let (Some(org), Some(pm)) = (org, pm) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    state.billing.set_default_method(&org, &pm).await?;
    Ok(HttpResponse::Ok().json(json!({ "ok": true })))
}

pub async fn portal(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<OrgBody>,
) -> ApiResult<HttpResponse> {
    let org = accept_org(&state, &auth, body)?;
    let url = state.billing.portal(&org).await?;
    Ok(HttpResponse::Ok().json(json!({ "url": url })))
}
