//! Stories 1.1 and 1.1b: create an org (idempotent on `Idempotency-Key`), mint, list
//! and revoke org API keys. Only admin and service tokens mint keys or revoke all of an
//! org's keys: a leaked org key must not be able to outlive its own revocation.

use crate::auth::Credential;
use crate::domain::{KeyId, OrgId};
use crate::http::context::tag_org;
use crate::http::error::{ApiError, ApiResult, Code};
use crate::http::extract::{Auth, Json, Query};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use crate::quota::{Created, NewOrg};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrg {
    name: Option<String>,
    owner_user_id: Option<String>,
}

fn idempotency_key(req: &HttpRequest) -> ApiResult<Option<String>> {
    let Some(raw) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn json_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    Json(body): Json<CreateOrg>,
) -> ApiResult<HttpResponse> {
    auth.require_operator()?;
    let key = idempotency_key(&req)?;
    let mut f = Fields::new();
    let name = f.required("name", body.name, fields::text);
    let owner = f.required("ownerUserId", body.owner_user_id, fields::text);
    let (Some(name), Some(owner), true) = (name, owner, f.is_clean()) else {
        return Err(f.error());
    };
    let new = NewOrg {
        name,
        owner_user_id: owner,
        idempotency_key: key,
    };
    match state.engine.create_org(new, state.now()).await? {
        Created::New(org, body) => {
            tag_org(&org);
            Ok(json_response(body))
        }
        Created::Replayed(body) => Ok(json_response(body)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    org_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyBody {
    key_id: KeyId,
    api_key: String,
}

pub async fn create_key(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<CreateKey>,
) -> ApiResult<HttpResponse> {
    auth.require_operator()?;
    let mut f = Fields::new();
    let Some(org) = f.required("orgId", body.org_id.as_deref(), OrgId::parse) else {
        return Err(f.error());
    };
    tag_org(&org);
    super::ensure_org(&state, &org).await?;
    let (key_id, api_key) = state
        .auth
        .mint(&org, state.now().timestamp_millis())
        .await?;
    tracing::info!(org = %org, key_id = %key_id, "org API key created");
    Ok(HttpResponse::Ok().json(KeyBody { key_id, api_key }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeKey {
    key_id: Option<String>,
}

pub async fn revoke_key(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<RevokeKey>,
) -> ApiResult<HttpResponse> {
    let mut f = Fields::new();
    let Some(key) = f.required("keyId", body.key_id.as_deref(), KeyId::parse) else {
        return Err(f.error());
    };
    let owner = state
        .auth
        .key_org(&key)
        .ok_or_else(|| ApiError::not_found("API key not found"))?;
    if let Credential::Org(own) = &auth.0 {
        if own != &owner {
            return Err(ApiError::forbidden("this API key belongs to another org"));
        }
    }
    tag_org(&owner);
    if !state
        .auth
        .revoke(&key, state.now().timestamp_millis())
        .await?
    {
        return Err(ApiError::new(Code::NotFound, "API key not found"));
    }
    tracing::info!(org = %owner, key_id = %key, "org API key revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": true })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListKeys {
    org_id: Option<String>,
}

/// The org's active keys: id, creation time and the last four characters, never the
/// secret.
pub async fn list_keys(
    state: web::Data<AppState>,
    auth: Auth,
    Query(query): Query<ListKeys>,
) -> ApiResult<HttpResponse> {
    let mut f = Fields::new();
    let Some(org) = f.required("orgId", query.org_id.as_deref(), OrgId::parse) else {
        return Err(f.error());
    };
    auth.require_org(&org)?;
    tag_org(&org);
    super::ensure_org(&state, &org).await?;
    let keys: Vec<_> = state
        .auth
        .list(&org)
        .await?
        .into_iter()
        .map(|k| {
            serde_json::json!({
                "keyId": k.key_id,
                "createdAt": chrono::DateTime::from_timestamp_millis(k.created_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "last4": k.last4,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// Revokes every key of the org (admin or service token): the answer to a leak.
pub async fn revoke_all_keys(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<CreateKey>,
) -> ApiResult<HttpResponse> {
    auth.require_operator()?;
    let mut f = Fields::new();
    let Some(org) = f.required("orgId", body.org_id.as_deref(), OrgId::parse) else {
        return Err(f.error());
    };
    tag_org(&org);
    super::ensure_org(&state, &org).await?;
    let revoked = state
        .auth
        .revoke_all(&org, state.now().timestamp_millis())
        .await?;
    tracing::info!(org = %org, revoked, "every org API key revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": revoked })))
}
