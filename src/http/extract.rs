//! Extractors: the caller's credential (`Auth`), JSON bodies (`Json<T>`) and query
//! strings (`Query<T>`) with the service's own rules — `Content-Type: application/json`
//! (415), a size limit (413), a deadline for the body to arrive (408), exactly one JSON
//! value per body, and every parse error reported in the envelope (400) naming the field
//! or parameter.

use super::error::{ApiError, Code};
use super::json::parse_json;
use super::AppState;
use crate::auth::Credential;
use crate::domain::OrgId;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::task::Poll;

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

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, the token
/// printable). Read as bytes: it is on every request, and the string searches it
/// replaced cost more than the rest of the credential check bar the hash.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = (value.get(..6)?, value.get(6..)?);
    let token = token.strip_prefix(b" ")?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !token.iter().all(|&b| is_text(b)) {
        return None;
    }
    // Printable ASCII only, so always UTF-8.
    std::str::from_utf8(token.trim_ascii()).ok()
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b)
}

/// The app was built without its `AppState`: a wiring bug, never the caller's fault.
#[derive(Debug, thiserror::Error)]
#[error("application state missing from the request")]
struct StateMissing;

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => bearer(req)
                .and_then(|t| state.auth.authenticate(t))
                .map(Auth)
                .ok_or_else(ApiError::unauthorized),
            None => Err(ApiError::internal(&StateMissing)),
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

/// How long a request body may take to arrive (app data).
#[derive(Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

pub fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let mime = value.split(|&b| b == b';').next().unwrap_or_default();
    value.iter().all(|&b| is_text(b)) && mime.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!("request body is larger than {limit} bytes"),
    )
}

/// Reads the whole body as it arrives, refusing it as soon as it passes `limit` (or
/// declares more), and failing with 408 if it has not arrived by the deadline. Nothing is
/// reserved up front from `Content-Length`: a client that announces a large body and
/// sends nothing costs nothing but its connection, and only until the deadline.
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
    let deadline = req
        .app_data::<BodyDeadline>()
        .map_or(std::time::Duration::from_secs(5), |d| d.0);
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::field("body", format!("could not be read: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    // A small body has usually arrived with the head, but the handler is first polled
    // before the connection hands the body over. So yield once (the wake coalesces with
    // the payload's own) and only arm the deadline if the body is still not here:
    // registering and clearing a timer cost more than reading such a body.
    let mut read = std::pin::pin!(read);
    let mut yielded = false;
    let early = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(Some(result)),
        Poll::Pending if !yielded => {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    if let Some(result) = early {
        return result;
    }
    match actix_rt::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            Code::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        )),
    }
}

/// A query string parsed into `T`; a parameter given twice, or a value `T` refuses, is a
/// 400 in the envelope naming the parameter.
pub struct Query<T>(pub T);

/// The longest parameter name echoed back in an error (the rest is cut).
const MAX_ECHOED_NAME: usize = 64;

pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::field("query", format!("is not a valid query string: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            let shown: String = name.chars().take(MAX_ECHOED_NAME).collect();
            return Err(ApiError::field(&shown, "must be given at most once"));
        }
    }
    serde_urlencoded::from_str(raw).map_err(|e| ApiError::field("query", e.to_string()))
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(Query))
    }
}

/// A JSON body's bytes, checked as `Json<T>` checks them (type, size, deadline) but not
/// yet parsed: for handlers that parse into types borrowing from the bytes
/// (`parse_json`), which spares a copy of every string field.
pub struct JsonBytes(pub web::BytesMut);

impl FromRequest for JsonBytes {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let limit = req.app_data::<BodyLimit>().map_or(64 * 1024, |l| l.0);
            JsonBytes::read(&req, &mut payload, limit).await
        })
    }
}

impl JsonBytes {
    /// Reads a JSON body of at most `limit` bytes, with `JsonBytes`'s checks (for a
    /// route whose limit is its own, not the app's).
    pub async fn read(
        req: &HttpRequest,
        payload: &mut Payload,
        limit: usize,
    ) -> Result<Self, ApiError> {
        if !is_json(req) {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        read_body(req, payload, limit).await.map(JsonBytes)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = JsonBytes::from_request(req, payload);
        Box::pin(async move { parse_json(&bytes.await?.0).map(Json) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with(name: header::HeaderName, value: &[u8]) -> HttpRequest {
        let value = header::HeaderValue::from_bytes(value).unwrap();
        TestRequest::default()
            .insert_header((name, value))
            .to_http_request()
    }

    #[test]
    fn bearer_takes_the_token_of_the_bearer_scheme_only() {
        let token = |v: &[u8]| bearer(&with(header::AUTHORIZATION, v)).map(str::to_owned);
        assert_eq!(token(b"Bearer abc"), Some("abc".into()));
        assert_eq!(token(b"bEaReR  abc\t"), Some("abc".into()));
        assert_eq!(token(b"Bearer "), Some(String::new()));
        for refused in [
            &b"Bearer"[..],
            b"Bearerabc",
            b"Bearer\tabc",
            b"Basic abc",
            b"Bear abc",
            b"Bearer ab\xffc",
        ] {
            assert_eq!(
                token(refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
        assert_eq!(bearer(&TestRequest::default().to_http_request()), None);
    }

    #[test]
    fn json_is_the_media_type_whatever_its_parameters() {
        let json = |v: &[u8]| is_json(&with(header::CONTENT_TYPE, v));
        assert!(json(b"application/json"));
        assert!(json(b" Application/JSON ; charset=utf-8"));
        assert!(!json(b"application/json-seq"));
        assert!(!json(b"text/plain; application/json"));
        assert!(!json(b"application/json; charset=\xff"));
        assert!(!is_json(&TestRequest::default().to_http_request()));
    }
}
