//! The actix-web front: shared state, routes (one module per story area), and the
//! fallbacks that keep every error inside the envelope.

pub mod admin;
pub mod billing;
pub mod context;
pub mod denial;
pub mod diag;
pub mod error;
pub mod extract;
pub mod fields;
pub mod invoices;
pub mod me;
pub mod orgs;
pub mod payments;
pub mod plans;
pub mod quota;
pub mod stigg;
pub mod usage;
pub mod webhooks;

use crate::auth::Authenticator;
use crate::billing::{BillingService, Provisioning, Webhooks};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::quota::QuotaEngine;
use actix_web::{web, HttpRequest, HttpResponse};
use error::{ApiError, Code};
use std::sync::Arc;

pub struct AppState {
    pub engine: Arc<QuotaEngine>,
    pub billing: Arc<BillingService>,
    pub webhooks: Arc<Webhooks>,
    pub provisioning: Arc<Provisioning>,
    pub auth: Arc<Authenticator>,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub smoke: diag::SmokeCache,
}

impl AppState {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.engine.clock().now()
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let resource = |path: &'static str, route: actix_web::Route| {
        web::resource(path)
            .route(route)
            .default_service(web::to(method_not_allowed))
    };
    cfg.service(resource("/api/orgs.create", web::post().to(orgs::create)))
        .service(resource(
            "/api/orgs/api-keys.create",
            web::post().to(orgs::create_key),
        ))
        .service(resource(
            "/api/orgs/api-keys.revoke",
            web::post().to(orgs::revoke_key),
        ))
        .service(resource(
            "/api/orgs/api-keys.list",
            web::get().to(orgs::list_keys),
        ))
        .service(resource(
            "/api/orgs/api-keys.revoke-all",
            web::post().to(orgs::revoke_all_keys),
        ))
        .service(resource(
            "/api/stripe/customer.ensure",
            web::post().to(billing::ensure_customer),
        ))
        .service(resource(
            "/api/stripe/subscription.create",
            web::post().to(billing::create_subscription),
        ))
        .service(resource(
            "/api/payments/setup-intent.create",
            web::post().to(payments::setup_intent),
        ))
        .service(resource(
            "/api/payments/default-method.set",
            web::post().to(payments::default_method),
        ))
        .service(resource(
            "/api/payments/portal.create",
            web::post().to(payments::portal),
        ))
        .service(resource(
            "/api/plans/preview",
            web::post().to(plans::preview),
        ))
        .service(resource(
            "/api/plans/upgrade.now",
            web::post().to(plans::upgrade_now),
        ))
        .service(resource(
            "/api/plans/downgrade.schedule",
            web::post().to(plans::downgrade_schedule),
        ))
        .service(resource(
            "/api/invoices.list",
            web::get().to(invoices::list),
        ))
        .service(resource(
            "/api/webhooks/stripe.receive",
            web::post().to(webhooks::receive),
        ))
        .service(resource(
            "/api/jobs/stripe.process",
            web::post().to(webhooks::process),
        ))
        .service(resource(
            "/api/admin/webhooks.replay",
            web::post().to(webhooks::replay),
        ))
        .service(resource(
            "/api/admin/webhooks.list",
            web::get().to(webhooks::list),
        ))
        .service(resource(
            "/api/stigg/provision",
            web::post().to(stigg::provision),
        ))
        .service(resource(
            "/api/stigg/provision.status",
            web::get().to(stigg::status),
        ))
        .service(resource("/api/usage/seed", web::post().to(usage::seed)))
        .service(resource("/api/usage/record", web::post().to(usage::record)))
        .service(resource("/api/quota/check", web::post().to(quota::check)))
        .service(resource(
            "/api/quota/deny-envelope.example",
            web::post().to(quota::deny_example),
        ))
        .service(resource(
            "/api/me/entitlements.read",
            web::get().to(me::entitlements),
        ))
        .service(resource(
            "/api/admin/quotas.reset",
            web::post().to(admin::quotas_reset),
        ))
        .service(resource(
            "/api/admin/debug-log",
            web::get().to(admin::debug_log),
        ))
        .service(resource(
            "/api/admin/usage.read",
            web::get().to(admin::usage_read),
        ))
        .service(resource("/api/diag/smoke", web::get().to(diag::smoke)))
        .service(resource("/api/diag/ping", web::get().to(diag::ping)))
        .service(resource("/metrics", web::get().to(diag::metrics)))
        .default_service(web::to(not_found));
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
