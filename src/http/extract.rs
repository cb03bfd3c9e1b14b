//! Extractors: the caller's credential (`Auth`) and JSON bodies (`Json<T>`) with the
//! service's own rules — `Content-Type: application/json` (415), a size limit (413), and
//! parse errors reported per field in the envelope (400).

use super::error::{ApiError, Code, Detail};
use super::AppState;
use crate::auth::Credential;
use crate::domain::OrgId;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Credential);

impl Auth {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.0 {
            Credential::Admin => Ok(()),
            _ => Err(ApiError::forbidden("this endpoint needs an admin token")),
        }
    }

    /// Admin and service tokens act for any org; an org key only for its own.
    pub fn require_org(&self, org: &OrgId) -> Result<(), ApiError> {
        match &self.0 {
            Credential::Org(own) if own != org => {
                Err(ApiError::forbidden("this API key belongs to another org"))
            }
            _ => Ok(()),
        }
    }

    /// Admin or service token (not an org key).
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self.0 {
            Credential::Org(_) => Err(ApiError::forbidden(
                "org API keys cannot call this endpoint",
            )),
            _ => Ok(()),
        }
    }

    /// The org of a `/api/me/*` call: the key's own org, or `x-tenant-id` for tokens.
    pub fn tenant(&self, req: &HttpRequest) -> Result<OrgId, ApiError> {
        match &self.0 {
            Credential::Org(org) => Ok(org.clone()),
            _ => {
                let raw = req
                    .headers()
                    .get(super::context::TENANT_ID)
                    .ok_or_else(|| {
                        ApiError::field(
                            super::context::TENANT_ID,
                            "is required with a service token",
                        )
                    })?;
                let raw = raw.to_str().map_err(|_| {
                    ApiError::field(super::context::TENANT_ID, "must be printable text")
                })?;
                OrgId::parse(raw)
                    .map_err(|e| ApiError::field(super::context::TENANT_ID, e.to_string()))
            }
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => bearer(req)
                .and_then(|t| state.auth.authenticate(t))
                .map(Auth)
                .ok_or_else(ApiError::unauthorized),
            None => Err(ApiError::new(Code::Internal, "application state missing")),
        };
        ready(result)
    }
}

/// Like `Auth`, but absent when the endpoint is open (diagnostics); a present but wrong
/// credential still fails.
pub struct OptionalAuth(pub Option<Credential>);

impl FromRequest for OptionalAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if bearer(req).is_none() {
            return ready(Ok(OptionalAuth(None)));
        }
        ready(
            Auth::from_request(req, payload)
                .into_inner()
                .map(|a| OptionalAuth(Some(a.0))),
        )
    }
}

/// A JSON body of `T`. Field names in error details follow the JSON path.
pub struct Json<T>(pub T);

/// The body limit of JSON endpoints (app data).
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

pub fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!("request body is larger than {limit} bytes"),
    )
}

/// Reads the whole body, refusing it as soon as it passes `limit`.
pub async fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::field("body", format!("could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses JSON, naming the failing field (`value`, `items[2].id`) in the details.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        let problem = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("is not valid JSON: {inner}")
            }
            _ => inner.to_string(),
        };
        ApiError::invalid(vec![Detail::new(field, problem)])
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json(&req) {
                return Err(ApiError::new(
                    Code::UnsupportedMediaType,
                    "send the body as JSON with Content-Type: application/json",
                ));
            }
            let limit = req.app_data::<BodyLimit>().map_or(64 * 1024, |l| l.0);
            let body = read_body(&req, &mut payload, limit).await?;
            parse_json(&body).map(Json)
        })
    }
}
