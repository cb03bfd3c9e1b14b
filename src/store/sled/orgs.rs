//! `OrgDirectory` on sled: the `orgs` tree (org records), `org_idem` (the
//! `Idempotency-Key`s of org creation: key → payload fingerprint + the exact body
//! answered) and `stripe_customers` (Stripe customer id → org id, so a webhook about any
//! of a customer's objects finds its org).
//!
//! Creating an org writes its record (in one transaction with its idempotency key), then
//! commits its initial ledger state through the writer and asks it for a flush in the
//! same group commit: the state is durable by the ledger's log, the record only by a
//! sled flush (the log covers the ledger tree alone).

use super::codec::{decode, encode};
use super::writer::CommitHandle;
use super::Inner;
use crate::domain::OrgId;
use crate::store::{
    blocking, CreateOutcome, CreateReplay, LedgerWrite, OrgDirectory, OrgRecord, OrgState,
    StoreError, StoreFuture, StoreResult,
};
use futures_util::FutureExt;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::sync::Arc;

const ORG_V: u8 = 1;
const IDEM_V: u8 = 1;

pub struct SledOrgs {
    orgs: sled::Tree,
    org_idem: sled::Tree,
    customers: sled::Tree,
    inner: Arc<Inner>,
    commit: CommitHandle,
}

fn transaction_result<T>(r: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

/// Inserts `record`; with an idempotency key, atomically with the key's entry.
fn insert(
    orgs: &sled::Tree,
    org_idem: &sled::Tree,
    record: &OrgRecord,
    idempotency: Option<(String, CreateReplay)>,
) -> StoreResult<CreateOutcome> {
    let value = encode(ORG_V, record);
    let Some((key, replay)) = idempotency else {
        orgs.insert(record.org_id.as_str().as_bytes(), value)?;
        return Ok(CreateOutcome::Created);
    };
    let idem_value = encode(IDEM_V, &replay);
    let result = (orgs, org_idem).transaction(|(orgs, idem)| {
        if let Some(existing) = idem.get(key.as_bytes())? {
            return Ok(Some(existing));
        }
        idem.insert(key.as_bytes(), idem_value.clone())?;
        orgs.insert(record.org_id.as_str().as_bytes(), value.clone())?;
        Ok::<_, ConflictableTransactionError<StoreError>>(None)
    });
    match transaction_result(result)? {
        None => Ok(CreateOutcome::Created),
        Some(bytes) => Ok(CreateOutcome::Replayed(decode("org_idem", IDEM_V, &bytes)?)),
    }
}

impl SledOrgs {
    pub fn open(db: &sled::Db, inner: Arc<Inner>, commit: CommitHandle) -> StoreResult<Self> {
        Ok(Self {
            orgs: db.open_tree("orgs")?,
            org_idem: db.open_tree("org_idem")?,
            customers: db.open_tree("stripe_customers")?,
            inner,
            commit,
        })
    }
}

impl OrgDirectory for SledOrgs {
    fn create(
        &self,
        record: OrgRecord,
        idempotency: Option<(String, CreateReplay)>,
        state: OrgState,
    ) -> StoreFuture<CreateOutcome> {
        let (orgs, org_idem, commit) = (
            self.orgs.clone(),
            self.org_idem.clone(),
            self.commit.clone(),
        );
        async move {
            let org = record.org_id.clone();
            let outcome = blocking(move || insert(&orgs, &org_idem, &record, idempotency)).await?;
            if let CreateOutcome::Created = outcome {
                // Queued together, so one group commit applies the state and flushes.
                let committed = commit.commit(org, vec![LedgerWrite::State(state)]);
                let flushed = commit.flush();
                committed.await?;
                flushed.await.map_err(|_| StoreError::WriterGone)??;
            }
            Ok(outcome)
        }
        .boxed()
    }

    fn get(&self, org: &OrgId) -> StoreFuture<Option<OrgRecord>> {
        let (orgs, org) = (self.orgs.clone(), org.clone());
        blocking(move || {
            orgs.get(org.as_str().as_bytes())?
                .map(|v| decode("orgs", ORG_V, &v))
                .transpose()
        })
        .boxed()
    }

    fn link_customer(&self, customer: &str, org: &OrgId) -> StoreFuture<()> {
        let (tree, inner) = (self.customers.clone(), self.inner.clone());
        let (customer, org) = (customer.to_owned(), org.clone());
        async move {
            blocking(move || {
                tree.insert(customer.as_bytes(), org.as_str().as_bytes())?;
                Ok(())
            })
            .await?;
            super::flush(inner).await
        }
        .boxed()
    }

    fn org_of_customer(&self, customer: &str) -> StoreFuture<Option<OrgId>> {
        let (tree, customer) = (self.customers.clone(), customer.to_owned());
        blocking(move || {
            // An id that no longer parses is as good as unknown.
            Ok(tree.get(customer.as_bytes())?.and_then(|v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| OrgId::parse(s).ok())
            }))
        })
        .boxed()
    }

    /// One process opens a sled store: its in-process lock already serialises an org.
    fn lease(&self, _: &OrgId, token: Option<String>, _: u64) -> StoreFuture<Option<String>> {
        futures_util::future::ready(Ok(Some(token.unwrap_or_else(|| "local".into())))).boxed()
    }

    fn release(&self, _: &OrgId, _: String) -> StoreFuture<()> {
        futures_util::future::ready(Ok(())).boxed()
    }
}
