//! An org's billing lock: the in-process lock (one node's concurrent calls run one
//! after another) and the store's lease on the org (several nodes sharing a store take
//! turns too). The lease is short and renewed while held, so a node that dies holding it
//! blocks the org for at most one lease. With a shared store the holder then takes the
//! billing mirror as the store has it — another node may have just changed it — before
//! it calls Stripe.

use super::error::BillingError;
use super::locks::KeyGuard;
use super::service::BillingService;
use crate::domain::OrgId;
use crate::quota::EngineError;
use crate::store::OrgDirectory;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a lease lasts unless renewed, and how often the holder renews it.
const LEASE: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How long a caller waits for another node's lease before answering 409.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Held while an org's billing changes; released when dropped.
pub struct OrgLock<'a> {
    _local: KeyGuard<'a, OrgId>,
    lease: Option<(Arc<dyn OrgDirectory>, OrgId, String)>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl OrgLock<'_> {
    /// The lease's token, to fence the billing writes made under this lock with.
    pub fn fence(&self) -> Option<String> {
        self.lease.as_ref().map(|(_, _, token)| token.clone())
    }
}

impl Drop for OrgLock<'_> {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Some((orgs, org, token)) = self.lease.take() {
            let release = orgs.release(&org, token);
            tokio::spawn(async move {
                if let Err(e) = release.await {
                    // The lease then runs out by itself.
                    tracing::warn!(org = %org, error.cause_chain = %crate::errors::chain(&e), "billing lease not released");
                }
            });
        }
    }
}

fn store_failed(e: crate::store::StoreError) -> BillingError {
    BillingError::Engine(EngineError::Store(e))
}

impl BillingService {
    pub(super) async fn lock(&self, org: &OrgId) -> Result<OrgLock<'_>, BillingError> {
        let local = self.locks.lock(org).await;
        let orgs = self.engine.backend().orgs.clone();
        let lease_ms = LEASE.as_millis() as u64;
        let deadline = Instant::now() + WAIT;
        let token = loop {
            if let Some(token) = orgs
                .lease(org, None, lease_ms)
                .await
                .map_err(store_failed)?
            {
                break token;
            }
            if Instant::now() >= deadline {
                return Err(BillingError::Conflict(
                    "another node is changing this org's billing; retry shortly".into(),
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        let renewer = {
            let (orgs, org, token) = (orgs.clone(), org.clone(), token.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    match orgs.lease(&org, Some(token.clone()), lease_ms).await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            tracing::error!(org = %org, "billing lease lost while held");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(org = %org, error.cause_chain = %crate::errors::chain(&e), "billing lease not renewed")
                        }
                    }
                }
            })
        };
        let lock = OrgLock {
            _local: local,
            lease: Some((orgs, org.clone(), token)),
            renewer: Some(renewer),
        };
        if self.engine.backend().health.shared() {
            self.engine.adopt_stored_billing(org).await?;
        }
        Ok(lock)
    }
}
