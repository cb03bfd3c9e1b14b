//! Stories 2.3, 2.4 and 8.1 at the HTTP edge: the signed Stripe webhook intake, the job
//! that processes one event now, replay, and the admin listing of events by state.

use crate::billing::webhooks::Processed;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{read_body, Auth, Json, Query};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use crate::store::jobs::JobState;
use crate::store::webhook_jobs::WebhookJob;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

pub const SIGNATURE: &str = "stripe-signature";

/// Authenticated by the Stripe signature alone; 202 only once the event is durable. The
/// signature header's shape and timestamp are checked before the body is read.
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let signature = req.headers().get(SIGNATURE).and_then(|v| v.to_str().ok());
    let header = state.webhooks.precheck(signature)?;
    let limit = state.settings.server.webhook_body_limit_bytes;
    let body = read_body(&req, &mut payload.into_inner(), limit).await?;
    let accepted = state.webhooks.receive(&header, body.to_vec()).await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": true, "eventId": accepted.event_id })))
}

fn event_id(raw: String) -> Result<String, crate::domain::ParseError> {
    fields::stripe_id(raw)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessBody {
    event_id: Option<String>,
}

pub async fn process(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ProcessBody>,
) -> ApiResult<HttpResponse> {
    auth.require_admin()?;
    let mut f = Fields::new();
    let Some(id) = f.required("eventId", body.event_id, event_id) else {
        return Err(f.error());
    };
    let processed = state.webhooks.process(&id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "converged": true,
        "ignored": processed == Processed::Ignored,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayBody {
    event_ids: Option<Vec<String>>,
}

pub async fn replay(
    state: web::Data<AppState>,
    auth: Auth,
    Json(body): Json<ReplayBody>,
) -> ApiResult<HttpResponse> {
    auth.require_admin()?;
    let mut f = Fields::new();
    let ids = body.event_ids.unwrap_or_default();
    if !(1..=100).contains(&ids.len()) {
        f.problem("eventIds", "must hold 1 to 100 event ids");
    }
    let mut valid = Vec::with_capacity(ids.len());
    for (i, id) in ids.into_iter().enumerate() {
        if let Some(id) = f.check(&format!("eventIds[{i}]"), event_id(id)) {
            if !valid.contains(&id) {
                valid.push(id);
            }
        }
    }
    if !f.is_clean() {
        return Err(f.error());
    }
    let replayed = state.webhooks.replay(&valid).await?;
    Ok(HttpResponse::Ok().json(json!({
        "enqueued": replayed.enqueued,
        "missing": replayed.missing,
    })))
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// The listing's names of the queue's states.
const STATES: [(&str, JobState); 4] = [
    ("queued", JobState::Queued),
    ("processed", JobState::Done),
    ("dead", JobState::Dead),
    ("ignored", JobState::Ignored),
];

fn state_name(state: JobState) -> &'static str {
    STATES
        .iter()
        .find(|(_, s)| *s == state)
        .map_or("unknown", |(n, _)| n)
}

fn view(e: &WebhookJob) -> serde_json::Value {
    let at = |ms: i64| fields::rfc3339(ms.div_euclid(1000));
    json!({
        "eventId": e.id,
        "type": e.payload.event_type,
        "state": state_name(e.state),
        "attempts": e.attempts,
        "countedAttempts": e.failures,
        "outageSince": e.outage_since_ms.and_then(at),
        "lastError": e.last_error,
        "receivedAt": at(e.created_ms),
        "nextAttemptAt": (e.state == JobState::Queued).then(|| at(e.next_attempt_ms)).flatten(),
        "doneAt": e.done_ms.and_then(at),
    })
}

pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    auth.require_admin()?;
    let wanted = query.state.as_deref().unwrap_or("queued");
    let event_state = STATES
        .iter()
        .find(|(n, _)| *n == wanted)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            ApiError::field("state", "must be one of queued, processed, dead, ignored")
        })?;
    let limit = fields::limit_param(query.limit.as_deref(), 50, 100)?;
    let after = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::field("cursor", "must be a cursor from x-next-cursor"))?,
        ),
        None => None,
    };
    let page = state.webhooks.list(event_state, after, limit).await?;
    let mut res = HttpResponse::Ok();
    if page.len() == limit {
        if let Some(last) = page.last() {
            res.insert_header((fields::NEXT_CURSOR, last.seq.to_string()));
        }
    }
    Ok(res.json(page.iter().map(view).collect::<Vec<_>>()))
}
