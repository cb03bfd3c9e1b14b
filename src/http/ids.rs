//! The current request's tracing ids, held in a task-local for the duration of the
//! request so that an error built anywhere beneath the middleware (extractors, handlers,
//! the 404 fallback) carries the correlation id without threading it through every
//! signature. The middleware in `context.rs` sets them; error answers and logs read them.
//!
//! They are kept as header values: a caller's id is the request header's own bytes
//! (shared, not copied), a generated one is encoded once, and the correlation id that
//! defaults to the request id shares its bytes — echoing them costs no allocation.

use crate::domain::OrgId;
use actix_web::http::header::HeaderValue;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

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

/// What a request's task-local holds: its ids, and the org the handler found it
/// concerned (for the DebugLog). A slot here instead of the request's extensions,
/// whose insert (a map, a box) on every decision cost more than this, for a tag that
/// one hot request in a hundred is logged with.
struct Scope {
    ids: Ids,
    org: RefCell<Option<OrgId>>,
}

tokio::task_local! {
    // Behind an `Rc`: the task-local is swapped in and out on every poll of the
    // request's future, and a pointer moves cheaper than the ids themselves.
    static SCOPE: Rc<Scope>;
}

/// The current request's correlation id (empty outside a request).
pub fn correlation_id() -> String {
    SCOPE
        .try_with(|s| text(&s.ids.correlation_id))
        .unwrap_or_default()
}

/// Notes the org the current request concerns (nothing outside a request).
pub fn tag_org(org: &OrgId) {
    // Outside a request (a handler called directly by a test) there is nothing to tag.
    let _ = SCOPE.try_with(|s| *s.org.borrow_mut() = Some(org.clone()));
}

/// Runs `f` with `ids` as the current request's; gives back the ids and the org `f`
/// tagged with its output.
pub(super) async fn scope<F: Future>(ids: Ids, f: F) -> (F::Output, Ids, Option<OrgId>) {
    let org = RefCell::new(None);
    let scope = Rc::new(Scope { ids, org });
    // The scoped future (and its clone of the `Rc`) is dropped when it finishes.
    let out = SCOPE.scope(Rc::clone(&scope), f).await;
    match Rc::try_unwrap(scope) {
        Ok(s) => (out, s.ids, s.org.into_inner()),
        Err(shared) => (out, shared.ids.clone(), shared.org.borrow_mut().take()),
    }
}

/// Runs `f` (synchronous) with `ids` as the current request's.
pub(super) fn sync_scope<R>(ids: Ids, f: impl FnOnce() -> R) -> R {
    let org = RefCell::new(None);
    SCOPE.sync_scope(Rc::new(Scope { ids, org }), f)
}
