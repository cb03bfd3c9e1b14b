//! The embedded backend: every storage trait on one sled database, the default store.
//!
//! Trees: `orgs`, `org_idem` (org-create idempotency keys), `api_keys` (+
//! `api_keys_by_org`), `ledger` (everything an org actor owns — one tree so one batch is
//! crash-atomic), `debug_log`, `diag`, `webhook_jobs` and `stigg_jobs` (job queues),
//! `stripe_customers` (customer → org). Values are postcard behind a schema-version
//! byte (`codec`). Ledger writes and usage records go through the group-commit writer
//! thread (`writer`), durable through its write-ahead log (`wal`) and folded into sled
//! by a checkpoint, which also writes usage idempotency entries to their run files
//! (`idem`, beside sled's files); other writes run on the blocking pool and end with a flush; every
//! flush ends with an `fdatasync` (`durability`).

use crate::store::codec;
#[cfg(test)]
mod checkpoint_tests;
mod counters;
mod debug_entries;
mod durability;
mod health;
mod idem;
mod idem_filter;
mod jobs;
mod keys;
mod ledger;
mod legacy;
mod orgs;
mod store_ledger;
mod wal;
mod writer;

use super::faults::Faults;
use super::{Backend, StoreError, StoreResult};
use crate::metrics::Metrics;
use durability::Durability;
use idem_filter::IdemFilter;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use jobs::{JobTree, SharedJobTree};

/// How the sled store is opened.
#[derive(Clone)]
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
    /// The log's size past which a checkpoint starts (`WAL_CAP_BYTES`; tests use less).
    pub wal_cap_bytes: u64,
}

/// The log's size that forces a checkpoint (it bounds replay time and disk use).
pub const WAL_CAP_BYTES: u64 = 64 << 20;

/// What the writer thread and every tree handle share.
pub struct Inner {
    pub db: sled::Db,
    pub ledger: sled::Tree,
    pub durability: Durability,
    pub faults: Arc<Faults>,
    /// Which idempotency keys of older versions may be in the ledger tree (spares
    /// look-ups of fresh ids there).
    pub filter: IdemFilter,
    /// Where usage idempotency entries are written and found.
    pub idem: Arc<idem::IdemRuns>,
    /// The writer thread, once started (every flush goes through it).
    pub writer: std::sync::OnceLock<writer::CommitHandle>,
    /// The ledger's write-ahead log (the writer thread's, and the final checkpoint's).
    pub wal: Mutex<wal::Wal>,
    /// Counter totals committed (in the log) but not yet in the tree, and recent reads:
    /// a counter hit by every consume flush is written to sled once per checkpoint.
    pub counters: Mutex<counters::CounterCache>,
    /// `OpenOptions::wal_cap_bytes`.
    pub wal_cap_bytes: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// Folds the log into sled: the dirty counters into the tree, a flush and sync, then
    /// the log emptied (only after the flush: until then it is what is durable).
    /// Blocking: the writer thread's (sled must be flushed from one thread).
    pub fn checkpoint(&self) -> StoreResult<()> {
        self.apply_dirty()?;
        self.idem.write_pending()?;
        self.db.flush()?;
        self.durability.sync()?;
        lock(&self.wal).reset()?;
        self.durability.mark_caught_up();
        Ok(())
    }

    /// Puts the dirty counters into the tree (visible to reads; durable already, by the
    /// log), so that a scan of an org's counters sees them.
    pub fn apply_dirty(&self) -> StoreResult<()> {
        while !self.apply_dirty_some(usize::MAX, false)? {}
        Ok(())
    }

    /// Puts up to `limit` dirty counters into the tree (only those due for the
    /// checkpoint in progress with `due_only`); true when none of them are left.
    pub fn apply_dirty_some(&self, limit: usize, due_only: bool) -> StoreResult<bool> {
        let mut counters = lock(&self.counters);
        let (batch, keys) = counters.take_dirty(limit, due_only);
        if !keys.is_empty() {
            if let Err(e) = self.ledger.apply_batch(batch) {
                counters.put_back(keys);
                return Err(e.into());
            }
        }
        counters.trim();
        Ok(match due_only {
            true => !counters.has_due(),
            false => !counters.has_dirty(),
        })
    }

    /// A counter's committed total: the cached one, else the tree's.
    pub fn counter(&self, key: &[u8]) -> StoreResult<u64> {
        let mut counters = lock(&self.counters);
        if let Some(total) = counters.get(key) {
            return Ok(total);
        }
        let total = match self.ledger.get(key)? {
            Some(v) => ledger::decode_counter(&v)?,
            None => 0,
        };
        counters.remember(key, total);
        Ok(total)
    }

    /// Whether counters wait for the checkpoint to reach the tree.
    pub fn has_dirty(&self) -> bool {
        lock(&self.counters).has_dirty()
    }

    /// Whether counters wait for the checkpoint in progress.
    pub fn has_due(&self) -> bool {
        lock(&self.counters).has_due()
    }

    /// If a sync failed after its writes were applied, checkpoints (failing while the
    /// disk still fails): nothing read from memory may be acknowledged before that. A
    /// later log sync cannot stand in: after a failed `fdatasync` the kernel may have
    /// dropped the pages it could not write and still report the next sync clean.
    pub fn barrier(&self) -> StoreResult<()> {
        if self.durability.is_behind() {
            self.checkpoint()?;
        }
        Ok(())
    }
}

/// Applies the log's frames found at open to the tree, makes them durable in sled and
/// empties the log; returns how many frames there were.
fn replay(inner: &Inner, frames: Vec<Vec<u8>>) -> StoreResult<usize> {
    let count = frames.len();
    if count == 0 {
        return Ok(0);
    }
    let mut batch = sled::Batch::default();
    for frame in &frames {
        // `Wal::open` returns only frames that parse.
        for (key, value) in wal::puts(frame).unwrap_or_default() {
            if ledger::is_idem_key(key) {
                inner
                    .idem
                    .insert([(key.to_vec(), ledger::decode_idem(value)?)]);
            } else {
                batch.insert(key, value);
            }
        }
    }
    inner.ledger.apply_batch(batch)?;
    inner.checkpoint()?;
    Ok(count)
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
    let (wal, frames) = wal::Wal::open(path, options.fdatasync)?;
    let inner = Arc::new(Inner {
        wal: Mutex::new(wal),
        counters: Mutex::new(counters::CounterCache::default()),
        wal_cap_bytes: options.wal_cap_bytes,
        ledger: db.open_tree("ledger")?,
        durability: Durability::open(path, options.fdatasync, faults.clone())?,
        faults: faults.clone(),
        filter: IdemFilter::new(options.idempotency_filter_bits_log2),
        idem: idem::IdemRuns::open(path)?,
        writer: std::sync::OnceLock::new(),
        db: db.clone(),
    });
    let replayed = replay(&inner, frames)?;
    if replayed > 0 {
        tracing::info!(frames = replayed, "ledger log replayed");
    }
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
        debug_log: Arc::new(debug_entries::SledDebugLog::open(
            &db,
            options.debug_log_capacity,
        )?),
        health: Arc::new(health::SledHealth::open(&db, inner, writer)?),
        ledger: Arc::new(ledger),
        faults,
    })
}

/// What the store's own tests open it with.
#[cfg(test)]
pub(crate) mod test_support {
    pub fn options() -> super::OpenOptions {
        super::OpenOptions {
            cache_capacity_bytes: 8 << 20,
            fdatasync: true,
            commit_max_batch: 64,
            debug_log_capacity: 10,
            idempotency_filter_bits_log2: 12,
            wal_cap_bytes: super::WAL_CAP_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Metric, OrgId, PeriodKey};

    use test_support::options;

    /// What a `kill -9` leaves: frames in the log that no checkpoint folded into sled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_left_by_a_crash_is_applied_at_open_and_then_emptied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let org = OrgId::parse("org_crash").expect("org");
        let period = PeriodKey::parse("2026-03").expect("period");
        let key = ledger::counter_key(&org, period, &Metric::api_call());
        let (mut log, _) = wal::Wal::open(dir.path(), true).expect("log");
        for total in [5, 42] {
            let mut ops = wal::Ops::default();
            ops.put(&key, &ledger::encode_counter(total));
            log.append(&ops).expect("append");
        }
        log.sync().expect("sync");
        drop(log);

        let b = open(dir.path(), options(), Metrics::new()).expect("open");
        let counters = b.ledger.counters(&org, period).await.expect("counters");
        assert_eq!(
            counters.get(&Metric::api_call()),
            Some(&42),
            "the last frame wins"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("ledger.wal"))
                .expect("log file")
                .len(),
            0,
            "replayed frames are checkpointed, not replayed twice"
        );
        b.health.close();
    }

    /// SPEC §5: a consume never waits for a disk. Write-behind commits are answered once
    /// their frame is in the log file (a crash of the process keeps it: the kernel holds
    /// it) without a sync, and the writer syncs them by itself within a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consumed_units_are_answered_before_their_sync_and_synced_within_a_second() {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = open(dir.path(), options(), Metrics::new()).expect("open");
        let org = OrgId::parse("org_consume").expect("org");
        let period = PeriodKey::parse("2026-03").expect("period");
        let usage = |delta| {
            vec![(
                org.clone(),
                vec![crate::store::LedgerWrite::Usage {
                    period,
                    metric: Metric::api_call(),
                    delta,
                }],
            )]
        };
        // Any sync attempted from now on fails: the answer below proves none was.
        b.faults.fail_next_flushes(1);
        let answers = b.ledger.commit_consumed(usage(3)).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(b.faults.flush_failures_left(), 1, "answered without a sync");
        let log = dir.path().join("ledger.wal");
        let written = std::fs::metadata(&log).expect("log file").len();
        assert!(written > 0, "the frame is in the file when answered");

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while b.faults.flush_failures_left() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            b.faults.flush_failures_left(),
            0,
            "the writer synced by itself"
        );
        // That sync failed: the next commit that needs durability checkpoints instead
        // of trusting the log, and the units are there.
        let answers = b.ledger.commit_many(usage(4)).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let counters = b.ledger.counters(&org, period).await.expect("counters");
        assert_eq!(counters.get(&Metric::api_call()), Some(&7));
        b.health.close();
    }

    /// A disk whose syncs keep failing is retried once a second, not in a loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_deferred_sync_is_retried_at_its_pace() {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = open(dir.path(), options(), Metrics::new()).expect("open");
        let org = OrgId::parse("org_failing").expect("org");
        let write = crate::store::LedgerWrite::Usage {
            period: PeriodKey::parse("2026-03").expect("period"),
            metric: Metric::api_call(),
            delta: 1,
        };
        b.faults.fail_next_flushes(1_000);
        let answers = b.ledger.commit_consumed(vec![(org, vec![write])]).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        let tried = 1_000 - b.faults.flush_failures_left();
        assert!(
            (1..=4).contains(&tried),
            "{tried} syncs tried in 2.5 s: one a second expected"
        );
        b.faults.fail_next_flushes(0);
        b.health.close();
    }
}
