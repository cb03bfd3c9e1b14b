//! The embedded backend: every storage trait on one sled database, the default store.
//!
//! Trees: `orgs`, `org_idem` (org-create idempotency keys), `api_keys` (+
//! `api_keys_by_org`), `ledger` (everything an org actor owns — one tree so one batch is
//! crash-atomic), `debug_log`, `diag`, `webhook_jobs` and `stigg_jobs` (job queues),
//! `stripe_customers` (customer → org). Values are postcard behind a schema-version
//! byte (`codec`). Ledger writes and usage records go through the group-commit writer
//! thread (`writer`); other writes run on the blocking pool and end with a flush; every
//! flush ends with an `fdatasync` (`durability`).

use crate::store::codec;
mod debug_log;
mod durability;
mod health;
mod idem_filter;
mod jobs;
mod keys;
mod ledger;
mod legacy;
mod orgs;
mod store_ledger;
mod writer;

use super::faults::Faults;
use super::{Backend, StoreError, StoreResult};
use crate::metrics::Metrics;
use durability::Durability;
use idem_filter::IdemFilter;
use std::path::Path;
use std::sync::Arc;

pub use jobs::{JobTree, SharedJobTree};

/// How the sled store is opened.
pub struct OpenOptions {
    pub cache_capacity_bytes: u64,
    /// `fdatasync` after every flush (false only for benchmarks).
    pub fdatasync: bool,
    /// Most writes one group commit applies and flushes together.
    pub commit_max_batch: usize,
    /// Entries the DebugLog keeps.
    pub debug_log_capacity: usize,
    /// The idempotency filter's size, as a power of two of bits.
    pub idempotency_filter_bits_log2: u32,
}

/// What the writer thread and every tree handle share.
pub struct Inner {
    pub db: sled::Db,
    pub ledger: sled::Tree,
    pub durability: Durability,
    pub faults: Arc<Faults>,
    /// Which idempotency keys may be in the ledger (spares look-ups of fresh ids).
    pub filter: IdemFilter,
    /// The writer thread, once started (every flush goes through it).
    pub writer: std::sync::OnceLock<writer::CommitHandle>,
}

impl Inner {
    /// Blocking flush and sync.
    pub fn flush_blocking(&self) -> StoreResult<()> {
        self.db.flush()?;
        self.durability.sync()?;
        self.durability.mark_caught_up();
        Ok(())
    }

    /// If a flush failed after its writes were applied, flushes again (failing while the
    /// disk still fails): nothing read from memory may be acknowledged before that.
    pub fn barrier(&self) -> StoreResult<()> {
        if self.durability.is_behind() {
            self.flush_blocking()?;
        }
        Ok(())
    }
}

/// Makes every write so far durable without blocking the calling thread: through the
/// writer thread, the one place sled is flushed from while the store is open.
pub async fn flush(inner: Arc<Inner>) -> StoreResult<()> {
    let Some(writer) = inner.writer.get() else {
        return Err(StoreError::WriterGone);
    };
    writer.flush().await.map_err(|_| StoreError::WriterGone)?
}

/// Opens (or creates) the store at `path`, upgrading an older layout in place, and
/// starts its writer thread and the idempotency filter's rebuild.
pub fn open(path: &Path, options: OpenOptions, metrics: Metrics) -> StoreResult<Backend> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let faults = Arc::new(Faults::default());
    let webhook_tree = db.open_tree(crate::store::webhook_jobs::TREE)?;
    let stigg_tree = db.open_tree(crate::store::stigg_jobs::TREE)?;
    legacy::migrate(&db, &webhook_tree, &stigg_tree)?;
    let inner = Arc::new(Inner {
        ledger: db.open_tree("ledger")?,
        durability: Durability::open(path, options.fdatasync, faults.clone())?,
        faults: faults.clone(),
        filter: IdemFilter::new(options.idempotency_filter_bits_log2),
        writer: std::sync::OnceLock::new(),
        db: db.clone(),
    });
    let writer = Arc::new(
        writer::GroupCommitWriter::start(inner.clone(), options.commit_max_batch, metrics.clone())
            .map_err(crate::store::StoreError::from)?,
    );
    let _ = inner.writer.set(writer.handle());
    let ledger = store_ledger::SledLedger::start(inner.clone(), writer.clone(), metrics);
    Ok(Backend {
        orgs: Arc::new(orgs::SledOrgs::open(&db, inner.clone(), writer.handle())?),
        keys: Arc::new(keys::SledKeys::open(&db, inner.clone())?),
        webhooks: Arc::new(SharedJobTree(Arc::new(JobTree::open(
            webhook_tree,
            crate::store::webhook_jobs::TREE,
            crate::store::webhook_jobs::VERSION,
            inner.clone(),
        )?))),
        stigg: Arc::new(SharedJobTree(Arc::new(JobTree::open(
            stigg_tree,
            crate::store::stigg_jobs::TREE,
            crate::store::stigg_jobs::VERSION,
            inner.clone(),
        )?))),
        debug_log: Arc::new(debug_log::SledDebugLog::open(
            &db,
            options.debug_log_capacity,
        )?),
        health: Arc::new(health::SledHealth::open(&db, inner, writer)?),
        ledger: Arc::new(ledger),
        faults,
    })
}
