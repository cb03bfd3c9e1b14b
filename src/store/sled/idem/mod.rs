//! `IdemRuns`: where the usage idempotency entries live — an in-memory table of the
//! entries made durable since the last checkpoint (their durability is the write-ahead
//! log's), the tables frozen from it for a background thread to write as runs, and
//! immutable sorted run files in `<data>/idempotency/`, which another background thread
//! merges (`maintain`). A checkpoint writes what is left in memory before the log is
//! emptied.
//!
//! Why not sled: an entry is written once per record and read almost never (only by a
//! retry), and a sled insert per entry (~17 µs of the writer thread's CPU) was what bound
//! durable records per second. A run is written sequentially once per checkpoint for
//! all the entries it holds, and read through its per-run Bloom filter, so a fresh
//! request id costs one cache line per run, and a retry one block read.
//!
//! Entries written by older versions stay in the `ledger` tree and are still found
//! there (see the writer's look-up), and purged from there.

mod bloom;
mod maintain;
mod run;

use crate::store::sled::ledger::IdemEntry;
use crate::store::sled::lock;
use crate::store::{Purged, StoreResult};
use run::{io, Run, RunWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use bloom::hash;

const DIR: &str = "idempotency";

/// The runs, oldest first.
type RunList = Arc<Vec<Arc<Run>>>;

type Table = foldhash::HashMap<Vec<u8>, IdemEntry>;

/// The tables frozen when the log was sealed (held weakly: a written one may go).
pub struct Sealed(Vec<std::sync::Weak<Table>>);

/// Entries past which the in-memory table is frozen and written as a run in the
/// background: a checkpoint then writes at most about this many itself (plus waits for
/// one such write under way), not the whole log's — at 100k records/s that was ~400k
/// entries, 330–450 ms of the writer thread with every durable write waiting.
const FREEZE_AT: usize = 32_768;

pub struct IdemRuns {
    dir: PathBuf,
    /// Entries durable in the log only (the writer's; the purge drops expired ones).
    memtable: Mutex<Table>,
    /// Tables taken from `memtable` to be written as runs, oldest first; found here until
    /// their run is in `runs`.
    frozen: Mutex<Vec<Arc<Table>>>,
    /// Held while frozen tables are written or purged, so that each is written once.
    writing: Mutex<()>,
    runs: RwLock<RunList>,
    next_id: AtomicU64,
    /// Held by a merge or the purge for its whole run: they replace runs.
    maintenance: Mutex<()>,
    stopping: AtomicBool,
    maintainer: Mutex<Option<maintain::Maintainer>>,
    /// The thread that writes frozen tables.
    freezer: Mutex<Option<maintain::Maintainer>>,
}

impl IdemRuns {
    /// Opens the runs under `data_dir`, finishing what a crash interrupted: a file never
    /// finished is removed, and so are runs a finished merge replaced. Starts the merges.
    pub fn open(data_dir: &Path) -> StoreResult<Arc<Self>> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut runs = Vec::new();
        let mut max_id = 0;
        for item in std::fs::read_dir(&dir).map_err(io)? {
            let item = item.map_err(io)?;
            let name = item.file_name().to_string_lossy().into_owned();
            match run::parse_name(&name) {
                Some(id) => {
                    max_id = max_id.max(id);
                    match Run::open(id, &item.path())? {
                        Some(r) => runs.push(Arc::new(r)),
                        None => std::fs::remove_file(item.path()).map_err(io)?,
                    }
                }
                // A run being written when the process stopped.
                None if name.ends_with(".tmp") => std::fs::remove_file(item.path()).map_err(io)?,
                None => {}
            }
        }
        let replaced: std::collections::HashSet<u64> =
            runs.iter().flat_map(|r| r.replaces.clone()).collect();
        for r in runs.iter().filter(|r| replaced.contains(&r.id)) {
            std::fs::remove_file(&r.path).map_err(io)?;
        }
        runs.retain(|r| !replaced.contains(&r.id));
        runs.sort_by_key(|r| r.id);
        let this = Arc::new(Self {
            dir,
            memtable: Mutex::new(Default::default()),
            frozen: Mutex::new(Vec::new()),
            writing: Mutex::new(()),
            runs: RwLock::new(Arc::new(runs)),
            next_id: AtomicU64::new(max_id + 1),
            maintenance: Mutex::new(()),
            stopping: AtomicBool::new(false),
            maintainer: Mutex::new(None),
            freezer: Mutex::new(None),
        });
        let maintainer = maintain::Maintainer::merges(Arc::downgrade(&this)).map_err(io)?;
        *lock(&this.maintainer) = Some(maintainer);
        let freezer = maintain::Maintainer::frozen_writes(Arc::downgrade(&this)).map_err(io)?;
        *lock(&this.freezer) = Some(freezer);
        Ok(this)
    }

    fn list(&self) -> RunList {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The entry for `key` (`hash` is `hash(key)`), newest first.
    pub fn get(&self, key: &[u8], hash: u64) -> StoreResult<Option<IdemEntry>> {
        if let Some(e) = lock(&self.memtable).get(key) {
            return Ok(Some(e.clone()));
        }
        // A frozen table leaves this list only once its run is in `runs`: read after it.
        if let Some(e) = lock(&self.frozen).iter().rev().find_map(|t| t.get(key)) {
            return Ok(Some(e.clone()));
        }
        for r in self.list().iter().rev() {
            if r.may_contain(hash) {
                if let Some(e) = r.get(key, hash)? {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Takes entries just made durable by the log (a group commit, or the log's replay
    /// at open); past `FREEZE_AT` the table goes to the background writer.
    pub fn insert(&self, entries: impl IntoIterator<Item = (Vec<u8>, IdemEntry)>) {
        let full = {
            let mut memtable = lock(&self.memtable);
            memtable.extend(entries);
            memtable.len() >= FREEZE_AT
        };
        if full && self.freeze() {
            self.nudge_freezer();
        }
    }

    /// Moves the in-memory table to the frozen ones; false when it was empty.
    fn freeze(&self) -> bool {
        let mut memtable = lock(&self.memtable);
        if memtable.is_empty() {
            return false;
        }
        let table = std::mem::take(&mut *memtable);
        lock(&self.frozen).push(Arc::new(table));
        true
    }

    /// A checkpoint seals the log: every entry in memory now is frozen and handed to the
    /// background writer; the checkpoint waits (`written`) for these tables only.
    pub fn seal(&self) -> Sealed {
        self.freeze();
        let tables = lock(&self.frozen).iter().map(Arc::downgrade).collect();
        self.nudge_freezer();
        Sealed(tables)
    }

    /// Whether the tables of `sealed` are all runs now; nudges their writer if not (a
    /// failed write is retried at the checkpoint's pace).
    pub fn written(&self, sealed: &Sealed) -> bool {
        let pending = {
            let frozen = lock(&self.frozen);
            sealed.0.iter().any(|w| {
                frozen
                    .iter()
                    .any(|t| std::ptr::eq(Arc::as_ptr(t), w.as_ptr()))
            })
        };
        if pending {
            self.nudge_freezer();
        }
        !pending
    }

    fn nudge_freezer(&self) {
        if let Some(f) = lock(&self.freezer).as_ref() {
            f.nudge();
        }
    }

    /// Whether a checkpoint has entries to write.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        !lock(&self.memtable).is_empty() || !lock(&self.frozen).is_empty()
    }

    /// Writes every entry held in memory as runs (durable when this returns), so that
    /// the log may be emptied; on failure they stay in memory (and the log) for the next
    /// checkpoint. The writer thread's, as part of a checkpoint.
    pub fn write_pending(&self) -> StoreResult<()> {
        self.freeze();
        self.write_frozen()
    }

    /// Writes the frozen tables as runs, oldest first; one that fails stays frozen (and
    /// found) with those after it.
    fn write_frozen(&self) -> StoreResult<()> {
        let _held = lock(&self.writing);
        loop {
            let Some(table) = lock(&self.frozen).first().cloned() else {
                return Ok(());
            };
            let run = self.write_run(&table)?;
            let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
            let mut next = runs.as_ref().clone();
            next.push(Arc::new(run));
            *runs = Arc::new(next);
            drop(runs);
            lock(&self.frozen).retain(|t| !Arc::ptr_eq(t, &table));
            if let Some(m) = lock(&self.maintainer).as_ref() {
                m.nudge();
            }
        }
    }

    fn write_run(&self, table: &Table) -> StoreResult<Run> {
        let mut sorted: Vec<_> = table.iter().map(|(k, e)| (hash(k), k, e)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut w =
            RunWriter::create(&self.dir, self.new_id(), sorted.len() as u64, vec![]).map_err(io)?;
        for (h, k, e) in sorted {
            w.push(h, k, e).map_err(io)?;
        }
        w.finish()
    }

    /// Replaces `old` (by id) with `new` in the list — at the newest of `old`'s places,
    /// or removes them when `new` is `None` — then deletes `old`'s files (an open run
    /// stays readable through its handle).
    fn replace(&self, old: &[u64], new: Option<Run>) -> StoreResult<()> {
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<Arc<Run>> = Vec::with_capacity(runs.len());
        let mut new = new.map(Arc::new);
        let last = runs.iter().rposition(|r| old.contains(&r.id));
        for (i, r) in runs.iter().enumerate() {
            if !old.contains(&r.id) {
                next.push(r.clone());
            } else if Some(i) == last {
                next.extend(new.take());
            }
        }
        let gone: Vec<PathBuf> = runs
            .iter()
            .filter(|r| old.contains(&r.id))
            .map(|r| r.path.clone())
            .collect();
        *runs = Arc::new(next);
        drop(runs);
        for path in gone {
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(())
    }

    /// Removes every entry created before `cutoff_ms`: whole runs when all of theirs
    /// are, a rewritten run when some are, and from memory.
    pub fn purge(&self, cutoff_ms: i64) -> StoreResult<Purged> {
        let _held = lock(&self.maintenance);
        let mut out = Purged::default();
        {
            let mut memtable = lock(&self.memtable);
            let before = memtable.len();
            memtable.retain(|_, e| e.created_ms >= cutoff_ms);
            out.purged += (before - memtable.len()) as u64;
            out.kept += memtable.len() as u64;
        }
        {
            let _writing = lock(&self.writing);
            let mut frozen = lock(&self.frozen);
            for table in frozen.iter_mut() {
                let kept: Table = table
                    .iter()
                    .filter(|(_, e)| e.created_ms >= cutoff_ms)
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect();
                out.purged += (table.len() - kept.len()) as u64;
                out.kept += kept.len() as u64;
                if kept.len() != table.len() {
                    *table = Arc::new(kept);
                }
            }
            frozen.retain(|t| !t.is_empty());
        }
        for r in self.list().iter() {
            if r.max_created_ms < cutoff_ms {
                out.purged += r.count;
                self.replace(&[r.id], None)?;
            } else if r.min_created_ms < cutoff_ms {
                let kept = maintain::rewrite(self, std::slice::from_ref(r), Some(cutoff_ms))?;
                out.purged += r.count - kept;
                out.kept += kept;
            } else {
                out.kept += r.count;
            }
        }
        Ok(out)
    }

    /// Stops the merges (one under way is abandoned and its unfinished file removed)
    /// and waits for the thread.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let threads = [lock(&self.maintainer).take(), lock(&self.freezer).take()];
        for t in threads.into_iter().flatten() {
            t.join();
        }
    }

    /// The entries held (an entry a crash left both in a run and in the log counts
    /// twice until the next merge).
    pub fn count(&self) -> u64 {
        let frozen: usize = lock(&self.frozen).iter().map(|t| t.len()).sum();
        let pending = (lock(&self.memtable).len() + frozen) as u64;
        pending + self.list().iter().map(|r| r.count).sum::<u64>()
    }

    /// The runs held.
    #[cfg(test)]
    pub fn run_count(&self) -> usize {
        self.list().len()
    }
}

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
