//! The current request's tracing ids, held in a task-local for the duration of the
//! request so that an error built anywhere beneath the middleware (extractors, handlers,
//! the 404 fallback) carries the correlation id without threading it through every
//! signature. The middleware in `context.rs` sets them; error answers and logs read them.

use std::future::Future;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: String,
    pub correlation_id: String,
}

tokio::task_local! {
    static IDS: Arc<Ids>;
}

/// The current request's correlation id (empty outside a request).
pub fn correlation_id() -> String {
    IDS.try_with(|ids| ids.correlation_id.clone())
        .unwrap_or_default()
}

/// Runs `f` with `ids` as the current request's.
pub(super) async fn scope<F: Future>(ids: Arc<Ids>, f: F) -> F::Output {
    IDS.scope(ids, f).await
}

/// Runs `f` (synchronous) with `ids` as the current request's.
pub(super) fn sync_scope<R>(ids: Arc<Ids>, f: impl FnOnce() -> R) -> R {
    IDS.sync_scope(ids, f)
}
