//! The request handlers, one module per story area, and the preconditions several of
//! them share. Handlers parse and check the request, call one service, and shape the
//! answer; the logic behind them lives in `quota`, `billing` and `auth`.

pub mod admin;
pub mod authorize;
pub mod billing;
pub mod diag;
pub mod invoices;
pub mod me;
pub mod orgs;
pub mod payments;
pub mod plans;
pub mod quota;
pub mod stigg;
pub mod stripe_events;
pub mod usage;
pub mod usage_batch;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::billing::BillingError;
use crate::domain::OrgId;
use crate::quota::EngineError;

/// 503 before anything else when Stripe is not configured (the quota API keeps working).
pub fn require_stripe(state: &AppState) -> ApiResult<()> {
    if state.billing.is_configured() {
        Ok(())
    } else {
        Err(BillingError::NotConfigured.into())
    }
}

/// Fails with 404 unless the org exists.
pub async fn ensure_org(state: &AppState, org: &OrgId) -> ApiResult<()> {
    match state.engine.org(org).await {
        Ok(_) => Ok(()),
        Err(EngineError::OrgNotFound) => Err(ApiError::not_found("org not found")),
        Err(e) => Err(e.into()),
    }
}
