//! The embedded sled database: one module per tree, values in postcard behind a schema
//! version byte, the group-commit writer through which every ledger write passes, and
//! the durability layer that makes a flush survive power loss.
//!
//! Trees: `orgs` (org records), `org_idem` (org-create idempotency keys), `api_keys` (and
//! `api_keys_by_org`), `ledger` (everything an org actor owns: state, counters, usage
//! idempotency entries — one tree so that one batch is crash-atomic), `debug_log`,
//! `diag`, `webhook_jobs` (Stripe events and their processing state), `stripe_customers`
//! (customer → org), `stigg_jobs` (Stigg provisioning jobs).

pub mod api_keys;
pub mod codec;
pub mod customers;
pub mod debug_log;
pub mod durability;
pub mod faults;
pub mod idem_filter;
pub mod jobs;
pub mod ledger;
pub mod legacy;
pub mod orgs;
pub mod stigg_jobs;
pub mod webhook_jobs;
pub mod writer;

use durability::Durability;
use faults::Faults;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: sled failed")]
    Sled(#[source] Arc<sled::Error>),
    #[error("store: syncing the data files to disk failed")]
    Sync(#[source] Arc<std::io::Error>),
    #[error("store: corrupt value in {tree}: {problem}")]
    Corrupt { tree: &'static str, problem: String },
    #[error("store: the commit writer has stopped")]
    WriterGone,
    /// An earlier write of the same org failed; later ones queued behind it are refused
    /// so that none is persisted on top of a write that was not.
    #[error("store: refused because an earlier write of this org failed")]
    Fenced,
    #[error("store: a background task failed")]
    Task(#[source] Arc<tokio::task::JoinError>),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(Arc::new(e))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Sync(Arc::new(e))
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
    pub api_keys_by_org: sled::Tree,
    pub ledger: sled::Tree,
    pub debug_log: sled::Tree,
    pub diag: sled::Tree,
    pub webhook_jobs: sled::Tree,
    pub stripe_customers: sled::Tree,
    pub stigg_jobs: sled::Tree,
    /// The one instance of each queue (they count their jobs in memory).
    pub webhook_queue: Arc<webhook_jobs::WebhookQueue>,
    pub stigg_queue: Arc<stigg_jobs::StiggQueue>,
    pub durability: Arc<Durability>,
    pub faults: Arc<Faults>,
}

/// How the store is opened.
pub struct OpenOptions {
    pub cache_capacity_bytes: u64,
    /// `fdatasync` after every flush (false only for benchmarks).
    pub fdatasync: bool,
}

impl Store {
    pub fn open(path: &Path, options: OpenOptions) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let faults = Arc::new(Faults::default());
        let durability = Arc::new(Durability::open(path, options.fdatasync, faults.clone())?);
        let webhook_jobs = db.open_tree(webhook_jobs::TREE)?;
        let stigg_jobs = db.open_tree(stigg_jobs::TREE)?;
        legacy::migrate(&db, &webhook_jobs, &stigg_jobs)?;
        Ok(Self {
            webhook_queue: Arc::new(jobs::JobTree::open(
                webhook_jobs.clone(),
                webhook_jobs::TREE,
                webhook_jobs::VERSION,
            )?),
            stigg_queue: Arc::new(jobs::JobTree::open(
                stigg_jobs.clone(),
                stigg_jobs::TREE,
                stigg_jobs::VERSION,
            )?),
            webhook_jobs,
            stigg_jobs,
            orgs: db.open_tree("orgs")?,
            org_idem: db.open_tree("org_idem")?,
            api_keys: db.open_tree("api_keys")?,
            api_keys_by_org: db.open_tree("api_keys_by_org")?,
            ledger: db.open_tree("ledger")?,
            debug_log: db.open_tree("debug_log")?,
            diag: db.open_tree("diag")?,
            stripe_customers: db.open_tree("stripe_customers")?,
            durability,
            faults,
            db,
        })
    }

    /// Makes every write so far durable (sled's flush, then the data files' sync)
    /// without blocking the calling thread.
    pub async fn flush(&self) -> StoreResult<()> {
        self.db.flush_async().await?;
        let durability = self.durability.clone();
        blocking(move || {
            durability.sync()?;
            durability.mark_caught_up();
            Ok(())
        })
        .await
    }

    /// Blocking flush and sync (the writer thread, shutdown).
    pub fn flush_blocking(&self) -> StoreResult<()> {
        self.db.flush()?;
        self.durability.sync()?;
        self.durability.mark_caught_up();
        Ok(())
    }

    /// Before anything read from the store is acknowledged: if a flush failed after its
    /// writes were applied, flush again first (failing while the disk still fails).
    /// Blocking; a no-op in the normal case.
    pub fn barrier(&self) -> StoreResult<()> {
        if self.durability.is_behind() {
            self.flush_blocking()?;
        }
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
        .map_err(|e| StoreError::Task(Arc::new(e)))?
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
