//! The storage conformance suite: the behaviour every backend must have, written once
//! and run against each (the in-memory and sled backends in this crate's unit tests; a
//! network backend from the integration tests that start its server). Ids are fresh per
//! run, and counts are compared before and after, so a run may share a store with
//! others.
//!
//! Each check panics with the backend's name on a mismatch.

use super::jobs::{Inserted, Job, JobState};
use super::webhook_jobs::WebhookPayload;
use super::{
    ApiKeyRecord, Backend, CreateOutcome, CreateReplay, DebugEntry, LedgerWrite, OrgRecord,
    OrgState, Recorded, UsageRecord,
};
use crate::domain::{KeyId, Metric, OrgId, PeriodKey, PlanCode, RequestId};

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
    orgs(b, name).await;
    records(b, name).await;
    concurrent_records(b, name).await;
    commits_and_sweeps(b, name).await;
    keys(b, name).await;
    jobs(b, name).await;
    debug_log(b, name).await;
    b.health
        .round_trip()
        .await
        .unwrap_or_else(|e| panic!("{name}: round trip: {e}"));
    b.health
        .flush()
        .await
        .unwrap_or_else(|e| panic!("{name}: flush: {e}"));
}

async fn orgs(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let got = b.orgs.get(&org).await.expect("get");
    assert_eq!(got.map(|r| r.org_id), Some(org.clone()), "{name}: get");
    let stored = b.ledger.load(&org, period("2026-03")).await.expect("load");
    assert_eq!(
        stored.state.map(|s| s.plan),
        Some(PlanCode::free()),
        "{name}: initial state"
    );
    let missing = OrgId::parse(&fresh("org")).expect("id");
    assert!(
        b.orgs.get(&missing).await.expect("get").is_none(),
        "{name}: unknown org"
    );
    // One idempotency key, two creates: one org, the first answer replayed.
    let key = fresh("idem");
    let replay = CreateReplay {
        fingerprint: [3; 32],
        body: b"{\"first\":true}".to_vec(),
    };
    let mut made = Vec::new();
    for _ in 0..2 {
        let org = OrgId::parse(&fresh("org")).expect("id");
        let record = OrgRecord {
            org_id: org.clone(),
            name: "I".into(),
            owner_user_id: "u".into(),
            created_ms: 2,
        };
        let state = OrgState {
            plan: PlanCode::free(),
            period: period("2026-03"),
        };
        let out = b
            .orgs
            .create(record, Some((key.clone(), replay.clone())), state)
            .await
            .expect("create");
        made.push((org, out));
    }
    assert!(
        matches!(made[0].1, CreateOutcome::Created),
        "{name}: first create"
    );
    assert!(
        matches!(&made[1].1, CreateOutcome::Replayed(r) if *r == replay),
        "{name}: second create replays"
    );
    assert!(
        b.orgs.get(&made[1].0).await.expect("get").is_none(),
        "{name}: one org"
    );
    let customer = fresh("cus");
    b.orgs.link_customer(&customer, &org).await.expect("link");
    assert_eq!(
        b.orgs.org_of_customer(&customer).await.expect("of"),
        Some(org)
    );
    assert!(b
        .orgs
        .org_of_customer("cus_nobody")
        .await
        .expect("of")
        .is_none());
}

async fn records(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let first = b
        .ledger
        .record(&org, usage("r1", 10, 1))
        .await
        .expect("record");
    let Recorded::New { body, total } = first else {
        panic!("{name}: first record: {first:?}")
    };
    assert_eq!(total, 10, "{name}");
    assert_eq!(
        &*body, br#"{"periodKey":"2026-03","used":10,"remaining":990}"#,
        "{name}"
    );
    let second = b
        .ledger
        .record(&org, usage("r2", 5, 1))
        .await
        .expect("record");
    assert!(
        matches!(second, Recorded::New { total: 15, .. }),
        "{name}: {second:?}"
    );
    let replay = b
        .ledger
        .record(&org, usage("r1", 10, 1))
        .await
        .expect("record");
    assert_eq!(replay, Recorded::Replayed { body }, "{name}: replay");
    let conflict = b
        .ledger
        .record(&org, usage("r1", 11, 2))
        .await
        .expect("record");
    assert_eq!(
        conflict,
        Recorded::Conflict,
        "{name}: same id, other payload"
    );
    let mut feb = usage("r3", 4, 1);
    feb.period = period("2026-02");
    assert!(matches!(
        b.ledger.record(&org, feb).await,
        Ok(Recorded::New { total: 4, .. })
    ));
    let march = b
        .ledger
        .counters(&org, period("2026-03"))
        .await
        .expect("counters");
    assert_eq!(march.get(&Metric::api_call()), Some(&15), "{name}: March");
    let feb = b
        .ledger
        .counters(&org, period("2026-02"))
        .await
        .expect("counters");
    assert_eq!(feb.get(&Metric::api_call()), Some(&4), "{name}: February");
    // The same request id is another org's own.
    let other = new_org(b).await;
    let theirs = b
        .ledger
        .record(&other, usage("r1", 7, 9))
        .await
        .expect("record");
    assert!(
        matches!(theirs, Recorded::New { total: 7, .. }),
        "{name}: {theirs:?}"
    );
    // Purged entries are forgotten; newer ones are kept.
    let mut late = usage("late", 1, 1);
    late.now_ms = 50_000;
    b.ledger.record(&org, late).await.expect("record");
    let purged = b.ledger.purge_requests(20_000).await.expect("purge");
    assert!(purged.purged >= 3, "{name}: {purged:?}");
    let again = b
        .ledger
        .record(&org, usage("r1", 10, 1))
        .await
        .expect("record");
    assert!(
        matches!(again, Recorded::New { total: 26, .. }),
        "{name}: after purge {again:?}"
    );
    let kept = b.ledger.record(&org, {
        let mut u = usage("late", 1, 1);
        u.now_ms = 50_000;
        u
    });
    assert!(
        matches!(kept.await, Ok(Recorded::Replayed { .. })),
        "{name}: kept entry"
    );
}

async fn concurrent_records(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let same = (0..40).map(|_| b.ledger.record(&org, usage("same", 3, 1)));
    let answers = futures_util::future::join_all(same).await;
    let new = answers
        .iter()
        .filter(|a| matches!(a, Ok(Recorded::New { .. })))
        .count();
    assert_eq!(new, 1, "{name}: one of 40 racing duplicates counts");
    let distinct = (0..100).map(|i| b.ledger.record(&org, usage(&format!("d{i}"), 2, 1)));
    for a in futures_util::future::join_all(distinct).await {
        assert!(matches!(a, Ok(Recorded::New { .. })), "{name}: {a:?}");
    }
    let c = b
        .ledger
        .counters(&org, period("2026-03"))
        .await
        .expect("counters");
    assert_eq!(
        c.get(&Metric::api_call()),
        Some(&203),
        "{name}: 3 + 100 × 2"
    );
}

async fn commits_and_sweeps(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let p = period("2026-03");
    let seat = Metric::parse("seat").expect("metric");
    let writes = vec![
        LedgerWrite::Usage {
            period: p,
            metric: seat.clone(),
            delta: 4,
        },
        LedgerWrite::Usage {
            period: p,
            metric: seat.clone(),
            delta: 6,
        },
        LedgerWrite::State(OrgState {
            plan: PlanCode::new("plan_pro_m"),
            period: period("2026-04"),
        }),
        LedgerWrite::Billing(Box::new(crate::domain::BillingRecord {
            customer_id: Some("cus_c".into()),
            ..Default::default()
        })),
    ];
    b.ledger.commit(&org, writes).await.expect("commit");
    let stored = b.ledger.load(&org, p).await.expect("load");
    assert_eq!(
        stored.counters.get(&seat),
        Some(&10),
        "{name}: deltas add up"
    );
    assert_eq!(
        stored.state.map(|s| s.period),
        Some(period("2026-04")),
        "{name}"
    );
    assert_eq!(
        stored.billing.and_then(|b| b.customer_id).as_deref(),
        Some("cus_c")
    );
    b.ledger
        .record(&org, usage("z", 5, 1))
        .await
        .expect("record");
    let zero = LedgerWrite::Zero {
        period: p,
        metric: Metric::api_call(),
    };
    b.ledger.commit(&org, vec![zero]).await.expect("commit");
    let after = b
        .ledger
        .record(&org, usage("z2", 2, 1))
        .await
        .expect("record");
    assert!(
        matches!(after, Recorded::New { total: 2, .. }),
        "{name}: after zero {after:?}"
    );
    // Paging visits every org exactly once, in a stable order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = b.ledger.states_page(after.as_ref(), 3).await.expect("page");
        let Some((last, _)) = page.last().cloned() else {
            break;
        };
        seen.extend(page.into_iter().map(|(o, _)| o));
        after = Some(last);
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{name}: no org twice");
    assert!(seen.contains(&org), "{name}: the org is paged");
}

async fn keys(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let key = |n: u8| ApiKeyRecord {
        key_id: KeyId::parse(&fresh("key")).expect("id"),
        org_id: org.clone(),
        secret_sha256: [n; 32],
        created_ms: i64::from(n),
        revoked_ms: None,
        last4: format!("{n:04}"),
    };
    let (k1, k2) = (key(1), key(2));
    b.keys.put(vec![k1.clone(), k2.clone()]).await.expect("put");
    assert_eq!(
        b.keys.get(&k1.key_id).await.expect("get"),
        Some(k1.clone()),
        "{name}"
    );
    let mut revoked = k2.clone();
    revoked.revoked_ms = Some(9);
    b.keys.put(vec![revoked.clone()]).await.expect("put");
    let mut of_org = b.keys.of_org(&org).await.expect("of_org");
    of_org.sort_by_key(|k| k.created_ms);
    assert_eq!(of_org, vec![k1.clone(), revoked], "{name}: of_org");
    let all = b.keys.all().await.expect("all");
    assert!(all.iter().any(|k| k.key_id == k1.key_id), "{name}: all");
}

fn job(id: &str, seq: u64, due: i64) -> Job<WebhookPayload> {
    let payload = WebhookPayload {
        event_type: "customer.subscription.updated".into(),
        raw: b"{}".to_vec(),
    };
    let mut j = Job::queued(id.into(), seq, payload, 0);
    j.next_attempt_ms = due;
    j
}

async fn jobs(b: &Backend, name: &str) {
    let q = &b.webhooks;
    let (s1, s2) = (
        q.next_seq().await.expect("seq"),
        q.next_seq().await.expect("seq"),
    );
    assert!(s2 > s1, "{name}: sequences grow");
    let queued_before = q.count(JobState::Queued).await.expect("count");
    let (a, later) = (fresh("evt"), fresh("evt"));
    // Due long ago, so no other job of a shared store comes before it.
    let first = job(&a, s1, -1_000_000);
    assert!(
        matches!(q.insert_new(first.clone()).await, Ok(Inserted::New)),
        "{name}"
    );
    let dup = q.insert_new(job(&a, s2, 0)).await.expect("insert");
    assert!(
        matches!(dup, Inserted::Existing(e) if e.seq == s1),
        "{name}: one job per id"
    );
    q.insert_new(job(&later, s2, i64::MAX / 2))
        .await
        .expect("insert");
    assert_eq!(
        q.count(JobState::Queued).await.expect("count"),
        queued_before + 2
    );
    let claimed = q.claim_due(5_000, 100, 60_000).await.expect("claim");
    let mine: Vec<_> = claimed
        .iter()
        .filter(|j| j.id == a || j.id == later)
        .collect();
    assert_eq!(mine.len(), 1, "{name}: only the due job is claimed");
    assert_eq!(mine[0].id, a, "{name}: the due one");
    let again = q.claim_due(5_000, 100, 60_000).await.expect("claim");
    assert!(
        again.iter().all(|j| j.id != a),
        "{name}: a leased job is not claimed twice"
    );
    let lapsed = q.claim_due(65_001, 100, 60_000).await.expect("claim");
    assert!(
        lapsed.iter().any(|j| j.id == a),
        "{name}: claimable once the lease ran out"
    );
    let held = q.get(&a).await.expect("get").expect("stored");
    let done = held.finished(JobState::Done, None, 7);
    assert!(
        q.replace(held.clone(), done.clone())
            .await
            .expect("replace"),
        "{name}"
    );
    assert!(
        !q.replace(held, done).await.expect("replace"),
        "{name}: stale replace refused"
    );
    let listed = q
        .list(JobState::Done, s1.checked_sub(1), 10)
        .await
        .expect("list");
    assert!(listed.iter().any(|j| j.id == a), "{name}: listed as done");
    let purged = q
        .purge_finished_before(JobState::Done, 8)
        .await
        .expect("purge");
    assert!(purged >= 1, "{name}: purged");
    assert!(
        q.get(&a).await.expect("get").is_none(),
        "{name}: gone after purge"
    );
}

async fn debug_log(b: &Backend, name: &str) {
    let corr = fresh("corr");
    let entry = |status: u16| DebugEntry {
        at_ms: 1,
        method: "GET".into(),
        route: "/x".into(),
        status,
        latency_us: 1,
        correlation_id: corr.clone(),
        request_id: "r".into(),
        org_id: None,
    };
    b.debug_log
        .append((0..3).map(entry).collect())
        .await
        .expect("append");
    let found = b
        .debug_log
        .recent(Some(corr.clone()), 2)
        .await
        .expect("recent");
    let statuses: Vec<u16> = found.iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![2, 1], "{name}: newest first, limited");
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
        };
        let b = crate::store::sled::open(dir.path(), options, crate::metrics::Metrics::new())
            .expect("open");
        run(&b).await;
        b.health.close();
    }
}
