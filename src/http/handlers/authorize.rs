//! Story 4.6: forward auth for gateways that ask an HTTP endpoint before forwarding a
//! call (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`). The org comes
//! from the original request's credential; the call is consumed as on `quota/consume`.
//!
//! Everything here may have been sent by the end client (nginx passes every client
//! header to the subrequest), so the gateway configurations pin what matters; this
//! handler only decides which source wins when both are present: a header over the
//! query, the gateway token over the client's key.

use crate::auth::Credential;
use crate::domain::{Metric, OrgId, ParseError};
use crate::http::context::{tag_org, TENANT_ID};
use crate::http::denial::{degraded_header, flag_degraded, store_outage, Limits};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::bearer;
use crate::http::fields;
use crate::http::AppState;
use crate::quota::EngineError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

const METRIC_HEADER: &str = "x-edgequota-metric";
const COST_HEADER: &str = "x-edgequota-cost";
const TOKEN_HEADER: &str = "x-edgequota-token";
const API_KEY_HEADER: &str = "x-api-key";
pub const ORG_HEADER: &str = "x-edgequota-org";

/// The two query parameters this endpoint reads; any other is the client's and ignored.
#[derive(Default)]
struct Params {
    metric: Option<String>,
    deny_status: Option<String>,
}

fn params(raw: &str) -> ApiResult<Params> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::field("query", format!("is not a valid query string: {e}")))?;
    let mut p = Params::default();
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "metric" => &mut p.metric,
            "denyStatus" => &mut p.deny_status,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(ApiError::field(&name, "must be given at most once"));
        }
    }
    Ok(p)
}

fn header<'r>(req: &'r HttpRequest, name: &str) -> Result<Option<&'r str>, ParseError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ParseError::new("must be printable text")),
    }
}

/// A header the credential comes from: unreadable is a 400 naming it.
fn credential_header<'r>(req: &'r HttpRequest, name: &str) -> ApiResult<Option<&'r str>> {
    header(req, name).map_err(|e| ApiError::field(name, e.0))
}

/// The org the original request acts for. A gateway token (`X-Edgequota-Token`, admin
/// or service) names it in `x-tenant-id`; otherwise the request's own org key, as
/// `Authorization: Bearer` or `X-Api-Key`. A token where an org key belongs, or a key
/// that is unknown or revoked, is a 401.
fn org_of(state: &AppState, req: &HttpRequest) -> ApiResult<OrgId> {
    if let Some(token) = credential_header(req, TOKEN_HEADER)? {
        return match state.auth.authenticate(token) {
            Some(Credential::Admin | Credential::Service) => {
                let raw = credential_header(req, TENANT_ID)?
                    .ok_or_else(|| ApiError::field(TENANT_ID, "is required with a token"))?;
                OrgId::parse(raw).map_err(|e| ApiError::field(TENANT_ID, e.to_string()))
            }
            _ => Err(ApiError::unauthorized()),
        };
    }
    let key = match bearer(req) {
        Some(key) => Some(key),
        None => credential_header(req, API_KEY_HEADER)?,
    };
    match key.and_then(|k| state.auth.authenticate(k)) {
        Some(Credential::Org(org)) => Ok(org),
        _ => Err(ApiError::unauthorized()),
    }
}

fn deny_status(raw: Option<&str>) -> Result<StatusCode, ParseError> {
    match raw {
        None | Some("429") => Ok(StatusCode::TOO_MANY_REQUESTS),
        Some("403") => Ok(StatusCode::FORBIDDEN),
        Some(_) => Err(ParseError::new(
            "must be 403 or 429 (a denial is never a 2xx)",
        )),
    }
}

fn cost(raw: Option<&str>) -> Result<u64, ParseError> {
    match raw {
        None => Ok(1),
        Some(raw) => {
            let n = raw
                .parse::<u64>()
                .map_err(|_| ParseError::new("must be a positive whole number"))?;
            fields::amount(n)
        }
    }
}

pub async fn authorize(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let org = org_of(&state, &req)?;
    let p = params(req.query_string())?;
    let mut f = fields::Fields::new();
    let deny = f.check("denyStatus", deny_status(p.deny_status.as_deref()));
    let cost = f.check(COST_HEADER, header(&req, COST_HEADER).and_then(cost));
    let metric = match f.check(METRIC_HEADER, header(&req, METRIC_HEADER)) {
        None => None,
        Some(Some(raw)) => f.check(METRIC_HEADER, known(&state, raw)),
        Some(None) => match p.metric.as_deref() {
            Some(raw) => f.check("metric", known(&state, raw)),
            None => Some(Metric::api_call()),
        },
    };
    let (Some(deny), Some(cost), Some(metric)) = (deny, cost, metric) else {
        return Err(f.error());
    };
    tag_org(&org);
    let degraded = store_outage(&state)?;
    let now = state.now();
    let o = match state.engine.consume(&org, &metric, cost, now).await {
        Ok(o) => o,
        // A credential for an org that does not exist authenticates nobody; 404 would
        // reach the client as a gateway error.
        Err(EngineError::OrgNotFound) => return Err(ApiError::unauthorized()),
        Err(e) => return Err(e.into()),
    };
    let limits = Limits {
        metric: &metric,
        period: o.period,
        included: o.included,
        remaining: o.decision.remaining,
        now,
    };
    if !o.decision.allow {
        let mut denial = limits.denial();
        if degraded {
            denial.headers.push(degraded_header());
        }
        let mut res = denial.error_response();
        *res.status_mut() = deny;
        return Ok(res);
    }
    let mut res = HttpResponse::Ok();
    limits.apply(&mut res);
    res.insert_header((ORG_HEADER, org.as_str()));
    let body = serde_json::json!({
        "allow": true,
        "remaining": o.decision.remaining,
        "orgId": org.as_str(),
    });
    flag_degraded(Ok(res.json(body)), degraded)
}

fn known(state: &AppState, raw: &str) -> Result<Metric, ParseError> {
    fields::known_metric(state.engine.catalogue(), raw)
}
