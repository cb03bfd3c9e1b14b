//! The actix-web front: shared state, routes (one module per story area), and the
//! fallbacks that keep every error inside the envelope.

pub mod context;
pub mod denial;
pub mod error;
pub mod extract;
pub mod fields;
pub mod handlers;
pub mod ids;
pub mod json;
pub mod listener;
pub mod route_metrics;

use crate::auth::Authenticator;
use crate::billing::{BillingService, Provisioning, Webhooks};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::quota::QuotaEngine;
use actix_web::{web, HttpRequest, HttpResponse};
use error::{ApiError, Code};
use handlers::*;
use std::sync::Arc;

pub struct AppState {
    pub engine: Arc<QuotaEngine>,
    pub billing: Arc<BillingService>,
    pub webhooks: Arc<Webhooks>,
    pub provisioning: Arc<Provisioning>,
    pub auth: Arc<Authenticator>,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub smoke: handlers::diag::SmokeCache,
}

impl AppState {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.engine.clock().now()
    }
}

/// Every route: pattern, method, handler. The metrics' `route` label takes its values
/// from this table (so the series exist from the start), and nothing else is routed.
macro_rules! route_table {
    ($($path:literal $method:ident => $handler:path),+ $(,)?) => {
        /// Every route pattern with the method it answers.
        pub const ROUTES: &[(&str, &str)] = &[$(($path, stringify!($method))),+];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(
                cfg.service(
                    web::resource($path)
                        .route(on(stringify!($method)).to($handler))
                        .default_service(web::to(method_not_allowed)),
                );
            )+
            cfg.default_service(web::to(not_found));
        }
    };
}

/// The route guard of a table method: `ANY` (forward auth answers whatever method the
/// gateway's subrequest uses), or one method.
fn on(method: &str) -> actix_web::Route {
    match method {
        "ANY" => web::route(),
        "GET" => web::get(),
        _ => web::post(),
    }
}

route_table! {
    // The hot routes first: actix-web tries resources in this order.
    "/api/quota/check" POST => quota::check,
    "/api/quota/consume" POST => quota::consume,
    "/api/quota/authorize" ANY => authorize::authorize,
    "/api/usage/record" POST => usage::record,
    "/api/usage/record.batch" POST => usage_batch::record_batch,
    "/api/orgs.create" POST => orgs::create,
    "/api/orgs/api-keys.create" POST => orgs::create_key,
    "/api/orgs/api-keys.revoke" POST => orgs::revoke_key,
    "/api/orgs/api-keys.list" GET => orgs::list_keys,
    "/api/orgs/api-keys.revoke-all" POST => orgs::revoke_all_keys,
    "/api/stripe/customer.ensure" POST => billing::ensure_customer,
    "/api/stripe/subscription.create" POST => billing::create_subscription,
    "/api/payments/setup-intent.create" POST => payments::setup_intent,
    "/api/payments/default-method.set" POST => payments::default_method,
    "/api/payments/portal.create" POST => payments::portal,
    "/api/plans/preview" POST => plans::preview,
    "/api/plans/upgrade.now" POST => plans::upgrade_now,
    "/api/plans/downgrade.schedule" POST => plans::downgrade_schedule,
    "/api/invoices.list" GET => invoices::list,
    "/api/webhooks/stripe.receive" POST => stripe_events::receive,
    "/api/jobs/stripe.process" POST => stripe_events::process,
    "/api/admin/webhooks.replay" POST => stripe_events::replay,
    "/api/admin/webhooks.list" GET => stripe_events::list,
    "/api/stigg/provision" POST => stigg::provision,
    "/api/stigg/provision.status" GET => stigg::status,
    "/api/usage/seed" POST => usage::seed,
    "/api/quota/deny-envelope.example" POST => quota::deny_example,
    "/api/me/entitlements.read" GET => me::entitlements,
    "/api/admin/quotas.reset" POST => admin::quotas_reset,
    "/api/admin/debug-log" GET => admin::debug_log,
    "/api/admin/usage.read" GET => admin::usage_read,
    "/api/diag/smoke" GET => diag::smoke,
    "/api/diag/ping" GET => diag::ping,
    "/metrics" GET => diag::metrics,
}

async fn not_found(req: HttpRequest) -> error::ApiResult<HttpResponse> {
    Err(ApiError::not_found(format!(
        "no route {} {}",
        req.method(),
        req.path()
    )))
}

async fn method_not_allowed(req: HttpRequest) -> error::ApiResult<HttpResponse> {
    Err(ApiError::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}
