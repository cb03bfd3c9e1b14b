//! The current request's tracing ids, held in a task-local for the duration of the
//! request so that an error built anywhere beneath the middleware (extractors, handlers,
//! the 404 fallback) carries the correlation id without threading it through every
//! signature. The middleware in `context.rs` sets them; error answers and logs read them.
//!
//! They are kept as header values: a caller's id is the request header's own bytes
//! (shared, not copied), a generated one is encoded once, and the correlation id that
//! defaults to the request id shares its bytes — echoing them costs no allocation.

use actix_web::http::header::HeaderValue;
use std::future::Future;

#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: HeaderValue,
    pub correlation_id: HeaderValue,
}

impl Ids {
    /// `request_id` and `correlation_id` as the caller sent them (if acceptable);
    /// a fresh ULID for a missing request id, the request id for a missing correlation id.
    pub fn new(request_id: Option<&HeaderValue>, correlation_id: Option<&HeaderValue>) -> Self {
        let request_id = request_id.cloned().unwrap_or_else(fresh_id);
        let correlation_id = correlation_id
            .cloned()
            .unwrap_or_else(|| request_id.clone());
        Self {
            request_id,
            correlation_id,
        }
    }
}

/// A new ULID, encoded on the stack.
fn fresh_id() -> HeaderValue {
    let mut buf = [0u8; ulid::ULID_LEN];
    let id = ulid::Ulid::new();
    // Crockford base32 is always a valid header value.
    HeaderValue::from_str(id.array_to_str(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A header value's text (ids are accepted or generated as printable ASCII).
pub fn text(v: &HeaderValue) -> String {
    v.to_str().unwrap_or_default().to_owned()
}

tokio::task_local! {
    static IDS: Ids;
}

/// The current request's correlation id (empty outside a request).
pub fn correlation_id() -> String {
    IDS.try_with(|ids| text(&ids.correlation_id))
        .unwrap_or_default()
}

/// Runs `f` with `ids` as the current request's.
pub(super) async fn scope<F: Future>(ids: Ids, f: F) -> F::Output {
    IDS.scope(ids, f).await
}

/// Runs `f` (synchronous) with `ids` as the current request's.
pub(super) fn sync_scope<R>(ids: Ids, f: impl FnOnce() -> R) -> R {
    IDS.sync_scope(ids, f)
}
