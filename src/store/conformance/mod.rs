//! The storage conformance suite: the behaviour every backend must have, written once
//! and run against each (the in-memory and sled backends in this crate's unit tests; a
//! network backend from the integration tests that start its server). Ids are fresh per
//! run, and counts are compared before and after, so a run may share a store with
//! others.
//!
//! Each check panics with the backend's name on a mismatch.

mod billing_lease;
mod consumed;
mod directory;
mod key_changes;
mod ledger;

use super::{Backend, CreateOutcome, OrgRecord, OrgState, UsageRecord};
use crate::domain::{Metric, OrgId, PeriodKey, PlanCode, RequestId};

fn fresh(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

fn period(raw: &str) -> PeriodKey {
    PeriodKey::parse(raw).unwrap_or_else(|e| panic!("period {raw}: {e}"))
}

fn usage(request: &str, delta: u64, fingerprint: u8) -> UsageRecord {
    UsageRecord {
        period: period("2026-03"),
        metric: Metric::api_call(),
        delta,
        request: RequestId::parse(request).unwrap_or_else(|e| panic!("{e}")),
        fingerprint: [fingerprint; 16],
        included: 1_000,
        now_ms: 10_000,
    }
}

/// `delta` units of `metric` in March 2026, the period every check here works in.
fn usage_write(metric: &Metric, delta: i64) -> super::LedgerWrite {
    super::LedgerWrite::Usage {
        period: period("2026-03"),
        metric: metric.clone(),
        delta,
    }
}

/// A fresh key of `org`; `n` sets its secret hash, creation time and last four.
fn key_of(org: &OrgId, n: u8) -> super::ApiKeyRecord {
    super::ApiKeyRecord {
        key_id: crate::domain::KeyId::parse(&fresh("key")).expect("id"),
        org_id: org.clone(),
        secret_sha256: [n; 32],
        created_ms: i64::from(n),
        revoked_ms: None,
        last4: format!("{n:04}"),
    }
}

async fn new_org(b: &Backend) -> OrgId {
    let org = OrgId::parse(&fresh("org")).unwrap_or_else(|e| panic!("{e}"));
    let record = OrgRecord {
        org_id: org.clone(),
        name: "Conformance".into(),
        owner_user_id: "u".into(),
        created_ms: 1,
    };
    let state = OrgState {
        plan: PlanCode::free(),
        period: period("2026-03"),
    };
    let created = b.orgs.create(record, None, state).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created)),
        "create: {created:?}"
    );
    org
}

/// Runs every check against `b`.
pub async fn run(b: &Backend) {
    let name = b.health.backend();
    // First: its first record may come before a request index rebuilt at open is ready.
    consumed::requests_ready(b, name).await;
    directory::orgs(b, name).await;
    ledger::records(b, name).await;
    ledger::concurrent_records(b, name).await;
    ledger::commits_and_sweeps(b, name).await;
    ledger::commit_many_answers_per_org(b, name).await;
    ledger::record_across_answers_per_record(b, name).await;
    consumed::commit_consumed_answers_per_org(b, name).await;
    billing_lease::billing_lease_fences_commits(b, name).await;
    ledger::sweep_lease(b, name).await;
    directory::keys(b, name).await;
    key_changes::changes_since(b, name).await;
    directory::jobs(b, name).await;
    directory::oldest(b, name).await;
    directory::debug_log(b, name).await;
    b.health
        .round_trip()
        .await
        .unwrap_or_else(|e| panic!("{name}: round trip: {e}"));
    b.health
        .flush()
        .await
        .unwrap_or_else(|e| panic!("{name}: flush: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_backend_conforms() {
        run(&crate::store::memory::open(100)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sled_backend_conforms() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = crate::store::sled::OpenOptions {
            cache_capacity_bytes: 8 << 20,
            fdatasync: true,
            commit_max_batch: 64,
            debug_log_capacity: 100,
            idempotency_filter_bits_log2: 16,
            wal_cap_bytes: crate::store::sled::WAL_CAP_BYTES,
        };
        let b = crate::store::sled::open(dir.path(), options, crate::metrics::Metrics::new())
            .expect("open");
        run(&b).await;
        b.health.close();
    }
}
