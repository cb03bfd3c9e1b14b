//! The in-memory backend: every storage trait over maps behind one mutex each. Nothing
//! survives the process; it exists so unit tests and the conformance suite can run the
//! engine without a disk, and as the reference the other backends are held to.

mod jobs;

use super::faults::Faults;
use super::{
    record_body, ApiKeyRecord, Backend, CreateOutcome, CreateReplay, DebugEntry, DebugLogStore,
    KeyStore, LedgerStore, LedgerWrite, OrgDirectory, OrgRecord, OrgState, Purged, Recorded,
    StoreFuture, StoreHealth, StoredLedger, UsageRecord,
};
use crate::domain::{BillingRecord, KeyId, Metric, OrgId, PeriodKey, RequestId};
use futures_util::future::{ready, FutureExt};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn done<T: Send + 'static>(v: T) -> StoreFuture<T> {
    ready(Ok(v)).boxed()
}

/// A fresh, empty in-memory backend whose DebugLog keeps `debug_log_capacity` entries.
pub fn open(debug_log_capacity: usize) -> Backend {
    let ledger = Arc::new(MemoryLedger::default());
    Backend {
        orgs: Arc::new(MemoryOrgs {
            orgs: Mutex::default(),
            ledger: ledger.clone(),
        }),
        ledger,
        keys: Arc::new(MemoryKeys::default()),
        webhooks: Arc::new(jobs::MemoryJobs::default()),
        stigg: Arc::new(jobs::MemoryJobs::default()),
        debug_log: Arc::new(MemoryDebugLog {
            entries: Mutex::default(),
            capacity: debug_log_capacity,
        }),
        health: Arc::new(MemoryHealth),
        faults: Arc::new(Faults::default()),
    }
}

/// A recorded request id: its fingerprint, its answer and when it was recorded.
type StoredRequest = ([u8; 16], Arc<[u8]>, i64);

#[derive(Default)]
struct Ledger {
    states: BTreeMap<OrgId, OrgState>,
    billing: HashMap<OrgId, BillingRecord>,
    counters: HashMap<(OrgId, PeriodKey, Metric), u64>,
    requests: HashMap<(OrgId, RequestId), StoredRequest>,
}

#[derive(Default)]
pub struct MemoryLedger(Mutex<Ledger>);

impl LedgerStore for MemoryLedger {
    fn load(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<StoredLedger> {
        let l = lock(&self.0);
        done(StoredLedger {
            state: l.states.get(org).cloned(),
            billing: l.billing.get(org).cloned(),
            counters: counters_of(&l, org, period),
        })
    }

    fn counters(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<HashMap<Metric, u64>> {
        done(counters_of(&lock(&self.0), org, period))
    }

    fn record(&self, org: &OrgId, u: UsageRecord) -> StoreFuture<Recorded> {
        let mut l = lock(&self.0);
        let key = (org.clone(), u.request.clone());
        if let Some((fingerprint, body, _)) = l.requests.get(&key) {
            return done(if *fingerprint == u.fingerprint {
                Recorded::Replayed { body: body.clone() }
            } else {
                Recorded::Conflict
            });
        }
        let counter = l
            .counters
            .entry((org.clone(), u.period, u.metric.clone()))
            .or_default();
        *counter = counter.saturating_add(u.delta);
        let total = *counter;
        let body = record_body(u.period, total, u.included);
        l.requests
            .insert(key, (u.fingerprint, body.clone(), u.now_ms));
        done(Recorded::New { body, total })
    }

    fn commit(&self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreFuture<()> {
        let mut l = lock(&self.0);
        for w in writes {
            match w {
                LedgerWrite::State(s) => {
                    l.states.insert(org.clone(), s);
                }
                LedgerWrite::Billing(b) => {
                    l.billing.insert(org.clone(), *b);
                }
                LedgerWrite::Usage {
                    period,
                    metric,
                    delta,
                } => {
                    let c = l.counters.entry((org.clone(), period, metric)).or_default();
                    *c = c.saturating_add_signed(delta);
                }
                LedgerWrite::Fence(_) => {}
                LedgerWrite::Zero { period, metric } => {
                    l.counters.insert((org.clone(), period, metric), 0);
                }
            }
        }
        done(())
    }

    fn states_page(
        &self,
        after: Option<&OrgId>,
        limit: usize,
    ) -> StoreFuture<Vec<(OrgId, OrgState)>> {
        let l = lock(&self.0);
        let page = l
            .states
            .iter()
            .filter(|(org, _)| after.is_none_or(|a| *org > a))
            .take(limit)
            .map(|(o, s)| (o.clone(), s.clone()))
            .collect();
        done(page)
    }

    fn purge_requests(&self, cutoff_ms: i64) -> StoreFuture<Purged> {
        let mut l = lock(&self.0);
        let before = l.requests.len() as u64;
        l.requests.retain(|_, (_, _, at)| *at >= cutoff_ms);
        let kept = l.requests.len() as u64;
        done(Purged {
            purged: before - kept,
            kept,
        })
    }

    fn requests_ready(&self) -> bool {
        true
    }
}

fn counters_of(l: &Ledger, org: &OrgId, period: PeriodKey) -> HashMap<Metric, u64> {
    l.counters
        .iter()
        .filter(|((o, p, _), _)| o == org && *p == period)
        .map(|((_, _, m), used)| (m.clone(), *used))
        .collect()
}

#[derive(Default)]
struct Orgs {
    records: HashMap<OrgId, OrgRecord>,
    idempotency: HashMap<String, CreateReplay>,
    customers: HashMap<String, OrgId>,
}

/// Orgs, with the ledger their initial state is written to.
pub struct MemoryOrgs {
    orgs: Mutex<Orgs>,
    ledger: Arc<MemoryLedger>,
}

impl OrgDirectory for MemoryOrgs {
    fn create(
        &self,
        record: OrgRecord,
        idempotency: Option<(String, CreateReplay)>,
        state: OrgState,
    ) -> StoreFuture<CreateOutcome> {
        let mut o = lock(&self.orgs);
        if let Some((key, replay)) = &idempotency {
            if let Some(existing) = o.idempotency.get(key) {
                return done(CreateOutcome::Replayed(existing.clone()));
            }
            o.idempotency.insert(key.clone(), replay.clone());
        }
        let org = record.org_id.clone();
        o.records.insert(org.clone(), record);
        drop(o);
        let committed = self.ledger.commit(&org, vec![LedgerWrite::State(state)]);
        async move {
            committed.await?;
            Ok(CreateOutcome::Created)
        }
        .boxed()
    }

    fn get(&self, org: &OrgId) -> StoreFuture<Option<OrgRecord>> {
        done(lock(&self.orgs).records.get(org).cloned())
    }

    fn link_customer(&self, customer: &str, org: &OrgId) -> StoreFuture<()> {
        lock(&self.orgs)
            .customers
            .insert(customer.to_owned(), org.clone());
        done(())
    }

    fn org_of_customer(&self, customer: &str) -> StoreFuture<Option<OrgId>> {
        done(lock(&self.orgs).customers.get(customer).cloned())
    }

    fn lease(&self, _: &OrgId, token: Option<String>, _: u64) -> StoreFuture<Option<String>> {
        done(Some(token.unwrap_or_else(|| "local".into())))
    }

    fn release(&self, _: &OrgId, _: String) -> StoreFuture<()> {
        done(())
    }
}

#[derive(Default)]
pub struct MemoryKeys(Mutex<BTreeMap<KeyId, ApiKeyRecord>>);

impl KeyStore for MemoryKeys {
    fn put(&self, records: Vec<ApiKeyRecord>) -> StoreFuture<()> {
        let mut k = lock(&self.0);
        for r in records {
            k.insert(r.key_id.clone(), r);
        }
        done(())
    }

    fn get(&self, key: &KeyId) -> StoreFuture<Option<ApiKeyRecord>> {
        done(lock(&self.0).get(key).cloned())
    }

    fn all(&self) -> StoreFuture<Vec<ApiKeyRecord>> {
        done(lock(&self.0).values().cloned().collect())
    }

    fn of_org(&self, org: &OrgId) -> StoreFuture<Vec<ApiKeyRecord>> {
        let keys = lock(&self.0);
        done(
            keys.values()
                .filter(|k| &k.org_id == org)
                .cloned()
                .collect(),
        )
    }

    fn changes_since(&self, cursor: u64) -> StoreFuture<(u64, Vec<ApiKeyRecord>)> {
        done((cursor, Vec::new()))
    }
}

pub struct MemoryDebugLog {
    entries: Mutex<VecDeque<DebugEntry>>,
    capacity: usize,
}

impl DebugLogStore for MemoryDebugLog {
    fn append(&self, entries: Vec<DebugEntry>) -> StoreFuture<()> {
        let mut log = lock(&self.entries);
        log.extend(entries);
        while log.len() > self.capacity {
            log.pop_front();
        }
        done(())
    }

    fn recent(&self, correlation_id: Option<String>, limit: usize) -> StoreFuture<Vec<DebugEntry>> {
        let log = lock(&self.entries);
        let found = log
            .iter()
            .rev()
            .filter(|e| {
                correlation_id
                    .as_ref()
                    .is_none_or(|c| *c == e.correlation_id)
            })
            .take(limit)
            .cloned()
            .collect();
        done(found)
    }
}

pub struct MemoryHealth;

impl StoreHealth for MemoryHealth {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn round_trip(&self) -> StoreFuture<()> {
        done(())
    }

    fn size_on_disk(&self) -> StoreFuture<Option<u64>> {
        done(None)
    }

    fn flush(&self) -> StoreFuture<()> {
        done(())
    }

    fn close(&self) {}
}
