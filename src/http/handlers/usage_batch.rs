//! Story 4.7: a batch of usage records in one call. Each event is answered exactly as
//! `usage/record` would answer it alone (status and body), events fail independently,
//! and the 200 comes once every accepted event is durable. The events of live orgs go to
//! the store in one submission, the others through their orgs' actors, each org's in
//! input order (`quota::direct`), so the batch shares the store's group commits instead
//! of paying one each.

use crate::domain::OrgId;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Auth, JsonBytes};
use crate::http::fields::{record_request, RecordBody};
use crate::http::json::{parse_json, parse_json_str};
use crate::http::AppState;
use crate::quota::{EngineError, RecordReply, RecordRequest};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Most events per batch.
pub const MAX_EVENTS: usize = 1_000;
/// The batch body limit (a thousand events of the largest valid size fit).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The events borrow the body: each is parsed once more on its own (to answer it alone),
/// and copying every one out first cost an allocation and a copy per event.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

/// Appends one event's result, `{"status":…,"body":…}`, to the answer being written. The
/// answer is assembled as bytes: every body is JSON this service wrote (a stored answer
/// or an error envelope), and turning each back into a JSON value to serialise it again
/// cost more than deciding the event.
fn push_result(out: &mut Vec<u8>, result: Result<RecordReply, ApiError>) {
    use std::io::Write;
    match result {
        Ok(reply) => {
            out.extend_from_slice(b"{\"status\":200,\"body\":");
            out.extend_from_slice(&reply.body);
        }
        Err(e) => {
            // Writing into a Vec cannot fail.
            let _ = write!(
                out,
                "{{\"status\":{},\"body\":{}}}",
                e.status_code().as_u16(),
                e.body()
            );
            return;
        }
    }
    out.push(b'}');
}

pub async fn record_batch(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let mut payload = payload.into_inner();
    let JsonBytes(raw) = JsonBytes::read(&req, &mut payload, BODY_LIMIT).await?;
    let body: BatchBody<'_> = parse_json(&raw)?;
    let events = body
        .events
        .ok_or_else(|| ApiError::field("events", "is required"))?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(ApiError::field(
            "events",
            format!("must hold 1 to {MAX_EVENTS} events, not {}", events.len()),
        ));
    }
    let now = state.now();
    let mut results: Vec<Option<Result<RecordReply, ApiError>>> = Vec::new();
    // The accepted events, in input order, with their positions.
    let mut positions: Vec<usize> = Vec::new();
    let mut accepted: Vec<(OrgId, RecordRequest)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let checked = parse_json_str::<RecordBody>(event.get())
            .and_then(|body| record_request(state.engine.catalogue(), body, now))
            .and_then(|(org, usage)| auth.require_org(&org).map(|()| (org, usage)));
        match checked {
            Err(e) => results.push(Some(Err(e))),
            Ok(event) => {
                results.push(None);
                positions.push(i);
                accepted.push(event);
            }
        }
    }
    let answers = state.engine.record_events(accepted, now).await;
    for (i, answer) in positions.into_iter().zip(answers) {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(answer.map_err(from_engine));
        }
    }
    let mut out = Vec::with_capacity(64 + results.len() * 160);
    out.extend_from_slice(b"{\"results\":[");
    for (i, r) in results.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_result(
            &mut out,
            r.unwrap_or_else(|| {
                Err(from_engine(EngineError::Internal(
                    "event not answered".into(),
                )))
            }),
        );
    }
    out.extend_from_slice(b"]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

fn from_engine(e: EngineError) -> ApiError {
    e.into()
}
