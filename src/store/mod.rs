//! The embedded sled database: one module per tree, values in postcard behind a schema
//! version byte, and the group-commit writer through which every ledger write passes.
//!
//! Trees: `orgs` (org records), `org_idem` (org-create idempotency keys), `api_keys`,
//! `ledger` (everything an org actor owns: state, counters, usage idempotency entries —
//! one tree so that one batch is crash-atomic), `debug_log`, `diag`, `webhooks` (Stripe
//! events and their processing state), `stripe_customers` (customer → org),
//! `stigg_outbox` (Stigg provisioning jobs).

pub mod api_keys;
pub mod codec;
pub mod customers;
pub mod debug_log;
pub mod idem_filter;
pub mod ledger;
pub mod orgs;
pub mod outbox;
pub mod webhooks;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(Arc<str>),
    #[error("store: corrupt value in {tree}: {problem}")]
    Corrupt { tree: &'static str, problem: String },
    #[error("store: the commit writer has stopped")]
    WriterGone,
    #[error("store: background task failed: {0}")]
    Task(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string().into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handles to the database and its trees; cheap to clone (all handles are `Arc`s).
#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    pub orgs: sled::Tree,
    pub org_idem: sled::Tree,
    pub api_keys: sled::Tree,
    pub ledger: sled::Tree,
    pub debug_log: sled::Tree,
    pub diag: sled::Tree,
    pub webhooks: sled::Tree,
    pub stripe_customers: sled::Tree,
    pub stigg_outbox: sled::Tree,
}

impl Store {
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(Self {
            orgs: db.open_tree("orgs")?,
            org_idem: db.open_tree("org_idem")?,
            api_keys: db.open_tree("api_keys")?,
            ledger: db.open_tree("ledger")?,
            debug_log: db.open_tree("debug_log")?,
            diag: db.open_tree("diag")?,
            webhooks: db.open_tree("webhooks")?,
            stripe_customers: db.open_tree("stripe_customers")?,
            stigg_outbox: db.open_tree("stigg_outbox")?,
            db,
        })
    }

    /// Makes every write so far durable without blocking the calling thread.
    pub async fn flush(&self) -> StoreResult<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> StoreResult<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

/// Runs blocking store work on the blocking pool so async workers never stall on disk.
pub async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    F: FnOnce() -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// A sled transaction's result with the abort reason or storage error as a `StoreError`.
pub fn transaction_result<T>(
    r: Result<T, sled::transaction::TransactionError<StoreError>>,
) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(sled::transaction::TransactionError::Abort(e)) => Err(e),
        Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
    }
}
