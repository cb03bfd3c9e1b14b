//! Per-request context: the tracing ids (`x-request-id`, `x-correlation-id`, read or
//! generated, echoed on every response), the org a request concerned, and the middleware
//! that records each request in the metrics and the DebugLog. The ids themselves are held
//! by `ids.rs` for the request's duration.

pub use super::ids::correlation_id;
use super::ids::{self, Ids};
use crate::debug_log::DebugLogSink;
use crate::store::DebugEntry;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use std::time::Instant;

// Names as constants, not strings: a header looked up or inserted by `&str` is parsed
// into a name each time, twice per id per request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const TENANT_ID: &str = "x-tenant-id";

/// Notes the org a request concerned, for its DebugLog entry.
pub use super::ids::tag_org;

/// Accepts a caller's id only if it is short and printable; otherwise a fresh one is
/// used, so a hostile header can never reach logs or responses.
fn header_id<'r>(req: &'r ServiceRequest, name: &HeaderName) -> Option<&'r HeaderValue> {
    let v = req.headers().get(name)?;
    let b = v.as_bytes();
    let ok = !b.is_empty() && b.len() <= 128 && b.iter().all(|b| b.is_ascii_graphic());
    ok.then_some(v)
}

/// Hot-path successes (checks, records) are sampled into the DebugLog: at gateway
/// rates, logging each would cost more than the decision itself.
fn is_hot(route: &str, status: u16) -> bool {
    match route {
        "/api/quota/check" | "/api/quota/consume" => status == 200 || status == 429,
        "/api/quota/authorize" => matches!(status, 200 | 403 | 429),
        "/api/usage/record" | "/api/usage/record.batch" => status == 200,
        _ => false,
    }
}

/// The metric (and DebugLog) label of a request method: one of a fixed set, so a client
/// sending made-up methods cannot mint series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub struct Observe {
    pub routes: super::route_metrics::RouteMetrics,
    pub debug_log: DebugLogSink,
    /// Set when SIGTERM/SIGINT arrives: requests that start afterwards (on connections
    /// kept alive while in-flight ones finish) get 503 and `Connection: close`, so
    /// clients retry on another instance instead of racing the shutdown.
    pub shutting_down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let ids = Ids::new(
        header_id(&req, &REQUEST_ID),
        header_id(&req, &CORRELATION_ID),
    );
    let observe = req.app_data::<web::Data<Observe>>().cloned();
    let stopping = observe
        .as_ref()
        .is_some_and(|o| o.shutting_down.load(std::sync::atomic::Ordering::SeqCst));
    let (mut res, ids, org) = if stopping {
        let refused = ids::sync_scope(ids.clone(), || {
            super::error::ApiError::new(
                super::error::Code::Unavailable,
                "the service is shutting down; retry the request on another instance",
            )
            .error_response()
        });
        let mut res = req.into_response(refused);
        res.response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        (res.map_into_right_body(), ids, None)
    } else {
        let (res, ids, org) = ids::scope(ids, next.call(req)).await;
        (res?.map_into_left_body(), ids, org)
    };
    let headers = res.headers_mut();
    headers.insert(REQUEST_ID, ids.request_id.clone());
    headers.insert(CORRELATION_ID, ids.correlation_id.clone());
    if let Some(observe) = observe {
        let path = res.request().path();
        let method = method_label(res.request().method());
        let status = res.status().as_u16();
        let elapsed = started.elapsed();
        let route = observe
            .routes
            .observe(path, method, status, elapsed.as_secs_f64());
        if observe.debug_log.should_log(is_hot(route, status)) {
            let route = route.to_owned();
            let org_id = org.map(|o| o.to_string());
            observe.debug_log.push(DebugEntry {
                at_ms: chrono::Utc::now().timestamp_millis(),
                method: method.to_owned(),
                route,
                status,
                latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                correlation_id: ids::text(&ids.correlation_id),
                request_id: ids::text(&ids.request_id),
                org_id,
            });
        }
    }
    Ok(res)
}
