//! One group commit on the writer thread: the messages it takes (records, commits,
//! flushes, queued reads), the sled batch and the log frame it builds from them, and how
//! it is applied, made durable and answered.

use super::in_batch::InBatch;
use super::{Durable, Msg, Read};
use crate::domain::OrgId;
use crate::metrics::Metrics;
use crate::store::sled::idem;
use crate::store::sled::ledger::{self, IdemEntry};
use crate::store::sled::wal::Ops;
use crate::store::sled::{lock, Inner};
use crate::store::{record_body, LedgerWrite, Recorded, StoreError, StoreResult, UsageRecord};
use foldhash::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// A record's answer body.
type Body = Arc<[u8]>;

/// `total + delta`, saturating at 0 and `u64::MAX`.
fn add_signed(total: u64, delta: i64) -> u64 {
    if delta >= 0 {
        total.saturating_add(delta.unsigned_abs())
    } else {
        total.saturating_sub(delta.unsigned_abs())
    }
}

enum Answer {
    Records(
        oneshot::Sender<Vec<StoreResult<Recorded>>>,
        Vec<StoreResult<Recorded>>,
    ),
    /// Per org: its own failure, or `Ok` to be answered with the batch's outcome.
    Many(oneshot::Sender<Vec<StoreResult<()>>>, Vec<StoreResult<()>>),
    Flush(oneshot::Sender<StoreResult<()>>),
}

/// One group commit under construction: the sled batch and the log frame mirroring it,
/// the counter totals and idempotency entries it has written so far (later writes of the
/// same batch build on them), and who to answer once it is durable.
pub(super) struct Batch<'a> {
    inner: &'a Inner,
    batch: sled::Batch,
    /// Whether `batch` has anything (an empty sled batch still costs a log write).
    tree_puts: bool,
    ops: Ops,
    writes: usize,
    totals: HashMap<Vec<u8>, u64>,
    /// Request ids recorded by this batch: where in `entries`.
    requests: InBatch,
    /// The idempotency entries this batch writes (to the runs' memory once applied).
    entries: Vec<(Vec<u8>, IdemEntry)>,
    /// Where an entry is encoded before it is copied into the log frame.
    scratch: Vec<u8>,
    answers: Vec<Answer>,
    /// The records among `answers` beyond one per message (a batch's weight).
    extra_records: usize,
    reads: Vec<Read>,
    /// Someone waits for a flush of writes made outside this batch.
    flush_asked: bool,
    /// Someone waits for its writes to survive a power loss (everyone but write-behind
    /// commits): the frame is synced before anyone is answered.
    sync_asked: bool,
}

/// How big the previous group commit was: the next one reserves as much up front, so
/// its frame and entries are not grown (and copied) by doubling from empty every time.
#[derive(Default, Clone, Copy)]
pub(super) struct SizeHint {
    frame_bytes: usize,
    entries: usize,
}

/// Most reserved up front whatever the last commit was (a burst must not pin memory).
const MAX_HINT_BYTES: usize = 4 << 20;

impl<'a> Batch<'a> {
    pub(super) fn new(inner: &'a Inner, hint: SizeHint) -> Self {
        let frame_bytes = hint.frame_bytes.min(MAX_HINT_BYTES);
        let entries = hint.entries.min(MAX_HINT_BYTES / 256);
        Self {
            inner,
            batch: sled::Batch::default(),
            tree_puts: false,
            ops: Ops::with_capacity(frame_bytes),
            writes: 0,
            totals: HashMap::default(),
            requests: InBatch::default(),
            entries: Vec::with_capacity(entries),
            scratch: Vec::new(),
            answers: Vec::new(),
            extra_records: 0,
            reads: Vec::new(),
            flush_asked: false,
            sync_asked: false,
        }
    }

    /// What waits for this batch so far: answers (a batch's records each) and reads.
    pub(super) fn len(&self) -> usize {
        self.answers.len() + self.extra_records + self.reads.len()
    }

    /// Takes one message in; false for `Shutdown`.
    pub(super) fn add(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Records(org, usages, tx) => {
                self.sync_asked = true;
                self.extra_records += usages.len().saturating_sub(1);
                let each = usages.into_iter().map(|u| self.record(&org, u)).collect();
                self.answers.push(Answer::Records(tx, each));
            }
            Msg::RecordsAcross(records, tx) => {
                self.sync_asked = true;
                self.extra_records += records.len().saturating_sub(1);
                let each = records
                    .into_iter()
                    .map(|(org, u)| self.record(&org, u))
                    .collect();
                self.answers.push(Answer::Records(tx, each));
            }
            Msg::CommitMany(writes, durable, tx) => {
                self.sync_asked |= durable == Durable::Now;
                let each = writes
                    .into_iter()
                    .map(|(org, w)| self.commit(&org, w))
                    .collect();
                self.answers.push(Answer::Many(tx, each));
            }
            Msg::Flush(tx) => {
                self.flush_asked = true;
                self.sync_asked = true;
                self.answers.push(Answer::Flush(tx));
            }
            Msg::Read(read) => self.reads.push(read),
            Msg::Shutdown => return false,
        }
        true
    }

    fn total(&mut self, key: &[u8]) -> StoreResult<u64> {
        match self.totals.get(key) {
            Some(t) => Ok(*t),
            None => self.inner.counter(key),
        }
    }

    /// Adds `delta` to a counter; returns the total.
    fn add_signed(&mut self, key: Vec<u8>, delta: i64) -> StoreResult<u64> {
        let total = add_signed(self.total(&key)?, delta);
        self.totals.insert(key, total);
        self.writes += 1;
        Ok(total)
    }

    /// Puts a non-counter value, in the tree's batch and in the log's frame.
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.ops.put(key, &value);
        self.batch.insert(key, value);
        self.tree_puts = true;
        self.writes += 1;
    }

    /// What an earlier record of `key` answered: the runs (and their memory) hold every
    /// entry written since they exist, the ledger tree those of older versions.
    fn seen(&self, key: &[u8], hash: u64) -> StoreResult<Option<([u8; 16], Body)>> {
        let key_at = |i: usize| self.entries.get(i).map(|(k, _)| k.as_slice());
        if let Some(i) = self.requests.get(key, hash, key_at) {
            // A repeat within one batch is rare: copying its answer then is cheaper than
            // keeping a shared copy for every record.
            if let Some((_, e)) = self.entries.get(i) {
                return Ok(Some((e.fingerprint, e.body.as_slice().into())));
            }
        }
        let stored = match self.inner.idem.get(key, hash)? {
            Some(e) => Some(e),
            None if self.inner.filter.may_contain(key) => self
                .inner
                .ledger
                .get(key)?
                .map(|v| ledger::decode_idem(&v))
                .transpose()?,
            None => None,
        };
        Ok(stored.map(|e| (e.fingerprint, e.body.into())))
    }

    fn record(&mut self, org: &OrgId, u: UsageRecord) -> StoreResult<Recorded> {
        let key = ledger::idem_key(org, &u.request);
        let hash = idem::hash(&key);
        if let Some((fingerprint, body)) = self.seen(&key, hash)? {
            return Ok(if fingerprint == u.fingerprint {
                Recorded::Replayed { body }
            } else {
                Recorded::Conflict
            });
        }
        let delta = i64::try_from(u.delta).unwrap_or(i64::MAX);
        let total = self.add_signed(ledger::counter_key(org, u.period, &u.metric), delta)?;
        let body = record_body(u.period, total, u.included);
        let entry = IdemEntry {
            fingerprint: u.fingerprint,
            body: body.to_vec(),
            created_ms: u.now_ms,
        };
        ledger::encode_idem_into(&entry, &mut self.scratch);
        self.ops.put(&key, &self.scratch);
        self.writes += 1;
        self.requests.insert(&key, hash, self.entries.len());
        self.entries.push((key, entry));
        Ok(Recorded::New { body, total })
    }

    /// Adds one org's writes, all or none: the counters are computed before anything
    /// goes into the batch, so a failed read leaves the batch as it was.
    fn commit(&mut self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreResult<()> {
        let mut counters: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut puts = Vec::new();
        for w in writes {
            match w {
                LedgerWrite::State(s) => {
                    puts.push((ledger::state_key(org), ledger::encode_state(&s)))
                }
                LedgerWrite::Billing(b) => {
                    puts.push((ledger::billing_key(org), ledger::encode_billing(&b)))
                }
                LedgerWrite::Usage {
                    period,
                    metric,
                    delta,
                } => {
                    let key = ledger::counter_key(org, period, &metric);
                    let before = match counters.iter().rev().find(|(k, _)| *k == key) {
                        Some((_, t)) => *t,
                        None => self.total(&key)?,
                    };
                    counters.push((key, add_signed(before, delta)));
                }
                // One process: the in-process billing lock is the whole lease.
                LedgerWrite::Fence(_) => {}
                LedgerWrite::Zero { period, metric } => {
                    counters.push((ledger::counter_key(org, period, &metric), 0));
                }
            }
        }
        for (key, value) in puts {
            self.put(&key, value);
        }
        for (key, total) in counters {
            self.totals.insert(key, total);
            self.writes += 1;
        }
        Ok(())
    }

    /// Applies, logs and syncs (a batch of replays alone still syncs if an earlier sync
    /// failed: what they read must be durable before they are answered).
    pub(super) fn finish(self, m: &Metrics) -> SizeHint {
        // The counters' puts join the frame in `apply`: about one per record.
        let size = SizeHint {
            frame_bytes: self.ops.bytes() + self.totals.len() * 64,
            entries: self.entries.len(),
        };
        let Batch {
            inner,
            batch,
            tree_puts,
            ops,
            writes,
            totals,
            entries,
            answers,
            extra_records,
            reads,
            flush_asked,
            sync_asked,
            ..
        } = self;
        if !answers.is_empty() {
            let started = Instant::now();
            let result = if writes > 0 {
                apply(
                    inner,
                    tree_puts.then_some(batch),
                    ops,
                    totals,
                    entries,
                    flush_asked,
                    sync_asked,
                )
            } else if flush_asked {
                inner.checkpoint()
            } else {
                inner.barrier()
            };
            let waiting = answers.len() + extra_records;
            m.commit_batch_size.observe(waiting as f64);
            m.commit_duration.observe(started.elapsed().as_secs_f64());
            if let Err(e) = &result {
                m.commit_errors.inc();
                tracing::error!(error = %crate::errors::chain(e), writes = waiting, "group commit failed");
            }
            for answer in answers {
                match (answer, &result) {
                    (Answer::Records(tx, each), Ok(())) => drop(tx.send(each)),
                    (Answer::Flush(tx), Ok(())) => drop(tx.send(Ok(()))),
                    (Answer::Records(tx, each), Err(e)) => {
                        drop(tx.send(each.iter().map(|_| Err(e.clone())).collect()))
                    }
                    (Answer::Flush(tx), Err(e)) => drop(tx.send(Err(e.clone()))),
                    (Answer::Many(tx, each), Ok(())) => drop(tx.send(each)),
                    (Answer::Many(tx, each), Err(e)) => {
                        drop(tx.send(each.iter().map(|_| Err(e.clone())).collect()))
                    }
                }
            }
        }
        for read in reads {
            read(inner);
        }
        size
    }
}

/// Applies a batch to memory (the tree, the dirty counters) and makes it durable: one
/// log frame and its sync, or a checkpoint when asked to flush or when an earlier sync
/// failed (the log alone no longer proves durability then). A batch of write-behind
/// commits only (`sync_asked` false) is durable against a crash of the process once its
/// frame is written (the kernel holds it); its sync waits for the next batch that asks
/// for one or for `checkpoint::sync_if_due`.
fn apply(
    inner: &Inner,
    batch: Option<sled::Batch>,
    mut ops: Ops,
    totals: HashMap<Vec<u8>, u64>,
    entries: Vec<(Vec<u8>, IdemEntry)>,
    flush_asked: bool,
    sync_asked: bool,
) -> StoreResult<()> {
    inner.faults.apply_fault()?;
    let mut value = Vec::with_capacity(11);
    for (key, total) in &totals {
        ledger::encode_counter_into(*total, &mut value);
        ops.put(key, &value);
    }
    if let Some(batch) = batch {
        inner.ledger.apply_batch(batch)?;
    }
    let mut counters = lock(&inner.counters);
    for (key, total) in totals {
        counters.commit(&key, total);
    }
    drop(counters);
    inner.idem.insert(entries);
    // `writes > 0`, so the frame has at least one put.
    let logged = {
        let mut wal = lock(&inner.wal);
        wal.append(&ops)
            .and_then(|()| match sync_asked {
                true => inner.faults.flush_fault().and_then(|()| wal.sync()),
                false => Ok(()),
            })
            .map_err(StoreError::from)
    };
    match logged {
        Ok(()) if flush_asked || inner.durability.is_behind() => inner.checkpoint(),
        Ok(()) => Ok(()),
        Err(e) => {
            // Applied in memory but not durable: reads must checkpoint before answering.
            inner.durability.mark_behind();
            Err(e)
        }
    }
}
