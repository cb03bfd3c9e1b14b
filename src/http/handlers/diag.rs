//! Story 9.1 and the scrape endpoint: smoke diagnostics (a real store round trip and an
//! actor round trip), Prometheus metrics, and the constant ping route.
//!
//! Smoke is open by default and its store check writes and flushes, so its result is
//! kept for a second and concurrent callers share one run: polling it cannot turn into a
//! flood of disk syncs.

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::OptionalAuth;
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a smoke result is reused.
const SMOKE_TTL: Duration = Duration::from_secs(1);

/// The last smoke run: when, whether it passed, and its checks.
#[derive(Default)]
pub struct SmokeCache(tokio::sync::Mutex<Option<(Instant, bool, serde_json::Value)>>);

/// Diagnostics are open unless `server.open_diagnostics = false`; then they need an
/// admin or service token.
fn allowed(state: &AppState, auth: &OptionalAuth) -> ApiResult<()> {
    match &auth.0 {
        _ if state.settings.server.open_diagnostics => Ok(()),
        None => Err(ApiError::unauthorized()),
        Some(crate::auth::Credential::Org(_)) => Err(ApiError::forbidden(
            "org API keys cannot call this endpoint",
        )),
        Some(_) => Ok(()),
    }
}

pub async fn smoke(state: web::Data<AppState>, auth: OptionalAuth) -> ApiResult<HttpResponse> {
    allowed(&state, &auth)?;
    let (ok, checks) = {
        let mut last = state.smoke.0.lock().await;
        match last.as_ref() {
            Some((at, ok, checks)) if at.elapsed() < SMOKE_TTL => (*ok, checks.clone()),
            _ => {
                let (ok, checks) = run_smoke(&state).await;
                *last = Some((Instant::now(), ok, checks.clone()));
                (ok, checks)
            }
        }
    };
    if ok {
        return Ok(HttpResponse::Ok().json(json!({ "ok": true, "checks": checks })));
    }
    Ok(HttpResponse::ServiceUnavailable().json(json!({
        "code": "UNAVAILABLE",
        "message": "a smoke check failed",
        "correlationId": crate::http::context::correlation_id(),
        "ok": false,
        "checks": checks,
    })))
}

async fn run_smoke(state: &AppState) -> (bool, serde_json::Value) {
    let started = Instant::now();
    let health = state.engine.backend().health.clone();
    let store_check = health
        .round_trip()
        .await
        .map_err(|e| crate::errors::chain(&e));
    let store_ms = started.elapsed().as_secs_f64() * 1e3;
    let actors_started = Instant::now();
    let actor_check = state.engine.ping().await.map_err(|e| e.to_string());
    let actors_ms = actors_started.elapsed().as_secs_f64() * 1e3;
    let ok = store_check.is_ok() && actor_check.is_ok();
    let checks = json!({
        "store": {
            "ok": store_check.is_ok(),
            "backend": health.backend(),
            "latencyMs": store_ms,
            "error": store_check.err(),
        },
        "actors": {
            "ok": actor_check.is_ok(),
            "latencyMs": actors_ms,
            "arbiters": actor_check.as_ref().ok(),
            "liveOrgActors": state.engine.live_actors(),
            "error": actor_check.as_ref().err(),
        },
    });
    tracing::info!(ok, checks = %checks, "smoke diagnostics");
    (ok, checks)
}

pub async fn metrics(state: web::Data<AppState>, auth: OptionalAuth) -> ApiResult<HttpResponse> {
    allowed(&state, &auth)?;
    // Sampled per scrape (it walks the store's files, so on the blocking pool).
    if let Ok(Some(size)) = state.engine.backend().health.size_on_disk().await {
        let gauge = &state.metrics.store_size_bytes;
        gauge.set(i64::try_from(size).unwrap_or(i64::MAX));
    }
    let degraded = state.engine.context().degraded.is_degraded();
    state.metrics.store_degraded.set(i64::from(degraded));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}

/// A constant answer: liveness for load balancers (follows `open_diagnostics`).
pub async fn ping(state: web::Data<AppState>, auth: OptionalAuth) -> ApiResult<HttpResponse> {
    allowed(&state, &auth)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"ok":true}"#))
}
